"""Every shipped config (and each of its variants) builds and validates."""

import glob
import importlib
import os

import pytest

from gjax.train.config import validate_config

#: The composed entry points (``configs/<data set>.py:method=...``), tested below.
COMPOSED = ("fashion_mnist", "cifar10", "imagenet")
CONFIGS = sorted(
  os.path.basename(p)[:-3]
  for p in glob.glob("configs/*.py")
  if not os.path.basename(p).startswith("_") and os.path.basename(p)[:-3] not in COMPOSED
)
VARIANTS = {
  "vje_fashion_mnist": ("", "smoke", "one_class", "one_class_paper", "compare"),
  "gmje_fashion_mnist": ("", "smoke", "compare"),
  "gmje_mdn_fashion_mnist": ("", "smoke", "compare"),
  "gje_fashion_mnist": ("", "smoke", "compare"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_and_variants_validate(name):
  module = importlib.import_module(f"configs.{name}")
  for variant in VARIANTS.get(name, ("", "smoke")):
    config = module.get_config(variant)
    validate_config(config, num_devices=8)
    assert config.method in name
  with pytest.raises(ValueError, match="unknown variant"):
    module.get_config("no_such_variant")


@pytest.mark.parametrize("dataset", COMPOSED)
def test_composed_configs_reach_every_method_and_every_recipe(dataset):
  from gjax.objectives import registered_methods

  composed = importlib.import_module(f"configs.{dataset}")
  for method in registered_methods():
    for variant in ("", "smoke"):
      config = composed.get_config(f"method={method},variant={variant}")
      validate_config(config, num_devices=8)
      assert config.method == method
      own = f"configs/{method}_{dataset}.py"
      if os.path.exists(own):  # a method's own recipe is the one reached, field for field
        recipe = importlib.import_module(f"configs.{method}_{dataset}").get_config(variant)
        assert config.to_dict() == recipe.to_dict(), own
  assert composed.get_config().method == "vje"
  for bad, message in (
    ("method=nope", "unknown method 'nope'"),
    ("meth=vje", "must be one of method="),
    ("variant=smoke", "name no method"),
  ):
    with pytest.raises(ValueError, match=message):
      composed.get_config(bad)


def test_the_comparison_budget_is_shared():
  """Same backbone, data, schedule and evaluators for every method in the comparison."""
  shared = (
    "model.encoder",
    "model.width_multiplier",
    "dataset",
    "batch_size",
    "num_epochs",
    "optim",
    "augment",
    "eval.every_epochs",
    "eval.evaluators",
    "seed",
  )
  composed = importlib.import_module("configs.fashion_mnist")
  configs = [
    composed.get_config(f"method={m},variant=compare")
    for m in ("vje", "gje", "gmje", "gmje_mdn", "jepa", "simsiam", "vicreg", "simclr", "moco", "sigreg", "byol")
  ]

  def get(c, path):
    for part in path.split("."):
      c = c[part]
    value = c.to_dict() if hasattr(c, "to_dict") else c
    if path == "optim":  # gradient clipping is the GJE family's own stabiliser (docs/gje-design-notes.md)
      value.pop("grad_clip_norm")
    return value

  for path in shared:
    assert all(get(c, path) == get(configs[0], path) for c in configs), path


def test_no_config_file_only_repeats_what_the_composer_builds():
  """A ``configs/<method>_<data set>.py`` exists only where it sets something of its own: the same
  config as ``configs/<data set>.py:method=<method>`` without the file is a wrapper to drop."""
  import configs._compose as compose_lib

  for dataset in COMPOSED:
    composed = importlib.import_module(f"configs.{dataset}")
    for name in CONFIGS:
      method = name[: -len(dataset) - 1] if name.endswith("_" + dataset) else None
      if method is None:
        continue
      module = importlib.import_module(f"configs.{name}")
      exists = os.path.exists
      same = []
      try:  # what the composer builds when the method has no file of its own
        compose_lib.os.path.exists = lambda p, own_file=f"{name}.py": False if p.endswith(own_file) else exists(p)
        for variant in VARIANTS.get(name, ("", "smoke")):
          try:
            built = composed.get_config(f"method={method},variant={variant}").to_dict()
          except ValueError:  # a variant only the file has
            built = None
          same.append(module.get_config(variant).to_dict() == built)
      finally:
        compose_lib.os.path.exists = exists
      assert not all(same), f"configs/{name}.py builds what configs/{dataset}.py:method={method} builds: drop it"


def test_a_composed_config_imports_the_module_of_your_own_method(tmp_path, monkeypatch):
  (tmp_path / "my_gjax_method.py").write_text(
    "import jax.numpy as jnp\n"
    "from gjax.objectives import Objective, register\n"
    "register(Objective('mine_in_a_module', lambda o, rng, h: (jnp.mean(o['z_1'] ** 2) * h.weight, {}),\n"
    "                   defaults={'weight': 1.0}))\n"
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  composed = importlib.import_module("configs.fashion_mnist")
  config = composed.get_config("method=mine_in_a_module,variant=smoke,module=my_gjax_method")
  validate_config(config, num_devices=8)
  assert config.method == "mine_in_a_module" and config.mine_in_a_module.weight == 1.0
  assert config.model.width_multiplier == 0.125  # the data set's shared smoke recipe


def test_a_composed_config_chooses_its_evaluators():
  composed = importlib.import_module("configs.fashion_mnist")
  config = composed.get_config("method=gje,variant=compare,evaluators=knn+sampling")
  assert sorted(config.eval.evaluators.keys()) == ["knn", "sampling"]
  assert config.eval.online_evaluators == ("knn",)  # the recipe's ("knn", "posterior"), among the chosen
  validate_config(config, num_devices=8)
  assert config.eval.evaluators.sampling.num_examples == 2000
  with config.unlocked():
    config.eval.online_evaluators = ("knn", "sampling")
  validate_config(config, num_devices=8)
  from gjax.eval import validate_evaluators

  validate_evaluators(config)
  with pytest.raises(ValueError, match="unknown evaluator 'fid'"):
    composed.get_config("method=gje,evaluators=knn+fid")
