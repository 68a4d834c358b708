"""Evaluation on sharded features (gjax.eval.sharded) against the host path it
replaces at scale: the layout, the streamed extraction, the exact k-NN and the
linear probe, on the 8 fake devices."""

import jax
import numpy as np
import pytest

from gjax import data as gdata
from gjax.eval import sharded
from gjax.eval.knn import knn_predict
from gjax.eval.linear_probe import fit_linear_probe, linear_probe_topk


@pytest.mark.parametrize("num_examples,global_batch,processes", [(103, 16, 1), (103, 16, 2), (64, 16, 4), (5, 8, 4)])
def test_the_layout_gives_every_example_one_place(num_examples, global_batch, processes):
  layout = sharded.SplitLayout(num_examples, global_batch, processes)
  chunk, column = layout.positions(np.arange(num_examples))
  assert chunk.min() >= 0 and chunk.max() < layout.num_chunks and column.max() < global_batch
  assert len(set(zip(chunk.tolist(), column.tolist()))) == num_examples
  # Each process's batches put example i where positions(i) says.
  labels = np.arange(num_examples, dtype=np.int32)
  images = labels[:, None, None, None].astype(np.uint8)
  seen = {}
  for p in range(processes):
    batches = list(sharded.local_eval_batches(images, labels, layout, p))
    assert len(batches) == layout.num_chunks
    for c, batch in enumerate(batches):
      assert len(batch["label"]) == layout.local_batch
      for j in np.flatnonzero(batch["valid"]):
        seen[int(batch["label"][j])] = (c, p * layout.local_batch + j)
  assert seen == {i: (int(chunk[i]), int(column[i])) for i in range(num_examples)}
  assert sum(count for _, count in layout.blocks) == num_examples
  with pytest.raises(ValueError, match="multiple of the 3 processes"):
    sharded.SplitLayout(10, 16, 3)


def random_features(n, d, classes, seed):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(classes, d))
  labels = rng.integers(0, classes, n).astype(np.int32)
  return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


@pytest.mark.parametrize("k,weighted", [(1, False), (7, False), (20, True)])
def test_sharded_knn_is_the_exact_knn(k, weighted):
  mesh = gdata.data_mesh()
  train_x, train_y = random_features(203, 12, 5, 0)
  test_x, _ = random_features(77, 12, 5, 1)
  expected = knn_predict(train_x, train_y, test_x, k=k, num_classes=5, weighted=weighted, mesh=mesh)
  train = sharded.from_host({"z": train_x}, train_y, 32, mesh)
  test = sharded.from_host({"z": test_x}, np.zeros(77, np.int32), 16, mesh)
  got = sharded.sharded_knn_predict(train, test, "z", k=k, num_classes=5, weighted=weighted)
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_allclose(train.host("z"), train_x)
  np.testing.assert_array_equal(train.host_labels(), train_y)
  with pytest.raises(ValueError, match=r"k=204 must be in \[1, 203\]"):
    sharded.sharded_knn_predict(train, test, "z", k=204, num_classes=5)


def test_sharded_linear_probe_matches_the_host_probe():
  mesh = gdata.data_mesh()
  train_x, train_y = random_features(300, 10, 4, 2)
  test_x, test_y = random_features(120, 10, 4, 3)
  kwargs = dict(num_classes=4, epochs=3, batch_size=64, learning_rate=0.1, weight_decay=1e-4, seed=5)
  host = fit_linear_probe(train_x, train_y, mesh=mesh, **kwargs)
  train = sharded.from_host({"h": train_x}, train_y, 32, mesh)
  probe = sharded.fit_sharded_linear_probe(train, "h", **kwargs)
  np.testing.assert_allclose(probe.mean, host.mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probe.std, host.std, rtol=1e-5)
  np.testing.assert_allclose(probe.weights, host.weights, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(probe.final_loss, host.final_loss, rtol=1e-5)
  test = sharded.from_host({"h": test_x}, test_y, 16, mesh)
  assert sharded.sharded_probe_topk(probe, test, "h") == pytest.approx(linear_probe_topk(host, test_x, test_y))


def test_streamed_extraction_gives_the_host_features():
  from gjax.eval.features import extract_features, make_embed_step
  from gjax.train import base_config
  from gjax.train.input_pipeline import augment_config
  from gjax.train.state import build_method

  c = base_config("vje")
  c.dataset.name = "synthetic"
  c.dataset.synthetic_image_size = 8
  c.model.encoder, c.model.width_multiplier, c.model.bottleneck = "resnet10", 0.125, 16
  _, _, model = build_method(c)
  images, labels = gdata.make_synthetic_images(70, 8, 3, seed=1)
  variables = model.init(
    jax.random.PRNGKey(0), images[:2].astype(np.float32), images[:2].astype(np.float32), train=False
  )
  mesh = gdata.data_mesh()
  augment = augment_config(c, images.shape[1:])
  expected = extract_features(model, variables, images, augment, mesh, batch_size=32)
  layout = sharded.SplitLayout(len(labels), 32, 1)
  feats = sharded.extract_sharded_features(
    make_embed_step(model, augment, mesh),
    variables,
    sharded.local_eval_batches(images, labels, layout, 0),
    layout,
    mesh,
  )
  assert feats.values["z"].shape == (3, 32, expected["z"].shape[1])
  assert feats.values["z"].sharding.spec == jax.sharding.PartitionSpec(None, "data")
  for name in expected:
    np.testing.assert_allclose(feats.host(name), expected[name], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(feats.host_labels(), labels)


def build_squares(data_dir, num_fit: int, side: int = 24):
  """A TFDS data set 'gjax_test_squares' of ``num_fit`` + 32 images (side x side x 3), 2 classes."""
  tfds = pytest.importorskip("tensorflow_datasets")

  class GjaxTestSquares(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("0.1.0")

    def _info(self):
      return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
          {"image": tfds.features.Image(shape=(side, side, 3)), "label": tfds.features.ClassLabel(num_classes=2)}
        )
      )

    def _split_generators(self, dl_manager):
      return {"fit": self._generate_examples(num_fit, 0), "holdout": self._generate_examples(32, 1)}

    def _generate_examples(self, num, seed):
      rng = np.random.default_rng(seed)
      for i in range(num):
        image = rng.integers(0, 80, (side, side, 3), dtype=np.uint8)
        image[: side // 2, : side // 2] = 200 * (i % 2)
        yield f"{seed}-{i}", {"image": image, "label": i % 2}

  GjaxTestSquares(data_dir=str(data_dir)).download_and_prepare()


def test_streamed_evaluation_holds_one_batch_of_images_not_the_split(tmp_path):
  """The same evaluation on N and 4N TFDS images: the host's peak of numpy
  memory (tracemalloc sees every numpy buffer) grows by far less than the 3N
  images' bytes — no buffer of images scales with N — while the features stay
  on the devices with the right rows."""
  import tracemalloc

  from gjax.eval.registry import EvalContext
  from gjax.eval.splits import eval_splits
  from tests.test_train import tiny_config

  side, n = 24, 96
  peaks, counts = [], []
  for num in (n, 4 * n):
    build_squares(tmp_path / str(num), num, side)
    config = tiny_config(
      **{
        "dataset.name": "tfds:gjax_test_squares",
        "dataset.data_dir": str(tmp_path / str(num)),
        "dataset.tfds.pretrain_split": "fit",
        "dataset.tfds.train_split": "fit",
        "dataset.tfds.eval_split": "holdout",
        "dataset.tfds.mean": (0.3, 0.3, 0.3),
        "dataset.tfds.std": (0.3, 0.3, 0.3),
        "eval.batch_size": 32,
      }
    )
    from gjax.train.state import build_method

    _, _, model = build_method(config)
    dummy = np.zeros((2, side, side, 3), np.float32)
    variables = model.init(jax.random.PRNGKey(0), dummy, dummy, train=False)
    splits = eval_splits(config)
    assert splits[0].images is None and splits[0].num_examples == num  # streamed, not loaded
    context = EvalContext(model=model, variables=variables, config=config, mesh=gdata.data_mesh(), splits=splits)
    tracemalloc.start()
    features = context.sharded("train")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peaks.append(peak)
    counts.append(features.num_examples)
    # The rows in the split's order: the labels TFDS reads for the whole split (after the measurement).
    np.testing.assert_array_equal(features.host_labels(), splits[0].head()[1])
    assert features.host_labels().sum() == num // 2
  assert counts == [n, 4 * n]
  image_bytes = 3 * n * side * side * 3  # what holding the split would add
  print("peaks", peaks, "image bytes", image_bytes)
  assert peaks[1] - peaks[0] < image_bytes / 4, (peaks, image_bytes)


def test_the_augmented_image_linear_probe_trains_through_the_frozen_encoder(tmp_path):
  """SimCLR / BYOL's linear evaluation: eval.py's linear_probe_augmented on a tiny
  run; the classifier starts at zero (loss log C) and its loss falls."""
  from gjax.eval import evaluate
  from gjax.eval.augmented_probe import probe_augment
  from gjax.train import train_and_evaluate
  from tests.test_train import tiny_config

  config = tiny_config(**{"num_train_steps": 2, "eval.num_train_examples": 256})
  with config.unlocked():
    config.eval.evaluators.linear_probe_augmented = {
      "epochs": 3,
      "learning_rate": 0.5,
      "batch_size": 64,
      "weight_decay": 0.0,
    }
  config.eval.run_only = ("linear_probe_augmented",)
  train_and_evaluate(config, str(tmp_path))
  results = evaluate(config, str(tmp_path))
  assert 0 <= results["linear_aug_top1_h"] <= results["linear_aug_top5_h"] <= 1
  assert results["linear_aug_final_loss"] < np.log(10) - 0.05, results  # log C at the zero start
  view = probe_augment(gdata.AugmentConfig())
  assert view.jitter_prob == view.grayscale_prob == view.blur_prob == 0 and view.crop_scale == (0.08, 1.0)
  with config.unlocked():
    config.eval.evaluators.linear_probe_augmented.epochs = 0
  with pytest.raises(ValueError, match="linear_probe_augmented.epochs"):
    evaluate(config, str(tmp_path))
