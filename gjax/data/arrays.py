"""In-memory image data sets (numpy uint8 NHWC + int32 labels) and their iterator.

Everything here runs on the host in numpy. The images stay uint8 until the
jitted train step, where :mod:`gjax.data.augment` turns them into float views.

* :func:`load_fashion_mnist` reads the IDX files of Debian's
  ``dataset-fashion-mnist`` package (no network needed).
* :func:`load_digits` wraps scikit-learn's bundled 8x8 digits.
* :func:`make_synthetic_images` makes a small learnable image set for tests.
* :class:`ArrayDataset` is the deterministic, resumable, multi-process batch
  iterator over such arrays.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Iterator

import numpy as np

#: Where ``apt-get install dataset-fashion-mnist`` puts the files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
#: Fashion-MNIST's class names, by label.
FASHION_MNIST_CLASSES = (
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
)
#: Environment variable that overrides :data:`FASHION_MNIST_DIR`.
FASHION_MNIST_ENV = "GJAX_FASHION_MNIST_DIR"

_FASHION_MNIST_FILES = {
  "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_SPLITS = ("train", "test")

# IDX element type codes (third byte of the magic number) -> big-endian dtype.
_IDX_DTYPES = {
  0x08: np.dtype(">u1"),
  0x09: np.dtype(">i1"),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}


class IDXFormatError(ValueError):
  """An IDX file is truncated, corrupt, or not an IDX file at all."""


def _check_split(split: str) -> None:
  if split not in _SPLITS:
    raise ValueError(f"Unknown split {split!r}; expected one of {_SPLITS}.")


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (gzipped or not) into a numpy array in native byte order.

  The format (LeCun's MNIST format): a 4-byte magic number ``0x00 0x00 T D``
  (``T`` = element type code, ``D`` = number of dimensions), then ``D``
  big-endian uint32 sizes, then the big-endian data.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    PermissionError: ``path`` cannot be read by this user.
    IDXFormatError: bad magic number, unknown type code, or a data size that
      does not match the header (e.g. a truncated download).
  """
  path = os.fspath(path)
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == b"\x1f\x8b":  # gzip magic
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise IDXFormatError(f"{path}: cannot decompress gzip data ({e}).") from e
  if len(raw) < 4:
    raise IDXFormatError(f"{path}: {len(raw)} bytes is too short for an IDX header.")
  zero0, zero1, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
  if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
    raise IDXFormatError(
      f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTDD with a "
      f"type code TT in {[hex(c) for c in _IDX_DTYPES]} and DD >= 1 dimensions)."
    )
  header_len = 4 + 4 * ndim
  if len(raw) < header_len:
    raise IDXFormatError(f"{path}: truncated header ({len(raw)} < {header_len} bytes).")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  dtype = _IDX_DTYPES[type_code]
  expected = math.prod(shape) * dtype.itemsize
  actual = len(raw) - header_len
  if actual != expected:
    raise IDXFormatError(
      f"{path}: header says shape {shape} of {dtype.name} ({expected} data bytes) "
      f"but the file has {actual} data bytes (truncated or corrupt)."
    )
  data = np.frombuffer(raw, dtype, offset=header_len).reshape(shape)
  return data.astype(dtype.newbyteorder("="))


def check_readable_dir(directory: str | os.PathLike, what: str) -> None:
  """Raises PermissionError naming ``directory`` (``what`` says whose it is)
  when this user may not reach it, list it or open its files; a directory that
  does not exist is left to the caller to report as missing."""
  directory = os.fspath(directory)
  try:
    os.stat(directory)
  except FileNotFoundError:
    return
  except PermissionError:
    raise PermissionError(
      f"{what} {directory} cannot be reached: permission denied on a directory above it "
      f"(this user, uid {os.getuid()}, needs execute permission on each)"
    ) from None
  if os.path.isdir(directory) and not os.access(directory, os.R_OK | os.X_OK):
    raise PermissionError(
      f"{what} {directory} cannot be read: permission denied (this user, uid {os.getuid()}, "
      f"may not list it or open its files); make it readable (chmod a+rx {directory}) or "
      "point config.dataset.data_dir at a readable copy"
    )


def fashion_mnist_dir(data_dir: str | os.PathLike | None = None) -> str:
  """The Fashion-MNIST directory: ``data_dir``, else ``$GJAX_FASHION_MNIST_DIR``,
  else :data:`FASHION_MNIST_DIR`."""
  if data_dir is not None:
    return os.fspath(data_dir)
  return os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR


def load_fashion_mnist(split: str, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Loads Fashion-MNIST from its gzipped IDX files.

  Args:
    split: ``"train"`` (60000 examples) or ``"test"`` (10000 examples).
    data_dir: directory holding the four ``*-idx?-ubyte.gz`` files; see
      :func:`fashion_mnist_dir` for the default.

  Returns:
    ``(images, labels)``: uint8 ``[N, 28, 28, 1]`` and int32 ``[N]`` in 0..9.
  """
  _check_split(split)
  directory = fashion_mnist_dir(data_dir)
  check_readable_dir(directory, "the Fashion-MNIST directory")
  paths = [os.path.join(directory, name) for name in _FASHION_MNIST_FILES[split]]
  for path in paths:
    if os.path.isfile(path) and not os.access(path, os.R_OK):
      raise PermissionError(
        f"Fashion-MNIST file {path} cannot be read: permission denied (this user, uid "
        f"{os.getuid()}); make it readable (chmod a+r {path})"
      )
    if not os.path.isfile(path):
      raise FileNotFoundError(
        f"Fashion-MNIST file not found: {path}. Install the Debian package with "
        f"`apt-get install -y dataset-fashion-mnist` (files go to "
        f"{FASHION_MNIST_DIR}) or set {FASHION_MNIST_ENV} / data_dir to a "
        f"directory holding {_FASHION_MNIST_FILES[split]}."
      )
  images, labels = (read_idx(p) for p in paths)
  if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
    raise IDXFormatError(f"{paths[0]}: expected uint8 images of shape [N, 28, 28], got {images.dtype} {images.shape}.")
  if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
    raise IDXFormatError(f"{paths[1]}: expected {images.shape[0]} labels, got shape {labels.shape}.")
  if labels.size and (labels.min() < 0 or labels.max() > 9):
    raise IDXFormatError(f"{paths[1]}: labels outside 0..9.")
  return images[..., None], labels.astype(np.int32)


def load_digits(split: str, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's bundled 8x8 digits (1797 images) as uint8 ``[N, 8, 8, 1]``.

  Pixel values 0..16 are rescaled to 0..255. The train/test split is a fixed
  permutation (``np.random.default_rng(0)``): the first ``train_fraction`` of it
  (rounded down) is ``"train"``, the rest ``"test"``.
  """
  _check_split(split)
  from sklearn.datasets import load_digits as _sk_load_digits  # local: slow import

  bunch = _sk_load_digits()
  images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int32)
  order = np.random.default_rng(0).permutation(len(labels))
  num_train = int(len(labels) * train_fraction)
  idx = order[:num_train] if split == "train" else order[num_train:]
  return images[idx], labels[idx]


def make_synthetic_images(
  num: int,
  size: int = 32,
  channels: int = 3,
  num_classes: int = 10,
  seed: int = 0,
  noise: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
  """A deterministic, learnable synthetic image set.

  Class ``k`` is a sinusoidal grating with a class-specific orientation,
  spatial frequency and colour. Each example gets a random phase (so the class
  survives crops and shifts), a random contrast in [0.6, 1] and Gaussian pixel
  noise of standard deviation ``noise`` (in [0, 1] units). The class patterns
  depend only on ``(size, channels, num_classes)``, not on ``seed``, so sets
  made with different seeds (e.g. train and test) share them.

  Returns:
    ``(images, labels)``: uint8 ``[num, size, size, channels]``, int32 ``[num]``.
  """
  pattern_rng = np.random.default_rng((size, channels, num_classes))
  colours = pattern_rng.uniform(0.3, 1.0, size=(num_classes, channels))
  angles = np.pi * np.arange(num_classes) / num_classes
  freqs = 1.0 + (np.arange(num_classes) % 3)  # cycles per image

  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, size=num).astype(np.int32)
  phase = rng.uniform(0.0, 2 * np.pi, size=num)
  amp = rng.uniform(0.6, 1.0, size=num)
  coords = (np.arange(size) + 0.5) / size
  yy, xx = np.meshgrid(coords, coords, indexing="ij")
  proj = np.cos(angles)[labels, None, None] * xx + np.sin(angles)[labels, None, None] * yy
  wave = 0.5 + 0.5 * amp[:, None, None] * np.sin(2 * np.pi * freqs[labels, None, None] * proj + phase[:, None, None])
  images = wave[..., None] * colours[labels, None, None, :]
  images = images + noise * rng.standard_normal(images.shape)
  images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
  return images, labels


class ArrayDataset:
  """Deterministic, resumable batch iterator over in-memory arrays.

  The data order is a pure function of ``(seed, step)``:

  * epoch ``e`` visits the examples in the order
    ``np.random.default_rng((seed, e)).permutation(N)`` (or ``arange(N)`` when
    ``shuffle=False``);
  * global step ``s`` is batch ``s % steps_per_epoch`` of epoch
    ``s // steps_per_epoch``; the last ``N % global_batch_size`` examples of
    each permutation are dropped;
  * process ``i`` of ``n`` yields rows ``[i*b, (i+1)*b)`` of that global batch,
    with ``b = global_batch_size // n``, so the processes' batches are
    disjoint and their concatenation (in process order) is the global batch,
    the same whatever ``n`` is.

  So ``iterate(start_step=s)`` yields exactly what ``iterate()`` yields from its
  ``s``-th batch on, which is what a resumed run needs.

  Batches are dicts ``{"image": uint8 [b, H, W, C], "label": int32 [b]}``.
  """

  def __init__(
    self,
    images: np.ndarray,
    labels: np.ndarray,
    global_batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
  ):
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4:
      raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}.")
    if labels.shape != images.shape[:1]:
      raise ValueError(f"labels shape {labels.shape} does not match {images.shape[0]} images.")
    if process_index is None or process_count is None:
      import jax  # deferred: keeps the numpy-only path free of jax start-up

      process_index = jax.process_index() if process_index is None else process_index
      process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count}).")
    if global_batch_size <= 0 or global_batch_size % process_count:
      raise ValueError(
        f"global_batch_size {global_batch_size} must be a positive multiple of the process count {process_count}."
      )
    if global_batch_size > len(labels):
      raise ValueError(f"global_batch_size {global_batch_size} exceeds the {len(labels)} examples.")
    self.images = images
    self.labels = labels.astype(np.int32)
    self.global_batch_size = global_batch_size
    self.per_process_batch_size = global_batch_size // process_count
    self.seed = seed
    self.shuffle = shuffle
    self.process_index = process_index
    self.process_count = process_count

  @property
  def num_examples(self) -> int:
    return len(self.labels)

  @property
  def steps_per_epoch(self) -> int:
    """Global batches per epoch (the remainder is dropped)."""
    return self.num_examples // self.global_batch_size

  def permutation(self, epoch: int) -> np.ndarray:
    """The example order of ``epoch``."""
    if not self.shuffle:
      return np.arange(self.num_examples)
    return np.random.default_rng((self.seed, epoch)).permutation(self.num_examples)

  def _local_batch(self, order: np.ndarray, batch_in_epoch: int) -> dict[str, np.ndarray]:
    start = batch_in_epoch * self.global_batch_size + self.process_index * self.per_process_batch_size
    idx = order[start : start + self.per_process_batch_size]
    return {"image": self.images[idx], "label": self.labels[idx]}

  def batch_at(self, step: int) -> dict[str, np.ndarray]:
    """This process's batch at global step ``step``."""
    epoch, i = divmod(step, self.steps_per_epoch)
    return self._local_batch(self.permutation(epoch), i)

  def iterate(self, start_step: int = 0, num_steps: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Yields this process's batches from global step ``start_step`` on.

    Runs forever (over as many epochs as needed) unless ``num_steps`` is given.
    """
    if start_step < 0:
      raise ValueError(f"start_step must be >= 0, got {start_step}.")
    step, end = start_step, None if num_steps is None else start_step + num_steps
    epoch, order = None, None
    while end is None or step < end:
      e, i = divmod(step, self.steps_per_epoch)
      if e != epoch:
        epoch, order = e, self.permutation(e)
      yield self._local_batch(order, i)
      step += 1

  def epoch_batches(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    """Yields this process's ``steps_per_epoch`` batches of one epoch."""
    return self.iterate(epoch * self.steps_per_epoch, self.steps_per_epoch)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self.iterate()
