"""Data-parallel mesh and host-batch -> global ``jax.Array`` conversion.

One mesh axis, ``"data"``, over all devices (of all processes). Each process
feeds its own slice of the global batch (see :class:`gjax.data.ArrayDataset`
and :mod:`gjax.data.tfds_input`); :func:`make_global_batch` assembles those
slices into global arrays sharded along the batch dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

#: Name of the data-parallel mesh axis.
DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis ``"data"`` over ``devices`` (default: ``jax.devices()``)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Shards the leading (batch) dimension over the ``"data"`` axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """Replicates a value on every device of ``mesh`` (parameters, PRNG keys)."""
  return NamedSharding(mesh, P())


def make_global_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Turns this process's batch (a pytree of numpy arrays) into global arrays.

  Every leaf's leading dimension is this process's share of the global batch;
  it must be divisible by the number of this process's devices in ``mesh``.
  The result has leading dimension ``local_size * process_count`` and is
  sharded with :func:`batch_sharding`.

  Raises:
    ValueError: a leaf is a scalar or its leading dimension is not divisible by
      the local device count.
  """
  sharding = batch_sharding(mesh)
  num_local = len(mesh.local_devices)

  def to_global(path, leaf):
    leaf = np.asarray(leaf)
    name = jax.tree_util.keystr(path) or "batch"
    if leaf.ndim == 0:
      raise ValueError(f"{name}: cannot shard a scalar along the batch axis.")
    if leaf.shape[0] % num_local:
      raise ValueError(
        f"{name}: per-process batch size {leaf.shape[0]} is not divisible by "
        f"the {num_local} local devices of the mesh (use a per-process batch "
        f"that is a multiple of {num_local})."
      )
    return jax.make_array_from_process_local_data(sharding, leaf)

  return jax.tree_util.tree_map_with_path(to_global, local_batch)


def to_host(x: jax.Array) -> np.ndarray:
  """The whole value of a global array as a host array, on every process.

  Fully addressable arrays (one process, or replicated) are read locally; an
  array sharded over several processes is all-gathered first.
  """
  if x.is_fully_addressable:
    return np.asarray(x)
  if x.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
