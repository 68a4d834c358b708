"""The data-set registry: one :class:`DatasetSpec` per data set, looked up by
``config.dataset.name``.

A spec says where the images come from (``source``: ``"memory"``, a loader
returning uint8 NHWC arrays; or ``"tfds"``, a prepared TFDS data set), its
split names, the image and label feature keys, and the augmentation preset
(output size, blur, per-channel mean / std, evaluation crop).

* Built-in: ``fashion_mnist``, ``digits``, ``synthetic`` (in memory) and
  ``cifar10``, ``cifar100``, ``stl10``, ``imagenet2012`` (TFDS).
* Any prepared TFDS data set by its TFDS name: ``dataset.name = "tfds:NAME"``
  with its keys, splits, normalisation and (optionally) a host-side resize in
  ``config.dataset.tfds`` (:func:`spec_from_config`; README "Your own data").
* A new data set in a file of its own: build a :class:`DatasetSpec` and call
  :func:`register_dataset` at import (``config.dataset.module`` names the module
  to import before the name is looked up).

This module imports neither jax nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import numpy as np

from gjax.registry import Registry

#: ``(split, config) -> (uint8 images [N, H, W, C], int32 labels [N])`` of a ``"memory"`` data set.
Loader = Callable[[str, object], tuple[np.ndarray, np.ndarray]]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SOURCES = ("memory", "tfds")
TFDS_PREFIX = "tfds:"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What gjax needs to know of a data set.

  ``image_size`` is the side of the augmented views (0: the stored side, for
  data sets whose size is only known when loaded, e.g. ``synthetic``);
  ``host_square`` > 0 resizes each image on the host (shorter side) and cuts a
  square of that side (random for training, central for evaluation), for data
  sets whose images differ in size (ImageNet). Blur is off at 32x32 and below
  (VJE Section 5.2).
  """

  name: str
  source: str
  mean: tuple[float, ...]
  std: tuple[float, ...]
  image_size: int = 0
  blur: bool = False
  eval_crop_fraction: float = 1.0
  pretrain_split: str = "train"
  train_split: str = "train"  # the labelled training split of the probes
  eval_split: str = "test"
  tfds_name: str = ""
  image_key: str = "image"
  label_key: str = "label"
  host_square: int = 0
  load: Loader | None = None
  # Known without reading the data (0: unknown): for sizing a run ahead of time
  # (``gjax.scale``: steps per epoch, the probe's classes, the recipe's cost).
  num_pretrain_examples: int = 0
  num_classes: int = 0

  def __post_init__(self):
    object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
    object.__setattr__(self, "std", tuple(float(v) for v in self.std))
    problems = []
    if self.source not in SOURCES:
      problems.append(f"source={self.source!r} must be one of {SOURCES}")
    if self.source == "memory" and self.load is None:
      problems.append("a 'memory' data set needs a load function")
    if self.source == "tfds" and not self.tfds_name:
      problems.append("a 'tfds' data set needs tfds_name")
    if not self.mean or len(self.mean) != len(self.std) or min(self.std, default=0) <= 0:
      problems.append(f"mean={self.mean} and std={self.std} must be non-empty, of one length, with std > 0")
    if self.image_size < 0 or self.host_square < 0:
      problems.append(f"image_size={self.image_size} and host_square={self.host_square} must be >= 0")
    if self.num_pretrain_examples < 0 or self.num_classes < 0:
      problems.append(
        f"num_pretrain_examples={self.num_pretrain_examples} and num_classes={self.num_classes} must be >= 0"
      )
    if not 0 < self.eval_crop_fraction <= 1:
      problems.append(f"eval_crop_fraction={self.eval_crop_fraction} must be in (0, 1]")
    for field in ("pretrain_split", "train_split", "eval_split", "image_key", "label_key"):
      if not getattr(self, field):
        problems.append(f"{field} must not be empty")
    if problems:
      raise ValueError(f"data set {self.name!r}: " + "; ".join(problems))


def check_loaded(spec: DatasetSpec, split: str, images, labels) -> None:
  """Raises ValueError naming the data set, the split and what was returned
  unless a ``"memory"`` loader returned what gjax trains on: uint8 NHWC images
  (0..255, channels as many as ``spec.mean`` has, or one mean for all) and one
  integer label per image. Float images in [0, 1] would otherwise train on
  near-constant pixels: the augmentation reads the values as 0..255."""
  where = f"data set {spec.name!r} (split {split!r}): its loader returned"
  if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
    raise ValueError(
      f"{where} {type(images).__name__} images and {type(labels).__name__} labels; expected "
      "numpy arrays: uint8 images [N, H, W, C] and integer labels [N]"
    )
  if images.dtype != np.uint8 or images.ndim != 4:
    values = ""
    if images.size and np.issubdtype(images.dtype, np.number):
      values = f" with values in [{images.min():.4g}, {images.max():.4g}]"
    hint = (
      " (floats in [0, 1]: (images * 255).round().astype(np.uint8))" if np.issubdtype(images.dtype, np.floating) else ""
    )
    raise ValueError(
      f"{where} images of dtype {images.dtype} and shape {images.shape}{values}; gjax expects "
      f"uint8 images in 0..255 of shape [N, H, W, C] (NHWC){hint}"
    )
  if images.size and images.max() <= 1:
    raise ValueError(
      f"{where} uint8 images of shape {images.shape} whose values are all 0 or 1; gjax expects "
      "0..255 (values in [0, 1] cast to uint8? multiply by 255 before the cast)"
    )
  if len(spec.mean) not in (1, images.shape[-1]):
    raise ValueError(
      f"{where} images of shape {images.shape} ({images.shape[-1]} channels, NHWC) but its "
      f"mean has {len(spec.mean)} values: one per channel (or one for all)"
    )
  if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
      f"{where} labels of dtype {labels.dtype} and shape {labels.shape} for {len(images)} "
      "images; expected one integer label per image, shape [N]"
    )


_DATASETS: Registry[DatasetSpec] = Registry(
  "data set", f", or '{TFDS_PREFIX}NAME' for any prepared TFDS data set (config.dataset.tfds)"
)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
  """Adds ``spec`` under ``spec.name``; a name may be registered once."""
  if spec.name.startswith(TFDS_PREFIX):
    raise ValueError(
      f"data set names starting with {TFDS_PREFIX!r} are reserved for config.dataset.tfds: {spec.name!r}"
    )
  return _DATASETS.add(spec.name, spec)


def registered_datasets() -> tuple[str, ...]:
  return tuple(_DATASETS.names())


def get_dataset(name: str) -> DatasetSpec:
  """The registered spec of ``name``."""
  return _DATASETS.get(name)


def spec_from_config(dataset_config) -> DatasetSpec:
  """The spec of ``config.dataset``: a registered name (after importing
  ``dataset.module`` if set), or ``"tfds:NAME"`` built from ``dataset.tfds``."""
  d = dataset_config
  module = d.get("module", "") if hasattr(d, "get") else ""
  if module:
    try:
      importlib.import_module(module)
    except ImportError as e:
      raise ValueError(f"config.dataset.module={module!r} cannot be imported: {e}") from e
  if not d.name.startswith(TFDS_PREFIX):
    return get_dataset(d.name)
  t = d.tfds
  tfds_name = d.name[len(TFDS_PREFIX) :]
  if not tfds_name:
    raise ValueError(f"config.dataset.name={d.name!r}: the TFDS name after {TFDS_PREFIX!r} is empty")
  if not t.mean or not t.std:
    raise ValueError(
      f"config.dataset.name={d.name!r} needs the per-channel normalisation of its images: "
      f"set config.dataset.tfds.mean and config.dataset.tfds.std (one value per channel, "
      f"on the [0, 1] scale), got mean={tuple(t.mean)} std={tuple(t.std)}"
    )
  try:
    return DatasetSpec(
      name=d.name,
      source="tfds",
      tfds_name=tfds_name,
      mean=tuple(t.mean),
      std=tuple(t.std),
      image_size=t.image_size,
      host_square=t.image_size if t.resize else 0,
      blur=t.blur,
      pretrain_split=t.pretrain_split,
      train_split=t.train_split,
      eval_split=t.eval_split,
      image_key=t.image_key,
      label_key=t.label_key,
    )
  except ValueError as e:
    raise ValueError(f"config.dataset.tfds: {e}") from None


# --- built-in data sets -----------------------------------------------------------------------------


def _fashion_mnist(split, config):
  from gjax.data.arrays import load_fashion_mnist

  return load_fashion_mnist(split, config.dataset.data_dir or None)


def _digits(split, config):
  from gjax.data.arrays import load_digits

  return load_digits(split)


def _synthetic(split, config):
  from gjax.data.arrays import make_synthetic_images

  d = config.dataset
  return make_synthetic_images(
    2048 if split == "train" else 512,
    d.synthetic_image_size,
    d.synthetic_channels,
    seed=config.seed + (split != "train"),
  )


register_dataset(
  DatasetSpec(
    "fashion_mnist",
    "memory",
    (0.2860,),
    (0.3530,),
    image_size=28,
    load=_fashion_mnist,
    num_pretrain_examples=60_000,
    num_classes=10,
  )
)
register_dataset(
  DatasetSpec(
    "digits", "memory", (0.3055,), (0.3759,), image_size=8, load=_digits, num_pretrain_examples=1437, num_classes=10
  )
)  # int(1797 * 0.8)
# Synthetic images have the size and channels the config asks for; mean / std are
# those of their generator's pixel distribution.
register_dataset(
  DatasetSpec("synthetic", "memory", (0.5,), (0.25,), load=_synthetic, num_pretrain_examples=2048, num_classes=10)
)
register_dataset(
  DatasetSpec(
    "cifar10",
    "tfds",
    (0.4914, 0.4822, 0.4465),
    (0.2470, 0.2435, 0.2616),
    image_size=32,
    tfds_name="cifar10",
    num_pretrain_examples=50_000,
    num_classes=10,
  )
)
register_dataset(
  DatasetSpec(
    "cifar100",
    "tfds",
    (0.5071, 0.4865, 0.4409),
    (0.2673, 0.2564, 0.2762),
    image_size=32,
    tfds_name="cifar100",
    num_pretrain_examples=50_000,
    num_classes=100,
  )
)
register_dataset(
  DatasetSpec(
    "stl10",
    "tfds",
    (0.4467, 0.4398, 0.4066),
    (0.2603, 0.2566, 0.2713),
    image_size=96,
    blur=True,
    tfds_name="stl10",
    pretrain_split="unlabelled+train",
    num_pretrain_examples=105_000,
    num_classes=10,
  )
)
register_dataset(
  DatasetSpec(
    "imagenet2012",
    "tfds",
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_size=224,
    blur=True,
    eval_crop_fraction=0.875,
    tfds_name="imagenet2012",
    eval_split="validation",
    host_square=256,
    num_pretrain_examples=1_281_167,
    num_classes=1000,
  )
)
