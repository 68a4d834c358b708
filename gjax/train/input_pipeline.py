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
from typing import Callable, Iterator

import jax
import numpy as np

from gjax import data as gdata
from gjax.train import config as config_lib


@dataclasses.dataclass
class TrainInput:
  """``batches(start_step)`` yields this process's host batches from a step on."""

  batches: Callable[[int], Iterator[dict[str, np.ndarray]]]
  steps_per_epoch: int
  image_shape: tuple[int, int, int]
  augment: gdata.AugmentConfig
  num_examples: int = -1  # training examples (this process's share times the process count for TFDS)


def load_in_memory(config, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Images and labels of an in-memory data set (train or test split)."""
  d = config.dataset
  if d.name == "fashion_mnist":
    images, labels = gdata.load_fashion_mnist(split, d.data_dir or None)
  elif d.name == "digits":
    images, labels = gdata.load_digits(split)
  elif d.name == "synthetic":
    num = 2048 if split == "train" else 512
    images, labels = gdata.make_synthetic_images(
        num, d.synthetic_image_size, d.synthetic_channels, seed=config.seed + (split != "train"))
  else:
    raise ValueError(f"config.dataset.name={d.name!r} is not an in-memory data set")
  if split == "train" and d.train_classes:
    missing = sorted(set(d.train_classes) - set(np.unique(labels).tolist()))
    if missing:
      raise ValueError(f"config.dataset.train_classes={tuple(d.train_classes)!r}: classes {missing} "
                       f"do not occur in {d.name}")
    keep = np.isin(labels, np.asarray(d.train_classes))
    images, labels = images[keep], labels[keep]
  if split == "train" and d.num_train_examples > 0:
    if d.num_train_examples > len(labels):
      raise ValueError(
          f"config.dataset.num_train_examples={d.num_train_examples} exceeds the "
          f"{len(labels)} training examples of {d.name}")
    images, labels = images[: d.num_train_examples], labels[: d.num_train_examples]
  return images, labels


def augment_config(config, image_shape) -> gdata.AugmentConfig:
  a = config.augment
  overrides = {"crop_scale": (a.crop_scale_min, 1.0)}
  if a.blur != "auto":
    overrides["blur"] = a.blur == "on"
  if config.dataset.name == "synthetic":
    channels = image_shape[-1]
    return gdata.AugmentConfig(output_size=image_shape[0], blur=False, mean=(0.5,) * channels,
                               std=(0.25,) * channels, **overrides)
  return gdata.AugmentConfig.for_dataset(config.dataset.name, **overrides)


def build_train_input(config) -> TrainInput:
  name = config.dataset.name
  if name in config_lib.IN_MEMORY_DATASETS:
    images, labels = load_in_memory(config, "train")
    dataset = gdata.ArrayDataset(images, labels, config.batch_size, seed=config.seed)
    image_shape = tuple(images.shape[1:])
    return TrainInput(lambda start: dataset.iterate(start_step=start), dataset.steps_per_epoch,
                      image_shape, augment_config(config, image_shape), len(images))

  tfds = gdata.import_tfds()  # deferred: TFDS imports TensorFlow

  if config.dataset.train_classes:
    raise ValueError(f"config.dataset.train_classes is supported for the in-memory data sets "
                     f"{config_lib.IN_MEMORY_DATASETS}, not for TFDS {name!r}")
  split = gdata.pretrain_split(name)
  wanted = config.dataset.num_train_examples
  if wanted > 0:
    if "+" in split:
      raise ValueError(f"config.dataset.num_train_examples={wanted} is not supported for {name}'s "
                       f"combined split {split!r}")
    split, num_examples = f"{split}[:{wanted}]", wanted
  else:
    builder = tfds.builder(name, data_dir=config.dataset.data_dir or None)
    try:
      num_examples = builder.info.splits[split].num_examples
    except KeyError:
      raise FileNotFoundError(
          f"TFDS data set {name!r} (split {split!r}) is not prepared under "
          f"data_dir={builder.data_dir!r}; gjax never downloads: build it offline "
          f"(`tfds build {name} --data_dir DIR`) and pass --config.dataset.data_dir=DIR") from None
  steps_per_epoch = num_examples // config.batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"config.batch_size={config.batch_size} exceeds the {num_examples} examples of {name}:{split}")

  def batches(start_step: int):
    it = gdata.tfds_batches(name, split, config.batch_size, train=True, seed=config.seed,
                            data_dir=config.dataset.data_dir or None)
    # The TFDS order is fixed by the seeds; skipping reproduces where a run stopped.
    return itertools.islice(it, start_step, None)

  first = next(batches(0))
  image_shape = tuple(first["image"].shape[1:])
  return TrainInput(batches, steps_per_epoch, image_shape, augment_config(config, image_shape), num_examples)


def global_batches(host_batches: Iterator[dict[str, np.ndarray]], mesh) -> Iterator[dict[str, jax.Array]]:
  """Host batches -> global arrays sharded over the mesh's ``data`` axis."""
  for batch in host_batches:
    yield gdata.make_global_batch(batch, mesh)
