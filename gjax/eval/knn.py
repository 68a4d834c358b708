"""k-nearest-neighbour classification on frozen features (cosine similarity).

Two variants: the plain majority vote (k = 30 in the VJE paper) and the
similarity-weighted vote of Wu et al. 2018 (k = 200, weights exp(s / T),
T = 0.1) that most SSL papers report. Similarities are computed on device in
chunks of test examples, so memory stays bounded by ``chunk x num_train``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gjax.data.sharding import batch_sharding, data_mesh, replicated_sharding, to_host
from gjax.eval.features import check_features
from gjax.eval.registry import Evaluator, register_evaluator
from gjax.math import normalize
from gjax.objectives import require


@functools.partial(jax.jit, static_argnames=("k", "num_classes", "weighted"))
def _knn_votes(test, train, train_labels, *, k, num_classes, weighted, temperature):
  sims = normalize(test) @ normalize(train).T
  top_sims, top_idx = jax.lax.top_k(sims, k)
  weights = jnp.exp(top_sims / temperature) if weighted else jnp.ones_like(top_sims)
  onehot = jax.nn.one_hot(train_labels[top_idx], num_classes, dtype=weights.dtype)
  return jnp.einsum("nk,nkc->nc", weights, onehot)


def knn_predict(
  train_features,
  train_labels,
  test_features,
  *,
  k: int = 30,
  num_classes: int | None = None,
  weighted: bool = False,
  temperature: float = 0.1,
  chunk: int = 1024,
  mesh=None,
) -> np.ndarray:
  """Predicted labels ``[N_test]`` by a k-NN vote over cosine similarities.

  The training features are replicated on every device of ``mesh`` (default:
  all devices) and each chunk of test features is sharded over them on the
  ``data`` axis, so every device scores its share of the chunk against the
  whole memory bank. Features are host arrays, the same on every process.
  """
  train_features, test_features = np.asarray(train_features), np.asarray(test_features)
  check_features("train_features", train_features)
  check_features("test_features", test_features)
  if train_features.shape[1] != test_features.shape[1]:
    raise ValueError(f"train {train_features.shape} and test {test_features.shape} feature sizes differ")
  if not 1 <= k <= len(train_features):
    raise ValueError(f"k={k} must be in [1, {len(train_features)}] (the number of training examples)")
  train_labels = np.asarray(train_labels).astype(np.int32)
  num_classes = int(train_labels.max()) + 1 if num_classes is None else num_classes
  mesh = data_mesh() if mesh is None else mesh
  num_devices = mesh.devices.size
  chunk = max(num_devices, chunk - chunk % num_devices)
  train = jax.device_put(train_features, replicated_sharding(mesh))
  labels = jax.device_put(train_labels, replicated_sharding(mesh))
  preds = []
  for start in range(0, len(test_features), chunk):
    block = test_features[start : start + chunk]
    valid = len(block)
    padded = np.pad(block, ((0, (-valid) % num_devices), (0, 0)))
    votes = _knn_votes(
      jax.device_put(padded, batch_sharding(mesh)),
      train,
      labels,
      k=k,
      num_classes=num_classes,
      weighted=weighted,
      temperature=temperature,
    )
    preds.append(to_host(jnp.argmax(votes, axis=-1))[:valid])
  return np.concatenate(preds)


def knn_accuracy(train_features, train_labels, test_features, test_labels, **kwargs) -> float:
  """Top-1 accuracy of :func:`knn_predict`."""
  preds = knn_predict(train_features, train_labels, test_features, **kwargs)
  return float(np.mean(preds == np.asarray(test_labels)))


def run_knn(context, settings) -> dict[str, float]:
  """The ``knn`` evaluator: plain-vote k-NN (``k``, the VJE paper's protocol)
  and temperature-weighted k-NN (``weighted_k``, ``temperature``; Wu et al.
  2018) on each representation (:meth:`EvalContext.representations`), on the
  features kept sharded on the devices (:func:`gjax.eval.sharded.sharded_knn_predict`:
  the same neighbours as :func:`knn_predict`, no host copy of the bank)."""
  from gjax.eval.sharded import sharded_knn_predict

  _, test_y = context.labels
  train, test = context.sharded("train"), context.sharded("test")
  results = {}
  for feature in context.representations():
    for name, k, weighted in (
      (f"knn{settings.k}_{feature}", settings.k, False),
      (f"knn{settings.weighted_k}w_{feature}", settings.weighted_k, True),
    ):
      preds = sharded_knn_predict(
        train, test, feature, k=k, num_classes=context.num_classes, weighted=weighted, temperature=settings.temperature
      )
      results[name] = float(np.mean(preds == test_y))
  return results


def check_knn_settings(s, config) -> None:
  for field in ("k", "weighted_k"):
    require(s[field] >= 1, f"eval.evaluators.knn.{field}", s[field], "must be >= 1")
  require(s.temperature > 0, "eval.evaluators.knn.temperature", s.temperature, "must be > 0")


KNN = register_evaluator(
  Evaluator(
    "knn",
    run_knn,
    defaults={"k": 30, "weighted_k": 200, "temperature": 0.1},
    check=check_knn_settings,
    description="k-NN accuracy (plain and weighted)",
  )
)
