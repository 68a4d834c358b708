"""Every shipped config (and each of its variants) builds and validates."""

import glob
import importlib
import os

import pytest

from gjax.train.config import validate_config

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob("configs/*.py") if not os.path.basename(p).startswith("_"))
VARIANTS = {"vje_fashion_mnist": ("", "smoke", "one_class", "one_class_paper", "compare"), "gmje_fashion_mnist": ("", "smoke", "compare"),
            "gmje_mdn_fashion_mnist": ("", "smoke", "compare"), "gje_fashion_mnist": ("", "smoke", "compare"),
            **{f"{m}_fashion_mnist": ("", "smoke", "compare")
               for m in ("jepa", "simsiam", "vicreg", "simclr", "moco", "sigreg")}}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_and_variants_validate(name):
  module = importlib.import_module(f"configs.{name}")
  for variant in VARIANTS.get(name, ("", "smoke")):
    config = module.get_config(variant)
    validate_config(config, num_devices=8)
    assert config.method in name
  with pytest.raises(ValueError, match="unknown variant"):
    module.get_config("no_such_variant")


def test_the_comparison_budget_is_shared():
  """Same backbone, data, schedule and evaluators for every method in the comparison."""
  shared = ("model.encoder", "model.width_multiplier", "dataset", "batch_size", "num_epochs", "optim", "augment",
            "eval.every_epochs", "eval.evaluators", "seed")
  configs = [importlib.import_module(f"configs.{m}_fashion_mnist").get_config("compare")
             for m in ("vje", "gje", "gmje", "gmje_mdn", "jepa", "simsiam", "vicreg", "simclr", "moco", "sigreg")]

  def get(c, path):
    for part in path.split("."):
      c = c[part]
    value = c.to_dict() if hasattr(c, "to_dict") else c
    if path == "optim":  # gradient clipping is the GJE family's own stabiliser (docs/gje-design-notes.md)
      value.pop("grad_clip_norm")
    return value

  for path in shared:
    assert all(get(c, path) == get(configs[0], path) for c in configs), path
