"""The evaluation splits, read per process in batches (:class:`EvalSplit`).

An in-memory data set's split is its arrays (the loader holds them anyway);
a TFDS split is streamed: each process reads only its contiguous block of the
split (:func:`gjax.eval.sharded.process_blocks`) in batches, so no process ever
holds the split's images and host memory does not grow with the split. The
features are then kept on the devices (:mod:`gjax.eval.sharded`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

from gjax import data as gdata
from gjax.eval.sharded import SplitLayout, local_eval_batches, pad_batch

#: ``(layout, process_index) -> this process's batches`` (``image``, ``label``, ``valid``).
Reader = Callable[[SplitLayout, int], Iterator[dict[str, np.ndarray]]]


@dataclasses.dataclass
class EvalSplit:
  """One evaluation split: its size, image shape and reader; ``images`` and
  ``labels`` are set for in-memory splits only."""

  name: str
  num_examples: int
  image_shape: tuple[int, int, int]
  read: Reader
  images: np.ndarray | None = None
  labels: np.ndarray | None = None
  read_head: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None  # the first n examples, on the host

  def head(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` on the host: all of an in-memory split; the first
    ``limit`` examples of a streamed one (``None``: the whole split, which
    holds its images in memory: for bounded splits only)."""
    if self.images is not None:
      return self.images, self.labels
    return self.read_head(self.num_examples if limit is None else min(limit, self.num_examples))


def memory_split(name: str, images: np.ndarray, labels: np.ndarray) -> EvalSplit:
  labels = np.asarray(labels, np.int32)
  return EvalSplit(
    name,
    len(labels),
    tuple(images.shape[1:]),
    lambda layout, p: local_eval_batches(images, labels, layout, p),
    images,
    labels,
  )


def block_split(segments: list[tuple[str, int, int]], start: int, count: int) -> str:
  """The TFDS split string of examples ``[start, start + count)`` of the
  concatenated ``segments`` (``(split name, from, to)`` in order)."""
  parts, offset = [], 0
  for name, lo, hi in segments:
    size = hi - lo
    a, b = max(start, offset), min(start + count, offset + size)
    if a < b:
      parts.append(f"{name}[{lo + a - offset}:{lo + b - offset}]")
    offset += size
  return "+".join(parts)


def tfds_split(config, spec, split: str, limit: int = -1) -> EvalSplit:
  """The TFDS ``split`` of ``spec`` (its first ``limit`` examples if > 0), streamed."""
  import tensorflow_datasets as tfds

  from gjax.train.input_pipeline import tfds_builder, tfds_image_shape

  data_dir = config.dataset.data_dir or None
  builder = tfds_builder(spec, data_dir, split)
  absolute = tfds.core.ReadInstruction.from_spec(split).to_absolute(builder.info.splits)
  segments = []
  for instruction in absolute:
    total = builder.info.splits[instruction.splitname].num_examples
    lo = 0 if instruction.from_ is None else instruction.from_
    hi = total if instruction.to is None else instruction.to
    segments.append((instruction.splitname, lo, hi))
  num_examples = sum(hi - lo for _, lo, hi in segments)
  if limit > 0:
    num_examples = min(num_examples, limit)
  if num_examples < 1:
    raise ValueError(f"TFDS data set {spec.tfds_name!r}: split {split!r} is empty")

  def batches(sub_split: str, batch: int) -> Iterator[dict[str, np.ndarray]]:
    return gdata.tfds_batches(
      spec.tfds_name,
      sub_split,
      batch,
      train=False,
      drop_remainder=False,
      data_dir=data_dir,
      image_key=spec.image_key,
      label_key=spec.label_key,
      host_square=spec.host_square,
      process_index=0,
      process_count=1,
    )

  def read(layout: SplitLayout, process_index: int) -> Iterator[dict[str, np.ndarray]]:
    start, count = layout.blocks[process_index]
    made = 0
    if count:
      for batch in batches(block_split(segments, start, count), layout.local_batch):
        made += 1
        yield pad_batch(batch["image"], batch["label"].astype(np.int32), layout.local_batch)
    image_shape = tfds_image_shape(spec, data_dir)
    empty = np.zeros((0,) + image_shape, np.uint8)
    for _ in range(layout.num_chunks - made):  # every process reads as many batches as the largest block needs
      yield pad_batch(empty, np.zeros(0, np.int32), layout.local_batch)

  def read_head(n: int) -> tuple[np.ndarray, np.ndarray]:
    parts = list(batches(block_split(segments, 0, n), 1024))
    return (np.concatenate([b["image"] for b in parts]), np.concatenate([b["label"] for b in parts]).astype(np.int32))

  return EvalSplit(split, num_examples, tfds_image_shape(spec, data_dir), read, read_head=read_head)


def eval_splits(config) -> tuple[EvalSplit, EvalSplit]:
  """The labelled training split (the k-NN bank, the probe's training set;
  ``config.eval.num_train_examples`` caps it) and the test split."""
  from gjax.train.input_pipeline import load_in_memory

  spec = gdata.spec_from_config(config.dataset)
  cap = config.eval.num_train_examples
  if spec.source == "memory":
    train_x, train_y = load_in_memory(config, "train")
    if cap > 0:
      train_x, train_y = train_x[:cap], train_y[:cap]
    test_x, test_y = load_in_memory(config, "test")
    return memory_split("train", train_x, train_y), memory_split("test", test_x, test_y)
  return tfds_split(config, spec, spec.train_split, cap), tfds_split(config, spec, spec.eval_split)
