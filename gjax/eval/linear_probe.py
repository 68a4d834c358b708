"""Data-parallel linear probe on frozen features (VJE paper, Section 5.2).

The VJE protocol trains a linear classifier on frozen backbone features "for
100 epochs using the same optimizer configuration [as pretraining], excluding
the warm-up phase": SGD with momentum 0.9, cosine learning-rate decay (from
0.05 in the paper), softmax cross-entropy. The paper also uses weight decay
5e-6; here it defaults to 0 and is a keyword argument.

Implementation:

* A plain weight matrix ``W [D, C]`` and bias ``b [C]`` (no Flax module),
  initialised ``W ~ N(0, 0.01²)``, ``b = 0`` from ``seed``; optimised with
  ``optax.sgd(cosine_decay_schedule(learning_rate, total_steps), momentum)``.
  Weight decay (if any) is decoupled ``optax.add_decayed_weights`` applied to
  ``W`` only, not to the bias.
* Data parallel: one ``jax.jit`` train step over a 1-D device mesh
  (:func:`gjax.data.data_mesh`). Each step's feature/label batch is sharded on
  the ``"data"`` axis with :func:`gjax.data.batch_sharding`
  (``NamedSharding``); ``W``, ``b`` and the optimizer state are replicated
  (:func:`gjax.data.replicated_sharding`). The loss is the mean over the global
  batch, so XLA inserts the cross-device reduction of the gradient and the
  result does not depend on the number of devices (up to float rounding).
* Standardisation: by default every feature column is standardised with the
  *training-set* mean and standard deviation (computed in float64; columns
  whose std is below 1e-8 are only centred). The same statistics are applied
  to the test features, so no test information leaks into the probe. Pass
  ``standardize=False`` to train on raw features.
* Determinism: given ``seed`` the result is fixed. Epoch ``e`` visits the
  training set in the order ``np.random.default_rng((seed, e)).permutation``
  and takes ``num_train // batch_size`` full batches (drop-remainder). The
  ``num_train % batch_size`` examples at the end of each permutation are
  skipped *for that epoch only*; because the permutation changes every epoch,
  every example is still used across epochs. ``batch_size`` must be a multiple
  of the mesh's device count so that every device gets an equal shard.
* Multi-process: every process is expected to hold the same (full) feature
  arrays, e.g. gathered after :func:`gjax.eval.extract_features`; each
  process feeds its slice of every global batch through
  :func:`gjax.data.make_global_batch`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gjax.data.sharding import data_mesh, make_global_batch, replicated_sharding, to_host
from gjax.eval.features import check_features
from gjax.eval.probe import STD_FLOOR, LinearProbe, make_probe_optimizer
from gjax.eval.registry import Evaluator, register_evaluator
from gjax.objectives import require


def _check_labels(name: str, y: np.ndarray, num_rows: int, feature_name: str, num_classes: int | None) -> np.ndarray:
  if y.ndim != 1:
    raise ValueError(f"{name} must be [N]; got shape {y.shape}")
  if len(y) != num_rows:
    raise ValueError(f"{name} has {len(y)} labels but {feature_name} has {num_rows} rows")
  if not np.issubdtype(y.dtype, np.integer):
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
      raise ValueError(f"{name} must hold integer class indices; got dtype {y.dtype}")
  y = y.astype(np.int64)
  if y.min() < 0:
    raise ValueError(f"{name} has negative class index {int(y.min())}")
  if num_classes is not None and y.max() >= num_classes:
    raise ValueError(f"{name} has class index {int(y.max())} >= num_classes={num_classes}")
  return y.astype(np.int32)


def _feature_stats(train_x: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
  dim = train_x.shape[1]
  if not standardize:
    return np.zeros(dim, np.float32), np.ones(dim, np.float32)
  x64 = train_x.astype(np.float64)
  mean = x64.mean(axis=0)
  std = x64.std(axis=0)
  std = np.where(std < STD_FLOOR, 1.0, std)
  return mean.astype(np.float32), std.astype(np.float32)


def make_probe_step(optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh):
  """One jitted SGD step; params/opt state replicated, batch sharded on "data"."""
  replicated = replicated_sharding(mesh)

  def loss_fn(params, x, y):
    logits = x @ params["weights"] + params["bias"]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

  @functools.partial(jax.jit, out_shardings=replicated)
  def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return train_step


@functools.partial(jax.jit, static_argnames=("k",))
def _logits_and_topk(x, weights, bias, mean, std, *, k):
  logits = ((x - mean) / std) @ weights + bias
  return jax.lax.top_k(logits, k)[1]


def _topk_predictions(probe: LinearProbe, x: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
  """``[N, k]`` class indices sorted by decreasing logit."""
  consts = tuple(jnp.asarray(a) for a in (probe.weights, probe.bias, probe.mean, probe.std))
  out = [np.asarray(_logits_and_topk(jnp.asarray(x[i : i + chunk]), *consts, k=k)) for i in range(0, len(x), chunk)]
  return np.concatenate(out)


def fit_linear_probe(
  train_x,
  train_y,
  *,
  num_classes: int | None = None,
  epochs: int = 100,
  batch_size: int = 256,
  learning_rate: float = 0.05,
  weight_decay: float = 0.0,
  momentum: float = 0.9,
  standardize: bool = True,
  seed: int = 0,
  mesh: jax.sharding.Mesh | None = None,
) -> LinearProbe:
  """Trains the linear probe (see the module docstring) and returns it.

  Args:
    train_x: ``[N, D]`` frozen training features (host array; cast to float32).
    train_y: ``[N]`` integer labels in ``[0, num_classes)``.
    num_classes: number of classes ``C``; default ``max(train_y) + 1``.
    epochs: passes over the training set (VJE: 100).
    batch_size: global batch size; a multiple of the mesh's device count and
      at most ``N``. The remainder ``N % batch_size`` is dropped each epoch
      (a different subset every epoch, since the shuffle changes).
    learning_rate: initial learning rate of the cosine decay to 0 over
      ``epochs * (N // batch_size)`` steps (VJE: 0.05, no warm-up).
    weight_decay: decoupled L2 on the weight matrix (VJE: 5e-6; default 0).
    momentum: SGD momentum (VJE: 0.9).
    standardize: standardise features with the training mean/std.
    seed: seeds the initial weights and the per-epoch shuffles.
    mesh: 1-D ``"data"`` mesh; default :func:`gjax.data.data_mesh` (all devices).

  Raises:
    ValueError: non-finite features (naming how many rows), labels that do not
      match the features, a batch size not divisible by the device count or
      larger than the training set, or a non-positive hyperparameter.
  """
  train_x = np.asarray(train_x)
  check_features("train_x", train_x)
  if num_classes is not None and num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  train_y = _check_labels("train_y", np.asarray(train_y), len(train_x), "train_x", num_classes)
  num_classes = int(train_y.max()) + 1 if num_classes is None else int(num_classes)
  mesh = data_mesh() if mesh is None else mesh
  num_devices = mesh.devices.size
  num_train, dim = train_x.shape
  if epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}")
  if batch_size < 1 or batch_size % num_devices:
    raise ValueError(
      f"batch_size={batch_size} is not a positive multiple of the {num_devices} devices "
      f"of the mesh (use a multiple of {num_devices})"
    )
  if batch_size > num_train:
    raise ValueError(f"batch_size={batch_size} exceeds the {num_train} training examples (batches are drop-remainder)")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
  if not weight_decay >= 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
  if not 0 <= momentum < 1:
    raise ValueError(f"momentum must be in [0, 1), got {momentum}")
  process_count = jax.process_count()
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} is not divisible by the {process_count} processes")

  mean, std = _feature_stats(train_x, standardize)
  features = ((train_x.astype(np.float32) - mean) / std).astype(np.float32)

  steps_per_epoch = num_train // batch_size
  optimizer = make_probe_optimizer(learning_rate, momentum, weight_decay, epochs * steps_per_epoch)
  replicated = replicated_sharding(mesh)
  key = jax.random.key(seed)
  params = {
    "weights": 0.01 * jax.random.normal(key, (dim, num_classes), jnp.float32),
    "bias": jnp.zeros((num_classes,), jnp.float32),
  }
  params = jax.device_put(params, replicated)
  opt_state = jax.device_put(optimizer.init(params), replicated)
  train_step = make_probe_step(optimizer, mesh)

  local_size = batch_size // process_count
  local_start = jax.process_index() * local_size
  epoch_losses = []
  for epoch in range(epochs):
    order = np.random.default_rng((seed, epoch)).permutation(num_train)
    epoch_losses = []
    for step in range(steps_per_epoch):
      idx = order[step * batch_size + local_start : step * batch_size + local_start + local_size]
      x, y = make_global_batch((features[idx], train_y[idx]), mesh)
      params, opt_state, loss = train_step(params, opt_state, x, y)
      epoch_losses.append(loss)
  final_loss = float(np.mean([to_host(l) for l in epoch_losses]))
  return LinearProbe(
    weights=to_host(params["weights"]), bias=to_host(params["bias"]), mean=mean, std=std, final_loss=final_loss
  )


def linear_probe_topk(probe: LinearProbe, x, y, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
  """Top-k accuracies ``{k: acc}`` of ``probe`` on features ``x`` and labels ``y``.

  ``k`` is clipped to the number of classes (so top-5 is 1.0 with <= 5 classes).
  """
  x = np.asarray(x)
  check_features("x", x)
  if x.shape[1] != probe.weights.shape[0]:
    raise ValueError(f"features have {x.shape[1]} dimensions, the probe expects {probe.weights.shape[0]}")
  num_classes = probe.weights.shape[1]
  y = _check_labels("y", np.asarray(y), len(x), "x", num_classes)
  k_max = min(max(ks), num_classes)
  top = _topk_predictions(probe, x.astype(np.float32), k_max)
  hits = top == y[:, None]
  return {k: float(np.mean(hits[:, : min(k, num_classes)].any(axis=1))) for k in ks}


def train_linear_probe(
  train_x,
  train_y,
  test_x,
  test_y,
  *,
  num_classes: int | None = None,
  epochs: int = 100,
  batch_size: int = 256,
  learning_rate: float = 0.05,
  weight_decay: float = 0.0,
  momentum: float = 0.9,
  standardize: bool = True,
  seed: int = 0,
  mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
  """VJE linear evaluation (Section 5.2): fit on train features, score on test.

  Arguments as in :func:`fit_linear_probe`; ``num_classes`` defaults to
  ``max(train_y, test_y) + 1``. Test features are standardised with the
  *training* statistics.

  Returns:
    ``dict(top1, top5, train_top1, final_loss)``: test top-1/top-5 accuracy
    (top-5 is 1.0 when there are at most 5 classes), top-1 on the training
    features, and the mean training loss of the last epoch.
  """
  test_x = np.asarray(test_x)
  check_features("test_x", test_x)
  train_x = np.asarray(train_x)
  if train_x.ndim == 2 and train_x.shape[1] != test_x.shape[1]:
    raise ValueError(f"train_x {train_x.shape} and test_x {test_x.shape} feature sizes differ")
  test_y = _check_labels("test_y", np.asarray(test_y), len(test_x), "test_x", num_classes)
  if num_classes is None:
    train_y_arr = np.asarray(train_y)
    if train_y_arr.ndim == 1 and len(train_y_arr):
      num_classes = int(max(np.max(train_y_arr), test_y.max())) + 1
  probe = fit_linear_probe(
    train_x,
    train_y,
    num_classes=num_classes,
    epochs=epochs,
    batch_size=batch_size,
    learning_rate=learning_rate,
    weight_decay=weight_decay,
    momentum=momentum,
    standardize=standardize,
    seed=seed,
    mesh=mesh,
  )
  test_acc = linear_probe_topk(probe, test_x, test_y, ks=(1, 5))
  train_acc = linear_probe_topk(probe, train_x, train_y, ks=(1,))
  return {"top1": test_acc[1], "top5": test_acc[5], "train_top1": train_acc[1], "final_loss": probe.final_loss}


def run_linear_probe(context, settings) -> dict[str, float]:
  """The ``linear_probe`` evaluator: top-1 / top-5 of a linear classifier
  trained on each frozen representation (VJE Section 5.2 protocol), by SGD on
  the features kept sharded on the devices (:func:`gjax.eval.sharded.fit_sharded_linear_probe`:
  the batches, initialisation and schedule of :func:`fit_linear_probe`, no
  host copy of the training features)."""
  from gjax.eval.sharded import fit_sharded_linear_probe, sharded_probe_topk

  train, test = context.sharded("train"), context.sharded("test")
  num_train = train.num_examples
  results = {}
  for feature in context.representations():
    probe = fit_sharded_linear_probe(
      train,
      feature,
      num_classes=context.num_classes,
      epochs=settings.epochs,
      learning_rate=settings.learning_rate,
      batch_size=min(256, num_train - num_train % context.mesh.devices.size),
      seed=context.config.seed,
    )
    top = sharded_probe_topk(probe, test, feature, ks=(1, 5))
    results[f"linear_top1_{feature}"] = top[1]
    results[f"linear_top5_{feature}"] = top[5]
  return results


def check_linear_probe_settings(s, config) -> None:
  require(s.epochs >= 1, "eval.evaluators.linear_probe.epochs", s.epochs, "must be >= 1")
  require(s.learning_rate > 0, "eval.evaluators.linear_probe.learning_rate", s.learning_rate, "must be > 0")


LINEAR_PROBE = register_evaluator(
  Evaluator(
    "linear_probe",
    run_linear_probe,
    defaults={"epochs": 100, "learning_rate": 0.05},
    check=check_linear_probe_settings,
    description="linear probe top-1 / top-5",
  )
)
