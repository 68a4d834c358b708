"""Evaluation at scale: features that stay on the devices that computed them.

A split's frozen features are extracted from a stream of this process's
batches (each process reads only its share of the split; no process ever
holds the split's images) and kept as global arrays of shape ``[C, B, D]``:
``C`` chunks of one global batch each, the batch axis ``B`` sharded over the
mesh's ``data`` axis, so every device keeps the rows it embedded
(:class:`ShardedFeatures`). Host memory is bounded by one image batch; device
memory holds ``N x D x 4`` bytes of features spread over all devices.

On them:

* :func:`sharded_knn_predict` — exact k-NN: every chunk of test features is
  gathered (one batch, ``B x D``), each device scores it against its own
  training rows and keeps its top ``k``, and the ``k x devices`` candidates
  are merged by a second top ``k``: the same neighbours as one top ``k`` over
  the whole bank (:func:`gjax.eval.knn.knn_predict`, which replicates it).
* :func:`fit_sharded_linear_probe` — the linear probe's SGD over the sharded
  features: each step's batch (the same permutation as
  :func:`gjax.eval.linear_probe.fit_linear_probe`) is assembled on the devices
  (each contributes the rows it holds, one ``psum`` of ``batch x D``), so no
  process holds the training features.

Layout: process ``p`` reads the contiguous block ``[start_p, start_p + n_p)``
of the split in batches of ``b = B / P`` rows, padded to the same number of
chunks on every process; row ``j`` of process ``p``'s chunk ``c`` is global
position ``(c, p * b + j)``. :meth:`ShardedFeatures.positions` maps example
indices to positions; padding rows are marked invalid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gjax import data as gdata
from gjax.data.sharding import DATA_AXIS
from gjax.math import normalize


def process_blocks(num_examples: int, process_count: int) -> list[tuple[int, int]]:
  """``[(start, count)]`` of each process's contiguous block of a split of
  ``num_examples``: sizes differ by at most one, the first ones larger (as
  ``tfds.even_splits`` without dropping the remainder)."""
  if num_examples < 1 or process_count < 1:
    raise ValueError(f"num_examples={num_examples} and process_count={process_count} must be >= 1")
  base, extra = divmod(num_examples, process_count)
  blocks, start = [], 0
  for p in range(process_count):
    count = base + (p < extra)
    blocks.append((start, count))
    start += count
  return blocks


@dataclasses.dataclass(frozen=True)
class SplitLayout:
  """Where each example of a split lives in ``[C, B]`` (see the module docstring)."""

  num_examples: int
  global_batch: int
  process_count: int

  def __post_init__(self):
    if self.global_batch < 1 or self.global_batch % self.process_count:
      raise ValueError(
        f"global_batch={self.global_batch} must be a positive multiple of the {self.process_count} processes"
      )

  @property
  def local_batch(self) -> int:
    return self.global_batch // self.process_count

  @property
  def blocks(self) -> list[tuple[int, int]]:
    return process_blocks(self.num_examples, self.process_count)

  @property
  def num_chunks(self) -> int:
    return max(1, math.ceil(max(count for _, count in self.blocks) / self.local_batch))

  def positions(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(chunk, column)`` of the examples ``indices`` (int arrays)."""
    indices = np.asarray(indices, np.int64)
    starts = np.array([start for start, _ in self.blocks])
    process = np.searchsorted(starts, indices, side="right") - 1
    offset = indices - starts[process]
    return offset // self.local_batch, process * self.local_batch + offset % self.local_batch


def local_eval_batches(
  images: np.ndarray, labels: np.ndarray, layout: SplitLayout, process_index: int
) -> Iterator[dict[str, np.ndarray]]:
  """This process's batches of an in-memory split in ``layout``: ``image``,
  ``label`` and ``valid`` (False on the padding that evens the chunk count)."""
  start, count = layout.blocks[process_index]
  b = layout.local_batch
  for c in range(layout.num_chunks):
    lo, hi = start + min(c * b, count), start + min((c + 1) * b, count)
    yield pad_batch(images[lo:hi], labels[lo:hi], b)


def pad_batch(images: np.ndarray, labels: np.ndarray, size: int) -> dict[str, np.ndarray]:
  """A batch of ``size`` rows: the given ones, then zero rows marked invalid."""
  n = len(labels)
  if n > size:
    raise ValueError(f"a batch of {n} rows does not fit in {size}")
  pad = size - n
  image_shape = images.shape[1:]
  return {
    "image": np.concatenate([images, np.zeros((pad,) + image_shape, images.dtype)]) if pad else images,
    "label": np.concatenate([labels, np.zeros(pad, np.int32)]).astype(np.int32),
    "valid": np.arange(size) < n,
  }


@dataclasses.dataclass
class ShardedFeatures:
  """One split's features on the devices: ``values[name]`` ``[C, B, D]``,
  ``labels`` and ``valid`` ``[C, B]``, all with ``B`` sharded on ``data``."""

  values: dict[str, jax.Array]
  labels: jax.Array
  valid: jax.Array
  layout: SplitLayout
  mesh: jax.sharding.Mesh

  @property
  def num_examples(self) -> int:
    return self.layout.num_examples

  def host(self, name: str) -> np.ndarray:
    """``[N, D]`` features ``name`` on the host, in the split's order (gathers
    them: for data small enough to hold, and for the tests)."""
    chunk, column = self.layout.positions(np.arange(self.num_examples))
    return gdata.to_host(self.values[name])[chunk, column]

  def host_labels(self) -> np.ndarray:
    chunk, column = self.layout.positions(np.arange(self.num_examples))
    return gdata.to_host(self.labels)[chunk, column]


def from_host(values: dict[str, np.ndarray], labels: np.ndarray, global_batch: int, mesh) -> ShardedFeatures:
  """Host features (the same full arrays on every process, as the in-memory
  path has them) in the sharded layout; each process places only its shards."""
  labels = np.asarray(labels, np.int32)
  layout = SplitLayout(len(labels), global_batch, jax.process_count())
  chunk, column = layout.positions(np.arange(len(labels)))
  shape = (layout.num_chunks, global_batch)
  sharding = chunk_sharding(mesh)

  def place(host: np.ndarray) -> jax.Array:  # rows of the split -> [C, B, ...]
    full = np.zeros(shape + host.shape[1:], host.dtype)
    full[chunk, column] = host
    return jax.make_array_from_callback(full.shape, sharding, lambda index: full[index])

  return ShardedFeatures(
    {name: place(np.asarray(v, np.float32)) for name, v in values.items()},
    place(labels),
    place(np.ones(len(labels), bool)),
    layout,
    mesh,
  )


def chunk_sharding(mesh) -> NamedSharding:
  """``[C, B, ...]`` arrays with ``B`` over the ``data`` axis."""
  return NamedSharding(mesh, P(None, DATA_AXIS))


def extract_sharded_features(embed, variables, local_batches, layout: SplitLayout, mesh) -> ShardedFeatures:
  """Embeds this process's ``local_batches`` (dicts of ``image``, ``label``,
  ``valid`` with ``layout.local_batch`` rows, ``layout.num_chunks`` of them,
  the same count on every process) with the feature step ``embed``
  (:func:`gjax.eval.features.make_embed_step`) and keeps the outputs on the
  devices, stacked as ``[C, B, D]``."""
  chunks: dict[str, list[jax.Array]] = {}
  count = 0
  key = jax.random.PRNGKey(0)
  for batch in local_batches:
    if len(batch["label"]) != layout.local_batch:
      raise ValueError(f"batch {count} has {len(batch['label'])} rows, the layout {layout.local_batch}")
    global_batch = gdata.make_global_batch(batch, mesh)
    out = embed(variables, global_batch["image"], key, False)
    for name, value in dict(out, label=global_batch["label"], valid=global_batch["valid"]).items():
      chunks.setdefault(name, []).append(value)
    count += 1
  if count != layout.num_chunks:
    raise ValueError(
      f"this process read {count} batches, the layout has {layout.num_chunks} (every process must read the same number)"
    )
  stack = jax.jit(lambda parts: jnp.stack(parts), out_shardings=chunk_sharding(mesh))
  stacked = {name: stack(parts) for name, parts in chunks.items()}
  labels, valid = stacked.pop("label"), stacked.pop("valid")
  return ShardedFeatures(stacked, labels, valid, layout, mesh)


# --- k-NN ---------------------------------------------------------------------------------------------------


def _knn_chunk_votes(mesh, k: int, num_classes: int, weighted: bool):
  """A jitted ``(test [B, D] sharded, bank [C, B, D], labels, valid, temperature) -> votes [B, classes]``."""

  def local(test, bank, bank_labels, bank_valid, temperature):
    test = jax.lax.all_gather(test, DATA_AXIS, tiled=True)  # the whole test chunk on every device
    rows = bank.reshape(-1, bank.shape[-1])  # normalised once, by sharded_knn_predict
    sims = jnp.where(bank_valid.reshape(-1)[None, :], normalize(test) @ rows.T, -jnp.inf)
    local_k = min(k, rows.shape[0])
    top_sims, top_idx = jax.lax.top_k(sims, local_k)
    top_labels = bank_labels.reshape(-1)[top_idx]
    # Merge: every device's candidates, then the k best of them.
    all_sims = jax.lax.all_gather(top_sims, DATA_AXIS, axis=1, tiled=True)
    all_labels = jax.lax.all_gather(top_labels, DATA_AXIS, axis=1, tiled=True)
    best_sims, best = jax.lax.top_k(all_sims, k)
    best_labels = jnp.take_along_axis(all_labels, best, axis=1)
    weights = jnp.exp(best_sims / temperature) if weighted else jnp.ones_like(best_sims)
    onehot = jax.nn.one_hot(best_labels, num_classes, dtype=weights.dtype)
    return jnp.einsum("nk,nkc->nc", weights, onehot)

  return jax.jit(
    jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(P(DATA_AXIS), P(None, DATA_AXIS), P(None, DATA_AXIS), P(None, DATA_AXIS), P()),
      out_specs=P(),
      check_vma=False,
    )
  )


def sharded_knn_predict(
  train: ShardedFeatures,
  test: ShardedFeatures,
  name: str,
  *,
  k: int = 30,
  num_classes: int,
  weighted: bool = False,
  temperature: float = 0.1,
) -> np.ndarray:
  """Predicted labels ``[N_test]`` (split order) of the cosine k-NN vote of
  ``test.values[name]`` against ``train.values[name]``, neither leaving its devices
  but one test chunk at a time."""
  if not 1 <= k <= train.num_examples:
    raise ValueError(f"k={k} must be in [1, {train.num_examples}] (the number of training examples)")
  bank = train.values[name]
  if bank.shape[-1] != test.values[name].shape[-1]:
    raise ValueError(f"train {bank.shape} and test {test.values[name].shape} feature sizes differ")
  votes_fn = _knn_chunk_votes(train.mesh, k, num_classes, weighted)
  bank = jax.jit(normalize, out_shardings=chunk_sharding(train.mesh))(bank)  # once, not per test chunk
  preds = []
  for c in range(test.layout.num_chunks):
    votes = votes_fn(test.values[name][c], bank, train.labels, train.valid, jnp.float32(temperature))
    preds.append(np.asarray(jnp.argmax(votes, axis=-1)))
  chunk, column = test.layout.positions(np.arange(test.num_examples))
  return np.stack(preds)[chunk, column]


# --- linear probe -------------------------------------------------------------------------------------------


def _masked_moments(values, valid):
  """Mean and std of the valid rows of ``values`` ``[C, B, D]`` (two passes, float32)."""
  w = valid.astype(values.dtype)[..., None]
  n = jnp.sum(w)
  mean = jnp.sum(values * w, axis=(0, 1)) / n
  var = jnp.sum(((values - mean) ** 2) * w, axis=(0, 1)) / n
  return mean, jnp.sqrt(var)


def _gather_rows(mesh):
  """``(values [C, B, D], labels [C, B], chunk [n], column [n]) -> (rows [n, D], labels [n])``, replicated:
  each device contributes the rows it holds, one psum."""

  def local(values, labels, chunk, column):
    width = values.shape[1]
    first = jax.lax.axis_index(DATA_AXIS) * width
    mine = (column >= first) & (column < first + width)
    col = jnp.clip(column - first, 0, width - 1)
    rows = jnp.where(mine[:, None], values[chunk, col], 0.0)
    row_labels = jnp.where(mine, labels[chunk, col], 0)
    return jax.lax.psum(rows, DATA_AXIS), jax.lax.psum(row_labels, DATA_AXIS)

  return jax.shard_map(
    local, mesh=mesh, in_specs=(P(None, DATA_AXIS), P(None, DATA_AXIS), P(), P()), out_specs=(P(), P()), check_vma=False
  )


def fit_sharded_linear_probe(
  train: ShardedFeatures,
  name: str,
  *,
  num_classes: int,
  epochs: int = 100,
  batch_size: int = 256,
  learning_rate: float = 0.05,
  weight_decay: float = 0.0,
  momentum: float = 0.9,
  standardize: bool = True,
  seed: int = 0,
):
  """:func:`gjax.eval.linear_probe.fit_linear_probe` on sharded features: the
  same initialisation, optimiser, schedule and per-epoch permutations
  (``np.random.default_rng((seed, epoch))``), each batch assembled on the
  devices from the rows they hold. Returns a :class:`~gjax.eval.probe.LinearProbe`
  (its weights, bias and the standardisation on the host: ``D x C`` numbers)."""
  from gjax.eval.probe import STD_FLOOR, LinearProbe, make_probe_optimizer

  values, num_train = train.values[name], train.num_examples
  dim = values.shape[-1]
  for label, value, ok in (
    ("epochs", epochs, epochs >= 1),
    ("learning_rate", learning_rate, learning_rate > 0),
    ("batch_size", batch_size, 1 <= batch_size <= num_train),
    ("momentum", momentum, 0 <= momentum < 1),
    ("weight_decay", weight_decay, weight_decay >= 0),
  ):
    if not ok:
      raise ValueError(f"{label}={value} is out of range (batch_size: 1..{num_train} training examples)")
  if standardize:
    mean, std = jax.jit(_masked_moments)(values, train.valid)
    std = jnp.where(std < STD_FLOOR, 1.0, std)
  else:
    mean, std = jnp.zeros(dim), jnp.ones(dim)
  steps_per_epoch = num_train // batch_size
  optimizer = make_probe_optimizer(learning_rate, momentum, weight_decay, epochs * steps_per_epoch)
  key = jax.random.key(seed)
  params = {
    "weights": 0.01 * jax.random.normal(key, (dim, num_classes), jnp.float32),
    "bias": jnp.zeros((num_classes,), jnp.float32),
  }
  opt_state = optimizer.init(params)
  gather = _gather_rows(train.mesh)

  @jax.jit
  def step(params, opt_state, values, labels, chunk, column):
    x, y = gather(values, labels, chunk, column)
    x = (x - mean) / std

    def loss_fn(params):
      logits = x @ params["weights"] + params["bias"]
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for epoch in range(epochs):
    order = np.random.default_rng((seed, epoch)).permutation(num_train)
    losses = []
    for s in range(steps_per_epoch):
      chunk, column = train.layout.positions(order[s * batch_size : (s + 1) * batch_size])
      params, opt_state, loss = step(
        params, opt_state, values, train.labels, jnp.asarray(chunk, jnp.int32), jnp.asarray(column, jnp.int32)
      )
      losses.append(loss)
  return LinearProbe(
    weights=np.asarray(params["weights"]),
    bias=np.asarray(params["bias"]),
    mean=np.asarray(mean, np.float32),
    std=np.asarray(std, np.float32),
    final_loss=float(np.mean([np.asarray(l) for l in losses])),
  )


def sharded_probe_topk(probe, features: ShardedFeatures, name: str, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
  """Top-k accuracies of ``probe`` on sharded features (scored on the devices, one number per k back)."""
  num_classes = probe.weights.shape[1]
  k_max = min(max(ks), num_classes)
  weights, bias = jnp.asarray(probe.weights), jnp.asarray(probe.bias)
  mean, std = jnp.asarray(probe.mean), jnp.asarray(probe.std)

  @jax.jit
  def hits(values, labels, valid):
    logits = ((values - mean) / std) @ weights + bias
    top = jax.lax.top_k(logits, k_max)[1]
    match = top == labels[..., None]
    return jnp.stack([jnp.sum(jnp.any(match[..., : min(k, num_classes)], axis=-1) & valid) for k in ks])

  counts = np.asarray(hits(features.values[name], features.labels, features.valid))
  return {k: float(c) / features.num_examples for k, c in zip(ks, counts)}
