"""Evaluators of frozen representations."""

from gjax.eval.evaluate import evaluate
from gjax.eval.features import extract_features
from gjax.eval.knn import knn_accuracy, knn_predict
