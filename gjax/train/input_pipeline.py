"""Host-side input for training: which data set, how many steps, where to resume.

In-memory data sets (Fashion-MNIST, digits, synthetic) go through
:class:`gjax.data.ArrayDataset`, whose order is a pure function of
``(seed, step)``; TFDS data sets through :func:`gjax.data.tfds_batches`, with
the batches before the resume step skipped. Batches stay uint8 on the host;
augmentation runs on the accelerator inside the jitted step.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator

import jax
import numpy as np

from gjax import data as gdata
from gjax.data.datasets import DatasetSpec, check_loaded, spec_from_config
from gjax.train import config as config_lib


@dataclasses.dataclass
class TrainInput:
  """``batches(start_step)`` yields this process's host batches from a step on."""

  batches: Callable[[int], Iterator[dict[str, np.ndarray]]]
  steps_per_epoch: int
  image_shape: tuple[int, int, int]
  augment: tuple[gdata.AugmentConfig, gdata.AugmentConfig]  # view 1, view 2
  num_examples: int = -1  # training examples (this process's share times the process count for TFDS)


def load_in_memory(config, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Images and labels of an in-memory data set (``"train"`` or ``"test"``)."""
  d = config.dataset
  spec = spec_from_config(d)
  if spec.source != "memory":
    raise ValueError(f"config.dataset.name={d.name!r} is not an in-memory data set")
  images, labels = spec.load(split, config)
  check_loaded(spec, split, images, labels)  # uint8 NHWC from any loader, or a message naming it
  if split == "train" and d.train_classes:
    missing = sorted(set(d.train_classes) - set(np.unique(labels).tolist()))
    if missing:
      raise ValueError(
        f"config.dataset.train_classes={tuple(d.train_classes)!r}: classes {missing} do not occur in {d.name}"
      )
    keep = np.isin(labels, np.asarray(d.train_classes))
    images, labels = images[keep], labels[keep]
  if split == "train" and d.num_train_examples > 0:
    if d.num_train_examples > len(labels):
      raise ValueError(
        f"config.dataset.num_train_examples={d.num_train_examples} exceeds the "
        f"{len(labels)} training examples of {d.name}"
      )
    images, labels = images[: d.num_train_examples], labels[: d.num_train_examples]
  return images, labels


def augment_config(config, image_shape, view: int = 1) -> gdata.AugmentConfig:
  """View ``view`` (1 or 2) of ``config.dataset``'s preset with
  ``config.augment``'s settings (its per-view probabilities, that view's); a
  data set without a fixed size gets views of the stored size. View 1 is also
  what evaluation normalises with (only size, mean and std matter there)."""
  if view not in (1, 2):
    raise ValueError(f"view must be 1 or 2, got {view!r}")
  a = config.augment
  spec = spec_from_config(config.dataset)
  overrides = {"crop_scale": (a.crop_scale_min, 1.0), "output_size": spec.image_size or image_shape[0]}
  overrides.update({field: float(a[field][view - 1]) for field in config_lib.VIEW_PROBABILITIES})
  if a.blur != "auto":
    overrides["blur"] = a.blur == "on"
  return gdata.AugmentConfig.for_dataset(spec, **overrides)


def view_augments(config, image_shape) -> tuple[gdata.AugmentConfig, gdata.AugmentConfig]:
  """Both views' augmentations (the same unless ``config.augment`` sets them apart)."""
  return augment_config(config, image_shape, 1), augment_config(config, image_shape, 2)


def _not_prepared(spec: DatasetSpec, data_dir: str | None, split: str) -> FileNotFoundError:
  return FileNotFoundError(
    f"TFDS data set {spec.tfds_name!r} (split {split!r}) is not prepared under "
    f"data_dir={data_dir!r}; gjax never downloads: build it offline "
    f"(`tfds build {spec.tfds_name} --data_dir DIR`) and pass --config.dataset.data_dir=DIR"
  )


def tfds_builder(spec: DatasetSpec, data_dir: str | None, split: str | None = None):
  """The TFDS builder of ``spec`` (its code, or its prepared files when gjax
  cannot import its code); with ``split``, also checks that the data set is
  prepared and has that split. FileNotFoundError saying how to prepare it."""
  tfds = gdata.import_tfds()
  try:
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise _not_prepared(spec, data_dir, split or spec.pretrain_split) from None
  if split is None:
    return builder
  if not builder.is_prepared():
    raise _not_prepared(spec, data_dir, split)
  try:
    builder.info.splits[split]  # TFDS split expressions ("a+b", "train[:90%]") included
  except (KeyError, ValueError):
    raise FileNotFoundError(
      f"TFDS data set {spec.tfds_name!r} has the splits {sorted(builder.info.splits)}: "
      f"split {split!r} is not prepared under data_dir={data_dir!r} "
      f"(config.dataset.tfds names the splits of a tfds:NAME data set)"
    ) from None
  return builder


def tfds_image_shape(spec: DatasetSpec, data_dir: str | None) -> tuple[int, int, int]:
  """The (height, width, channels) of a TFDS data set's views on the host, from its metadata."""
  features = tfds_builder(spec, data_dir).info.features
  if spec.image_key not in features or spec.label_key not in features:
    raise ValueError(
      f"TFDS data set {spec.tfds_name!r} has the features {sorted(features.keys())}, not "
      f"image_key={spec.image_key!r} and label_key={spec.label_key!r} (config.dataset.tfds)"
    )
  shape = tuple(features[spec.image_key].shape)
  if len(shape) != 3 or (None in shape[:2] and not spec.host_square):
    raise ValueError(
      f"TFDS data set {spec.tfds_name!r}: images of shape {shape} need "
      f"config.dataset.tfds.resize=True and an image_size (images of one HxWxC size train as "
      f"stored)"
    )
  if spec.host_square:
    return (spec.host_square, spec.host_square, shape[2])
  return shape


def build_train_input(config) -> TrainInput:
  name = config.dataset.name
  spec = spec_from_config(config.dataset)
  if spec.source == "memory":
    images, labels = load_in_memory(config, "train")
    dataset = gdata.ArrayDataset(images, labels, config.batch_size, seed=config.seed)
    image_shape = tuple(images.shape[1:])
    return TrainInput(
      lambda start: dataset.iterate(start_step=start),
      dataset.steps_per_epoch,
      image_shape,
      view_augments(config, image_shape),
      len(images),
    )

  if config.dataset.train_classes:
    raise ValueError(f"config.dataset.train_classes is supported for the in-memory data sets, not for TFDS {name!r}")
  split = spec.pretrain_split
  data_dir = config.dataset.data_dir or None
  wanted = config.dataset.num_train_examples
  if wanted > 0:
    if "+" in split:
      raise ValueError(
        f"config.dataset.num_train_examples={wanted} is not supported for {name}'s combined split {split!r}"
      )
    split, num_examples = f"{split}[:{wanted}]", wanted
  else:
    num_examples = tfds_builder(spec, data_dir, split).info.splits[split].num_examples
  steps_per_epoch = num_examples // config.batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"config.batch_size={config.batch_size} exceeds the {num_examples} examples of {name}:{split}")

  def batches(start_step: int):
    it = gdata.tfds_batches(
      spec.tfds_name,
      split,
      config.batch_size,
      train=True,
      seed=config.seed,
      data_dir=data_dir,
      image_key=spec.image_key,
      label_key=spec.label_key,
      host_square=spec.host_square,
    )
    # The TFDS order is fixed by the seeds; skipping reproduces where a run stopped.
    return itertools.islice(it, start_step, None)

  image_shape = tfds_image_shape(spec, data_dir)
  return TrainInput(batches, steps_per_epoch, image_shape, view_augments(config, image_shape), num_examples)


def global_batches(host_batches: Iterator[dict[str, np.ndarray]], mesh) -> Iterator[dict[str, jax.Array]]:
  """Host batches -> global arrays sharded over the mesh's ``data`` axis."""
  for batch in host_batches:
    yield gdata.make_global_batch(batch, mesh)
