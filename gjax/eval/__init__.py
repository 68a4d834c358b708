"""Evaluators of frozen representations, registered by name (:mod:`gjax.eval.registry`).

Importing the package registers gjax's evaluators (one module each, imported
below); :mod:`gjax.eval.evaluate` runs the configured ones on a run's checkpoint.
"""

# The evaluator modules register themselves (gjax.eval.registry) when imported: all of them, before evaluate.
from gjax.eval import augmented_probe, knn, linear_probe, one_class, posterior, sampling  # noqa: F401
from gjax.eval.anomaly import auroc, entropy_score, joint_nll_score, variance_sum_score
from gjax.eval.evaluate import evaluate, online_evaluator, train_and_evaluate
from gjax.eval.features import extract_features
from gjax.eval.knn import knn_accuracy, knn_predict
from gjax.eval.linear_probe import fit_linear_probe, train_linear_probe
from gjax.eval.registry import (
  DEFAULT_EVALUATORS,
  DEFAULT_ONLINE_EVALUATORS,
  EvalContext,
  Evaluator,
  evaluator_settings,
  get_evaluator,
  register_evaluator,
  registered_evaluators,
  use_default_evaluators,
  validate_evaluators,
)
