"""The checks of ``config.dataset``: which data set, its TFDS description, its
subset and its directory, each error naming the field (called by
:func:`gjax.train.config.validate_config` before any data is read)."""

from __future__ import annotations

import math
import os
import re

from gjax.config_checks import require
from gjax.data.arrays import check_readable_dir
from gjax.data.datasets import spec_from_config

#: TFDS split expressions: names, slices, unions ("train", "train[:90%]", "unlabelled+train").
TFDS_SPLIT_PATTERN = r"[A-Za-z0-9_]+(\[[^\]]*\])?(\+[A-Za-z0-9_]+(\[[^\]]*\])?)*"


def validate_data_config(d) -> None:
  """Checks ``config.dataset`` (``d``); raises ``ValueError`` naming the field."""
  try:
    spec = spec_from_config(d)
  except ValueError as e:
    raise ValueError(f"config.dataset.name={d.name!r} is invalid: {e}") from None
  t = d.tfds
  for field in ("pretrain_split", "train_split", "eval_split"):
    require(
      bool(re.fullmatch(TFDS_SPLIT_PATTERN, t[field])),
      f"dataset.tfds.{field}",
      t[field],
      "must be a TFDS split expression such as 'train', 'train[:90%]' or 'unlabelled+train'",
    )
  for field in ("image_key", "label_key"):
    require(
      bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_/]*", t[field])),
      f"dataset.tfds.{field}",
      t[field],
      "must be a TFDS feature name (letters, digits, '_', '/' for nested features)",
    )
  for field in ("mean", "std"):
    require(
      all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in t[field]),
      f"dataset.tfds.{field}",
      t[field],
      "must be a tuple of finite numbers (one per channel)",
    )
  require(
    len(t.mean) == len(t.std) and all(v > 0 for v in t.std),
    "dataset.tfds.std",
    t.std,
    f"must have as many values as dataset.tfds.mean={tuple(t.mean)}, all > 0",
  )
  require(
    not t.resize or t.image_size > 0,
    "dataset.tfds.image_size",
    t.image_size,
    "must be > 0 with dataset.tfds.resize=True (the side the host resizes to)",
  )
  require(t.image_size >= 0, "dataset.tfds.image_size", t.image_size, "must be >= 0")
  require(
    not d.train_classes or spec.source == "memory",
    "dataset.train_classes",
    d.train_classes,
    f"is supported for the in-memory data sets, not for the TFDS data set {d.name!r}",
  )
  require(
    d.num_train_examples == -1 or d.num_train_examples > 0,
    "dataset.num_train_examples",
    d.num_train_examples,
    "must be -1 (all) or > 0",
  )
  require(
    all(isinstance(k, int) and k >= 0 for k in d.train_classes),
    "dataset.train_classes",
    d.train_classes,
    "must be a tuple of non-negative class indices",
  )
  for field in ("synthetic_image_size", "synthetic_channels"):
    require(d[field] >= 1, f"dataset.{field}", d[field], "must be >= 1")
  if d.data_dir:
    check_readable_dir(d.data_dir, "config.dataset.data_dir")  # a permission problem, not "not found"
    require(os.path.isdir(d.data_dir), "dataset.data_dir", d.data_dir, "is not a directory")
