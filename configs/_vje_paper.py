"""Shared settings of the VJE paper's recipes (Section 5.1-5.2); imported by the
per-data-set configs, not a config of its own."""

from gjax.eval import use_default_evaluators
from gjax.objectives import get_objective
from gjax.train.config import base_config


def vje_paper_config(dataset: str, encoder: str, stem: str, num_epochs: float, variant: str, method: str = "vje"):
  """The VJE paper's recipe for ``dataset``; other methods (``method``) train on the same one."""
  c = base_config(method)
  use_default_evaluators(c)
  c.dataset.name = dataset
  # A method that needs a ViT (I-JEPA) gets ViT-B/16 where the recipe has ResNet-50, else its own default.
  vit = get_objective(method).model_defaults.get("encoder", "")
  c.model.encoder = encoder if not vit else ("vit_b16" if encoder == "resnet50" else vit)
  c.model.stem = stem
  c.model.width_multiplier = 1.0
  c.model.bottleneck = 512 if encoder == "resnet50" else 128
  if method == "vje":
    c.vje.nu = 3.0
    c.vje.beta = 1.0
  c.optim.base_learning_rate = 0.05
  c.optim.weight_decay = 5e-6
  c.batch_size = 256
  c.num_epochs = num_epochs
  c.log_every_steps = 100
  c.checkpoint_every_steps = 5000
  if variant == "smoke":
    c.model.width_multiplier = 1.0 if vit else 0.125
    if vit:
      c.model.encoder = "vit_smoke"
    c.batch_size = 32
    c.num_train_steps = 20
    c.log_every_steps = 5
    c.checkpoint_every_steps = 10
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; known: 'smoke'")
  return c
