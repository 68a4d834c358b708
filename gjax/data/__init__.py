"""Input data: in-memory and TFDS pipelines, on-device augmentation, sharding.

Images travel as uint8 NHWC numpy batches ``{"image", "label"}`` from the host
(:mod:`gjax.data.arrays`, :mod:`gjax.data.tfds_input`), become global sharded
arrays (:mod:`gjax.data.sharding`), and are augmented inside the jitted step
(:mod:`gjax.data.augment`).

The TFDS names are imported lazily, so ``import gjax.data`` does not pull in
TensorFlow.
"""

from gjax.data.arrays import (
  FASHION_MNIST_CLASSES,
  ArrayDataset,
  IDXFormatError,
  load_digits,
  load_fashion_mnist,
  make_synthetic_images,
  read_idx,
)
from gjax.data.augment import (
  AugmentConfig,
  augment_batch,
  eval_preprocess,
  normalize,
  two_views,
)
from gjax.data.datasets import (
  DatasetSpec,
  get_dataset,
  register_dataset,
  registered_datasets,
  spec_from_config,
)
from gjax.data.sharding import (
  DATA_AXIS,
  batch_sharding,
  data_mesh,
  make_global_batch,
  replicated_sharding,
  to_host,
)
from gjax.data.validation import validate_data_config

_TFDS_NAMES = ("make_tfds_dataset", "tfds_batches", "pretrain_split", "eval_split")


def import_tfds():
  """``tensorflow_datasets``, imported on first use (it imports TensorFlow,
  which the in-memory data sets never need). Raises ImportError naming what to
  install when TensorFlow or TFDS is missing, e.g. on an accelerator image."""
  try:
    import tensorflow  # noqa: F401
    import tensorflow_datasets
  except ImportError as e:
    raise ImportError(
      f"the TFDS data sets need tensorflow and tensorflow-datasets ({e}); install them with "
      f"`pip install -r requirements.txt`, or train on an in-memory data set "
      f"(--config.dataset.name=fashion_mnist, digits or synthetic), which needs neither"
    ) from e
  return tensorflow_datasets


def __getattr__(name):
  if name in _TFDS_NAMES:
    import_tfds()
    from gjax.data import tfds_input

    return getattr(tfds_input, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
  "ArrayDataset",
  "IDXFormatError",
  "load_digits",
  "load_fashion_mnist",
  "make_synthetic_images",
  "read_idx",
  "DatasetSpec",
  "get_dataset",
  "register_dataset",
  "registered_datasets",
  "spec_from_config",
  "AugmentConfig",
  "augment_batch",
  "eval_preprocess",
  "normalize",
  "two_views",
  "DATA_AXIS",
  "batch_sharding",
  "data_mesh",
  "make_global_batch",
  "replicated_sharding",
  "to_host",
  "import_tfds",
  "validate_data_config",
  *_TFDS_NAMES,
]
