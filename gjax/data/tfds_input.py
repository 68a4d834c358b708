"""TFDS input pipelines: per-process, seeded, batched numpy dicts.

Any TFDS data set with an image feature and a label feature (their keys are
arguments); the built-in ones (``cifar10``, ``cifar100``, ``stl10``,
``imagenet2012``) and their splits are described in
:mod:`gjax.data.datasets`. The data must already be prepared in ``data_dir``
(TFDS downloads only when ``download=True``; ImageNet always needs its manual
download).

What runs where:

* Host (tf.data): reading this process's sub-split
  (``tfds.split_for_jax_process``), seeded file shuffling
  (``shuffle_files`` + ``tfds.ReadConfig(shuffle_seed=...)``), a seeded
  example shuffle buffer, decoding, batching (drop-remainder) and prefetch.
* Host, for data sets whose images differ in size (ImageNet; ``host_square``
  > 0): each is resized (shorter side to ``host_square``, bilinear,
  antialiased) and cut to a ``host_square`` square -- at a random position
  for training (a stateless draw seeded by ``(seed, process, example counter)``), central for
  evaluation. The per-view RandomResizedCrop then happens on the device, inside
  that square (so a view never reaches the cropped-away ends of the long side).
* Device: everything else (:mod:`gjax.data.augment`). The 32x32, 96x96 and
  28x28 sets ship their full uint8 images.

Batches are ``{"image": uint8 [b, H, W, C], "label": int32 [b]}`` with ``b``
the per-process batch size (STL-10's unlabelled images have label -1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from gjax.data.datasets import get_dataset


def pretrain_split(name: str) -> str:
  """The self-supervised pretraining split of a registered data set (``"unlabelled+train"`` for STL-10)."""
  return get_dataset(name).pretrain_split


def eval_split(name: str) -> str:
  """The held-out split of a registered data set (``"validation"`` for ImageNet)."""
  return get_dataset(name).eval_split


def _resize_and_square(image: tf.Tensor, size: int, seed: tf.Tensor | None) -> tf.Tensor:
  """Shorter side -> ``size``, then a ``size`` x ``size`` square (random if seeded)."""
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  scale = tf.cast(size, tf.float32) / tf.cast(tf.minimum(height, width), tf.float32)
  new_h = tf.maximum(size, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
  new_w = tf.maximum(size, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
  image = tf.image.resize(image, [new_h, new_w], method="bilinear", antialias=True)
  if seed is None:
    top, left = (new_h - size) // 2, (new_w - size) // 2
  else:
    u = tf.random.stateless_uniform([2], seed=seed)
    top = tf.cast(u[0] * tf.cast(new_h - size + 1, tf.float32), tf.int32)
    left = tf.cast(u[1] * tf.cast(new_w - size + 1, tf.float32), tf.int32)
    top, left = tf.minimum(top, new_h - size), tf.minimum(left, new_w - size)
  image = image[top : top + size, left : left + size]
  image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
  return tf.ensure_shape(image, [size, size, image.shape[-1]])


def make_tfds_dataset(
  name: str,
  split: str,
  global_batch_size: int,
  *,
  train: bool,
  seed: int = 0,
  data_dir: str | os.PathLike | None = None,
  shuffle_buffer: int = 10_000,
  drop_remainder: bool = True,
  image_key: str = "image",
  label_key: str = "label",
  host_square: int = 0,
  download: bool = False,
  process_index: int | None = None,
  process_count: int | None = None,
) -> tf.data.Dataset:
  """The batched ``tf.data`` pipeline for this process.

  Args:
    name: a TFDS name (``tfds.load``'s).
    split: a TFDS split string, e.g. ``pretrain_split(name)`` or ``"test"``.
    global_batch_size: batch size summed over processes; each process yields
      ``global_batch_size // process_count`` examples per batch.
    train: shuffle (files and examples, seeded) and repeat forever; with
      ``host_square`` also take a random rather than central host square.
    seed: seeds file order, shuffle buffer and host crops.
    data_dir: TFDS data directory (passed through to ``tfds.load``).
    shuffle_buffer: example shuffle buffer size (training only).
    drop_remainder: drop a last partial batch (only matters when not training).
    image_key, label_key: the data set's image and label features.
    host_square: > 0 resizes and square-crops every image on the host to this
      side (images of different sizes; 256 for ImageNet); 0 keeps them as stored.
    download: let TFDS download/prepare the data if it is missing.
    process_index, process_count: default to ``jax.process_index()`` and
      ``jax.process_count()``.
  """
  if process_index is None or process_count is None:
    import jax

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(
      f"global_batch_size {global_batch_size} must be a positive multiple of the process count {process_count}."
    )
  batch_size = global_batch_size // process_count

  options = tf.data.Options()
  options.deterministic = True
  read_config = tfds.ReadConfig(shuffle_seed=seed, options=options)
  process_split = tfds.split_for_jax_process(
    split, process_index=process_index, process_count=process_count, drop_remainder=True
  )
  ds = tfds.load(
    name, split=process_split, data_dir=data_dir, shuffle_files=train, read_config=read_config, download=download
  )
  if train:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()

  crop_seed = seed * process_count + process_index

  def decode(index, example):
    image = example[image_key]
    if host_square:
      seed_pair = tf.stack([tf.constant(crop_seed, tf.int64), index]) if train else None
      image = _resize_and_square(image, host_square, seed_pair)
    return {"image": image, "label": tf.cast(example[label_key], tf.int32)}

  ds = ds.enumerate().map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder or train)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def tfds_batches(name: str, split: str, global_batch_size: int, **kwargs) -> Iterator[dict[str, np.ndarray]]:
  """Iterates :func:`make_tfds_dataset` (same arguments) as numpy batch dicts."""
  return iter(tfds.as_numpy(make_tfds_dataset(name, split, global_batch_size, **kwargs)))
