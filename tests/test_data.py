"""Tests for gjax.data: loaders, iterator, augmentation, TFDS pipelines, sharding."""

import dataclasses
import gzip
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gjax.data import arrays, augment, sharding

FASHION_DIR = arrays.FASHION_MNIST_DIR
has_fashion = pytest.mark.skipif(
  not os.path.isfile(os.path.join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz")),
  reason="dataset-fashion-mnist is not installed",
)


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
  header = bytes([0, 0, type_code, array.ndim])
  header += np.asarray(array.shape, ">u4").tobytes()
  return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_fake_fashion(directory, split="test", num=5):
  names = arrays._FASHION_MNIST_FILES[split]
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (num, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, (num,), dtype=np.uint8)
  for name, data in zip(names, (images, labels)):
    (directory / name).write_bytes(gzip.compress(_idx_bytes(data)))
  return images, labels


# ---------------------------------------------------------------------------
# Loaders.


@has_fashion
@pytest.mark.parametrize("split,num", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_real_files(split, num):
  images, labels = arrays.load_fashion_mnist(split)
  assert images.shape == (num, 28, 28, 1) and images.dtype == np.uint8
  assert labels.shape == (num,) and labels.dtype == np.int32
  assert labels.min() == 0 and labels.max() == 9
  assert 0 < images.mean() < 255


def test_fashion_mnist_missing_dir(tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError) as err:
    arrays.load_fashion_mnist("train", data_dir=missing)
  message = str(err.value)
  assert "apt-get install -y dataset-fashion-mnist" in message
  assert str(missing / "train-images-idx3-ubyte.gz") in message
  assert arrays.FASHION_MNIST_ENV in message


def test_fashion_mnist_dir_override_and_env(tmp_path, monkeypatch):
  images, labels = _write_fake_fashion(tmp_path)
  got_images, got_labels = arrays.load_fashion_mnist("test", data_dir=tmp_path)
  np.testing.assert_array_equal(got_images[..., 0], images)
  np.testing.assert_array_equal(got_labels, labels)
  monkeypatch.setenv(arrays.FASHION_MNIST_ENV, str(tmp_path))
  np.testing.assert_array_equal(arrays.load_fashion_mnist("test")[1], labels)
  with pytest.raises(ValueError, match="'validation'"):
    arrays.load_fashion_mnist("validation", data_dir=tmp_path)


def test_read_idx_roundtrip_and_corrupt_files(tmp_path):
  data = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
  good = tmp_path / "good.idx"
  good.write_bytes(_idx_bytes(data, 0x0C))
  np.testing.assert_array_equal(arrays.read_idx(good), data)

  truncated = tmp_path / "truncated.gz"
  truncated.write_bytes(gzip.compress(_idx_bytes(data, 0x0C)[:-5]))
  with pytest.raises(arrays.IDXFormatError, match="truncated or corrupt"):
    arrays.read_idx(truncated)

  bad_magic = tmp_path / "bad_magic.idx"
  bad_magic.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
  with pytest.raises(arrays.IDXFormatError, match="magic"):
    arrays.read_idx(bad_magic)

  cut_gzip = tmp_path / "cut.gz"
  cut_gzip.write_bytes(gzip.compress(_idx_bytes(data, 0x0C))[:-12])
  with pytest.raises(arrays.IDXFormatError, match="gzip"):
    arrays.read_idx(cut_gzip)

  # A truncated image file inside a Fashion-MNIST directory fails loudly too.
  _write_fake_fashion(tmp_path)
  image_file = tmp_path / "t10k-images-idx3-ubyte.gz"
  raw = gzip.decompress(image_file.read_bytes())
  image_file.write_bytes(gzip.compress(raw[:-100]))
  with pytest.raises(ValueError, match="t10k-images"):
    arrays.load_fashion_mnist("test", data_dir=tmp_path)


def test_digits_and_synthetic():
  train_x, train_y = arrays.load_digits("train")
  test_x, test_y = arrays.load_digits("test")
  assert train_x.shape[1:] == (8, 8, 1) and train_x.dtype == np.uint8
  assert len(train_y) + len(test_y) == 1797 and len(test_y) == 360
  assert train_x.max() == 255 and train_y.dtype == np.int32
  np.testing.assert_array_equal(arrays.load_digits("train")[0], train_x)

  x, y = arrays.make_synthetic_images(64, size=12, channels=3, num_classes=4, seed=1)
  assert x.shape == (64, 12, 12, 3) and x.dtype == np.uint8 and y.dtype == np.int32
  np.testing.assert_array_equal(x, arrays.make_synthetic_images(64, 12, 3, 4, 1)[0])
  assert set(np.unique(y)) <= set(range(4))
  # Learnable: a linear classifier fitted on one seed generalises to another.
  from sklearn.linear_model import LogisticRegression

  test_x, test_y = arrays.make_synthetic_images(200, 12, 3, 4, seed=2)
  clf = LogisticRegression(max_iter=500).fit(x.reshape(64, -1) / 255.0, y)
  assert clf.score(test_x.reshape(200, -1) / 255.0, test_y) > 0.8


# ---------------------------------------------------------------------------
# ArrayDataset.


def _dataset(process_index=0, process_count=1, **kwargs):
  x, y = arrays.make_synthetic_images(50, size=4, channels=1, num_classes=5, seed=0)
  return arrays.ArrayDataset(
    x, y, global_batch_size=8, seed=3, process_index=process_index, process_count=process_count, **kwargs
  )


def test_array_dataset_determinism_and_epochs():
  ds = _dataset()
  assert ds.steps_per_epoch == 6 and ds.per_process_batch_size == 8
  first = list(ds.iterate(num_steps=14))
  second = list(_dataset().iterate(num_steps=14))
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert first[0]["image"].shape == (8, 4, 4, 1) and first[0]["image"].dtype == np.uint8
  assert first[0]["label"].dtype == np.int32
  # Epochs are reshuffled; one epoch never repeats an example.
  assert not np.array_equal(ds.permutation(0), ds.permutation(1))
  epoch = ds.permutation(0)[:48]
  assert len(np.unique(epoch)) == 48
  assert len(list(ds.epoch_batches(2))) == ds.steps_per_epoch
  unshuffled = _dataset(shuffle=False)
  np.testing.assert_array_equal(unshuffled.batch_at(1)["label"], unshuffled.labels[8:16])


def test_array_dataset_process_shards_match_global_batch():
  single = _dataset()
  shards = [_dataset(process_index=i, process_count=4) for i in range(4)]
  assert shards[0].per_process_batch_size == 2
  for step in (0, 5, 6, 13):
    global_batch = single.batch_at(step)
    parts = [s.batch_at(step) for s in shards]
    np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), global_batch["image"])
    np.testing.assert_array_equal(np.concatenate([p["label"] for p in parts]), global_batch["label"])
  with pytest.raises(ValueError, match="multiple of the process count 3"):
    _dataset(process_index=0, process_count=3)


def test_array_dataset_resume_equals_iterate():
  ds = _dataset(process_index=1, process_count=2)
  from_start = list(ds.iterate(num_steps=20))
  for start in (0, 5, 6, 17):
    resumed = list(ds.iterate(start_step=start, num_steps=20 - start))
    for a, b in zip(from_start[start:], resumed):
      np.testing.assert_array_equal(a["image"], b["image"])
      np.testing.assert_array_equal(a["label"], b["label"])


# ---------------------------------------------------------------------------
# Augmentation. Few distinct configs/shapes, to keep compile time small.

_SIZE = 16
_CFG = augment.AugmentConfig(output_size=_SIZE, blur=False, mean=(0.5,), std=(0.25,))


@pytest.fixture(scope="module")
def rgb_images():
  return arrays.make_synthetic_images(6, size=20, channels=3, num_classes=3, seed=0)[0]


@pytest.fixture(scope="module")
def jit_augment():
  return jax.jit(augment.augment_batch, static_argnums=(2, 3))


def test_augment_shapes_ranges_determinism(rgb_images, jit_augment):
  key = jax.random.key(0)
  raw = jit_augment(key, rgb_images, _CFG, False)
  assert raw.shape == (6, _SIZE, _SIZE, 3) and raw.dtype == jnp.float32
  assert float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
  np.testing.assert_array_equal(raw, jit_augment(key, rgb_images, _CFG, False))
  other = jit_augment(jax.random.key(1), rgb_images, _CFG, False)
  assert float(jnp.abs(other - raw).mean()) > 1e-2
  # Examples get different keys: identical inputs give different views.
  same = np.repeat(rgb_images[:1], 6, axis=0)
  views = jit_augment(key, same, _CFG, False)
  assert float(jnp.abs(views[0] - views[1]).mean()) > 1e-2
  np.testing.assert_allclose(augment.normalize(raw, _CFG), (raw - 0.5) / 0.25, rtol=1e-6)


def test_two_views_with_one_setting_are_each_keys_view_and_hold_one_copy_of_the_augmentation(rgb_images):
  """Both views from one vmapped augmentation: view v of example i is ``augment_batch``'s with key
  ``split(k_v, B)[i]`` (to float32 rounding: the fused program differs), and the program is about
  one augmentation's size, not two (it was 2.0x; each copy took seconds to compile)."""
  key = jax.random.key(5)
  v1, v2 = jax.jit(augment.two_views, static_argnums=(2, 3))(key, rgb_images, _CFG, False)
  k1, k2 = jax.random.split(key)
  np.testing.assert_allclose(v1, augment.augment_batch(k1, rgb_images, _CFG, False), atol=1e-5)
  np.testing.assert_allclose(v2, augment.augment_batch(k2, rgb_images, _CFG, False), atol=1e-5)
  assert float(jnp.abs(v1 - v2).mean()) > 1e-2
  one = jax.jit(augment.augment_batch, static_argnums=(2, 3)).lower(k1, rgb_images, _CFG, False).as_text()
  both = jax.jit(augment.two_views, static_argnums=(2, 3)).lower(key, rgb_images, _CFG, False).as_text()
  assert len(both.splitlines()) < 1.2 * len(one.splitlines()), (len(both.splitlines()), len(one.splitlines()))


def test_two_views_differ_and_grayscale_input():
  gray = arrays.make_synthetic_images(4, size=12, channels=1, num_classes=2, seed=0)[0]
  cfg = augment.AugmentConfig.for_dataset("fashion_mnist", output_size=10)
  v1, v2 = jax.jit(augment.two_views, static_argnums=(2,))(jax.random.key(0), gray, cfg)
  assert v1.shape == v2.shape == (4, 10, 10, 1) and v1.dtype == jnp.float32
  assert float(jnp.abs(v1 - v2).mean()) > 1e-2
  assert bool(jnp.all(jnp.isfinite(v1)))
  with pytest.raises(ValueError, match="3 entries for 1-channel"):
    augment.normalize(v1, augment.AugmentConfig())


def test_blur_flag_changes_nothing_else(rgb_images, jit_augment):
  key = jax.random.key(2)  # 3 of its 6 examples draw blur
  no_blur = np.asarray(jit_augment(key, rgb_images, _CFG, False))
  blur_half = dataclasses.replace(_CFG, blur=True, blur_prob=0.5)
  with_blur = np.asarray(jit_augment(key, rgb_images, blur_half, False))
  # Each example is either untouched (blur not drawn) or blurred; the crop,
  # jitter, grayscale and flip draws are the same with and without blur.
  unchanged = np.all(with_blur == no_blur, axis=(1, 2, 3))
  assert 0 < unchanged.sum() < len(unchanged)
  grad = lambda v: np.abs(np.diff(v, axis=2)).mean()
  for blurred, plain in zip(with_blur[~unchanged], no_blur[~unchanged]):
    assert grad(blurred) < grad(plain)
  assert augment.blur_kernel_size(224) == 23 and augment.blur_kernel_size(32) == 3


def test_eval_preprocess_and_config():
  images = np.full((2, 20, 30, 3), 128, np.uint8)
  cfg = augment.AugmentConfig(output_size=8, eval_crop_fraction=0.5, mean=(0.0,), std=(1.0,))
  out = augment.eval_preprocess(images, cfg)
  assert out.shape == (2, 8, 8, 3)
  np.testing.assert_allclose(out, 128 / 255, atol=1e-5)
  full = dataclasses.replace(cfg, eval_crop_fraction=1.0)
  same_size = augment.eval_preprocess(images[:, :8, :8], full)
  np.testing.assert_allclose(same_size, 128 / 255, atol=1e-6)
  assert hash(augment.AugmentConfig.for_dataset("cifar10")) is not None
  assert not augment.AugmentConfig.for_dataset("cifar10").blur
  assert augment.AugmentConfig.for_dataset("stl10").blur
  with pytest.raises(ValueError, match="unknown data set 'mnist'"):
    augment.AugmentConfig.for_dataset("mnist")
  with pytest.raises(ValueError, match="flip_prob"):
    augment.AugmentConfig(flip_prob=1.5)


# ---------------------------------------------------------------------------
# TFDS pipelines on mocked data (no download, no metadata files: USE_CODE).


@pytest.fixture(scope="module")
def tfds_mod():
  tfds = pytest.importorskip("tensorflow_datasets")
  from gjax.data import tfds_input

  return tfds, tfds_input


def _mock(tfds, num_examples=12):
  return tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE)


def test_tfds_cifar10_batches(tfds_mod, tmp_path):
  tfds, tfds_input = tfds_mod
  with _mock(tfds):
    it = tfds_input.tfds_batches(
      "cifar10", "train", 8, train=True, seed=1, data_dir=tmp_path, process_index=1, process_count=2
    )
    batches = [next(it) for _ in range(4)]  # repeats past the 12 mock examples
    again = next(
      tfds_input.tfds_batches(
        "cifar10", "train", 8, train=True, seed=1, data_dir=tmp_path, process_index=1, process_count=2
      )
    )
  for batch in batches:
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
  np.testing.assert_array_equal(batches[0]["image"], again["image"])


def test_tfds_imagenet_host_square(tfds_mod, tmp_path):
  tfds, tfds_input = tfds_mod
  with _mock(tfds, num_examples=6):
    train = next(
      tfds_input.tfds_batches(
        "imagenet2012", "train", 4, train=True, data_dir=tmp_path, host_square=24, process_index=0, process_count=1
      )
    )
    evals = list(
      tfds_input.tfds_batches(
        "imagenet2012",
        tfds_input.eval_split("imagenet2012"),
        4,
        train=False,
        data_dir=tmp_path,
        drop_remainder=False,
        host_square=24,
        process_index=0,
        process_count=1,
      )
    )
  assert train["image"].shape == (4, 24, 24, 3) and train["image"].dtype == np.uint8
  assert [b["image"].shape[0] for b in evals] == [4, 2]
  assert all(b["image"].shape[1:] == (24, 24, 3) for b in evals)


def test_tfds_names_and_errors(tfds_mod):
  _, tfds_input = tfds_mod
  assert tfds_input.pretrain_split("stl10") == "unlabelled+train"
  assert tfds_input.pretrain_split("cifar100") == "train"
  with pytest.raises(ValueError, match="unknown data set 'svhn'; registered: cifar10, cifar100, digits"):
    tfds_input.pretrain_split("svhn")
  with pytest.raises(ValueError, match="process count 3"):
    tfds_input.make_tfds_dataset("cifar10", "train", 8, train=True, process_index=0, process_count=3)


# ---------------------------------------------------------------------------
# Sharding.


def test_make_global_batch_on_8_devices():
  assert jax.device_count() == 8
  mesh = sharding.data_mesh()
  assert mesh.axis_names == ("data",) and mesh.devices.shape == (8,)
  batch = {
    "image": np.arange(16 * 4 * 4 * 3, dtype=np.uint8).reshape(16, 4, 4, 3),
    "label": np.arange(16, dtype=np.int32),
  }
  out = sharding.make_global_batch(batch, mesh)
  assert out["image"].shape == (16, 4, 4, 3) and out["label"].shape == (16,)
  assert out["image"].dtype == jnp.uint8 and out["label"].dtype == jnp.int32
  assert out["image"].sharding == sharding.batch_sharding(mesh)
  assert len(out["label"].addressable_shards) == 8
  assert all(s.data.shape == (2,) for s in out["label"].addressable_shards)
  np.testing.assert_array_equal(np.asarray(out["image"]), batch["image"])
  assert sharding.replicated_sharding(mesh).is_fully_replicated
  with pytest.raises(ValueError, match=r"batch size 12 .* 8 local devices"):
    sharding.make_global_batch({"label": np.zeros(12, np.int32)}, mesh)


def test_each_view_has_its_own_augmentation():
  """BYOL's asymmetric views: ``config.augment.<p>_prob = (view 1, view 2)``."""
  from gjax import data as gdata
  from gjax.train import config as config_lib
  from gjax.train.input_pipeline import view_augments
  from tests.test_train import tiny_config

  config = tiny_config(**{"augment.blur": "on", "augment.blur_prob": (1.0, 0.1), "augment.grayscale_prob": (0.0, 0.2)})
  config_lib.validate_config(config, 8)
  first, second = view_augments(config, (16, 16, 3))
  assert (first.blur_prob, second.blur_prob, first.grayscale_prob, second.grayscale_prob) == (1.0, 0.1, 0.0, 0.2)
  assert first.blur and second.blur and first.jitter_prob == second.jitter_prob == 0.8
  images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
  rng = jax.random.PRNGKey(3)
  v1, v2 = gdata.two_views(rng, images, (first, second))
  k1, k2 = jax.random.split(rng)
  np.testing.assert_array_equal(v1, gdata.augment_batch(k1, images, first))
  np.testing.assert_array_equal(v2, gdata.augment_batch(k2, images, second))
  assert not np.array_equal(v2, gdata.augment_batch(k2, images, first))  # view 2's own settings were used
  with pytest.raises(ValueError, match=r"config\.augment\.blur_prob=\(1\.0, 1\.5\) is invalid: must be two"):
    config_lib.validate_config(tiny_config(**{"augment.blur_prob": (1.0, 1.5)}), 8)
