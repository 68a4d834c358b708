"""Frozen features of a trained model: encoder output ``h``, ``z`` and the head's
outputs (VJE: posterior mean ``mu`` and variance ``var``), sharded over devices."""

from __future__ import annotations

import functools

import jax
import numpy as np

from gjax import data as gdata


def check_features(name: str, x: np.ndarray) -> None:
  """Raises ``ValueError`` unless ``x`` is a non-empty, finite ``[N, D]`` array."""
  if x.ndim != 2:
    raise ValueError(f"{name} must be [N, D]; got shape {x.shape}")
  if len(x) == 0:
    raise ValueError(f"{name} is empty (shape {x.shape})")
  if not np.all(np.isfinite(x)):
    bad = int((~np.isfinite(x)).any(axis=1).sum())
    raise ValueError(f"{name} has non-finite values in {bad} of {len(x)} rows")


def make_embed_step(model, augment: gdata.AugmentConfig, mesh, *, train_mode: bool = False):
  """The jitted feature step ``(variables, uint8 batch, key, augmented) -> {name: [B, D]}``
  over ``mesh`` (variables and key replicated, the batch sharded on ``data``;
  ``augmented`` is static): the evaluation view, or with ``augmented=True`` a
  training-style view drawn with ``key``. Used by :func:`extract_features` and
  compiled ahead of time by ``gjax.scale``."""
  replicated = gdata.replicated_sharding(mesh)

  @functools.partial(jax.jit, in_shardings=(replicated, gdata.batch_sharding(mesh), replicated), static_argnums=(3,))
  def embed(variables, batch, key, augmented):
    x = gdata.augment_batch(key, batch, augment) if augmented else gdata.eval_preprocess(batch, augment)
    if train_mode:
      out, _ = model.apply(
        variables, x, train=True, method=type(model).embed, mutable=[k for k in variables if k != "params"]
      )
      return out
    return model.apply(variables, x, train=False, method=type(model).embed)

  return embed


def extract_features(
  model,
  variables,
  images: np.ndarray,
  augment: gdata.AugmentConfig,
  mesh,
  batch_size: int = 512,
  view_rng=None,
  train_mode: bool = False,
) -> dict[str, np.ndarray]:
  """Embeds ``images`` (uint8 NHWC); returns host arrays.

  With ``view_rng=None`` each image gets the deterministic evaluation view;
  with a key, a random training-style view (the key folded with the batch
  index, so the views are reproducible). ``train_mode=True`` runs the network
  as in training (BatchNorm normalises with each batch's statistics, which are
  not kept): the embeddings a training step sees, for batches of
  ``batch_size``; the images beyond the last whole batch are dropped.

  Batches are padded to a multiple of the device count and sharded on the
  mesh's ``data`` axis; the padding rows are dropped from the result. With
  several processes each passes the same ``images`` and gets all features.
  """
  num_devices = mesh.devices.size
  batch_size = max(num_devices, batch_size - batch_size % num_devices)
  embed = make_embed_step(model, augment, mesh, train_mode=train_mode)

  if train_mode:  # padding rows would enter the batch statistics: whole batches only
    if len(images) < batch_size:
      raise ValueError(f"train_mode needs at least one whole batch of {batch_size} images, got {len(images)}")
    images = images[: len(images) - len(images) % batch_size]
  chunks: dict[str, list[np.ndarray]] = {}
  for start in range(0, len(images), batch_size):
    batch = images[start : start + batch_size]
    valid = len(batch)
    if valid < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - valid,) + batch.shape[1:], batch.dtype)])
    key = jax.random.fold_in(jax.random.PRNGKey(0) if view_rng is None else view_rng, start // batch_size)
    # Every process holds the whole batch; device_put keeps each process's rows.
    out = embed(variables, jax.device_put(batch, gdata.batch_sharding(mesh)), key, view_rng is not None)
    for key, value in out.items():
      chunks.setdefault(key, []).append(gdata.to_host(value)[:valid])
  return {key: np.concatenate(parts) for key, parts in chunks.items()}
