"""A researcher's own data (README "Your own data"): a TFDS data set built here
under a name gjax has never seen, with its own feature keys, split names and
image size, trained and evaluated by ``tfds:NAME``; and an in-memory data set
registered from a file of its own (``dataset.module``)."""

import json
import textwrap

import numpy as np
import pytest

from gjax import data as gdata
from gjax.train import config as config_lib
from gjax.train import train_and_evaluate
from gjax.train.input_pipeline import build_train_input
from tests.helpers import set_fields
from tests.test_train import tiny_config

NAME = "gjax_test_tiles"  # GjaxTestTiles below, snake-cased by TFDS


def build_tiles(data_dir):
  """12x12 RGB 'tiles' of 3 kinds (a bright square in one of three places), splits 'fit' and 'holdout'."""
  tfds = pytest.importorskip("tensorflow_datasets")

  # Not registered: gjax finds the data set by its name from the prepared files
  # alone, as it would a researcher's data set whose builder it cannot import.
  class GjaxTestTiles(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("0.1.0")

    def _info(self):
      return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
          {"picture": tfds.features.Image(shape=(12, 12, 3)), "kind": tfds.features.ClassLabel(num_classes=3)}
        )
      )

    def _split_generators(self, dl_manager):
      return {"fit": self._generate_examples(96, 0), "holdout": self._generate_examples(48, 1)}

    def _generate_examples(self, num, seed):
      rng = np.random.default_rng(seed)
      for i in range(num):
        kind = i % 3
        picture = rng.integers(0, 60, (12, 12, 3), dtype=np.uint8)
        picture[4 * kind : 4 * kind + 4, 2:10] = 220
        yield f"{seed}-{i}", {"picture": picture, "kind": kind}

  GjaxTestTiles(data_dir=str(data_dir)).download_and_prepare()


def tiles_config(data_dir, **overrides):
  c = tiny_config()
  c.dataset.name = f"tfds:{NAME}"
  c.dataset.data_dir = str(data_dir)
  t = c.dataset.tfds
  t.image_key, t.label_key = "picture", "kind"
  t.pretrain_split, t.train_split, t.eval_split = "fit", "fit", "holdout"
  t.mean, t.std = (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)
  c.eval.run_only = ("knn",)
  c.eval.evaluators.knn.k, c.eval.evaluators.knn.weighted_k = 5, 10
  return set_fields(c, overrides)


def test_a_tfds_data_set_gjax_has_never_seen_trains_and_evaluates_by_its_name(tmp_path):
  from gjax.eval import evaluate

  build_tiles(tmp_path / "tfds")
  config = tiles_config(tmp_path / "tfds")
  summary = train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["final_step"] == 4 and np.isfinite(summary["metrics"]["loss"])
  results = evaluate(config, str(tmp_path / "run"))
  assert 0.0 <= results["knn5_z"] <= 1.0
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["dataset"]["name"] == f"tfds:{NAME}" and saved["dataset"]["tfds"]["eval_split"] == "holdout"

  # The views are 12x12 (the stored size), the labels the 'kind' feature.
  train_input = build_train_input(config)
  batch = next(train_input.batches(0))
  assert batch["image"].shape == (16, 12, 12, 3) and set(batch["label"].tolist()) == {0, 1, 2}
  assert train_input.steps_per_epoch == 96 // 16 and train_input.augment[0].output_size == 12
  assert train_input.augment[1].mean == (0.2, 0.2, 0.2)


def test_a_tfds_data_set_is_checked_before_training(tmp_path):
  build_tiles(tmp_path / "tfds")
  with pytest.raises(ValueError, match=r"config.dataset.tfds.mean and config.dataset.tfds.std"):
    config_lib.validate_config(tiles_config(tmp_path / "tfds", **{"dataset.tfds.mean": ()}), 1, 1)
  with pytest.raises(ValueError, match=r"dataset.tfds.image_size=0.*resize=True"):
    config_lib.validate_config(tiles_config(tmp_path / "tfds", **{"dataset.tfds.resize": True}), 1, 1)
  with pytest.raises(ValueError, match=r"has the features \['kind', 'picture'\], not image_key='image'"):
    train_and_evaluate(tiles_config(tmp_path / "tfds", **{"dataset.tfds.image_key": "image"}), str(tmp_path / "a"))
  with pytest.raises(FileNotFoundError, match=r"has the splits \['fit', 'holdout'\]: split 'train' is not prepared"):
    train_and_evaluate(tiles_config(tmp_path / "tfds", **{"dataset.tfds.pretrain_split": "train"}), str(tmp_path / "b"))
  with pytest.raises(FileNotFoundError, match=r"'gjax_test_nothing'.*not prepared.*never downloads"):
    train_and_evaluate(
      tiles_config(tmp_path / "tfds", **{"dataset.name": "tfds:gjax_test_nothing"}), str(tmp_path / "c")
    )


def test_an_in_memory_data_set_is_one_file(tmp_path, monkeypatch):
  (tmp_path / "my_stripes.py").write_text(
    textwrap.dedent("""
      import numpy as np
      from gjax.data import DatasetSpec, register_dataset

      def load(split, config):
        rng = np.random.default_rng(split == "test")
        labels = np.arange(64 if split == "train" else 32) % 2
        images = rng.integers(0, 50, (len(labels), 10, 10, 1), dtype=np.uint8)
        images[labels == 1, :, ::2] = 200  # stripes
        return images, labels.astype(np.int32)

      register_dataset(DatasetSpec("my_stripes", "memory", mean=(0.3,), std=(0.3,), image_size=10, load=load))
      """)
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  config = tiny_config(**{"dataset.name": "my_stripes", "dataset.module": "my_stripes"})
  summary = train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["final_step"] == 4 and np.isfinite(summary["metrics"]["loss"])
  assert gdata.get_dataset("my_stripes").image_size == 10
  with pytest.raises(ValueError, match="config.dataset.module='no_such_module' cannot be imported"):
    config_lib.validate_config(tiny_config(**{"dataset.module": "no_such_module"}), 1, 1)
  with pytest.raises(ValueError, match="unknown data set 'my_strips'; registered: .*my_stripes"):
    config_lib.validate_config(tiny_config(**{"dataset.name": "my_strips"}), 1, 1)
  with pytest.raises(ValueError, match="is already registered"):
    gdata.register_dataset(gdata.DatasetSpec("my_stripes", "memory", (0.5,), (0.2,), load=lambda s, c: None))
  with pytest.raises(ValueError, match="'memory' data set needs a load function"):
    gdata.DatasetSpec("x", "memory", (0.5,), (0.2,))
