"""Fashion-MNIST settings shared by every method's CPU-sized config; imported
by ``configs/<method>_fashion_mnist.py``, not a config of its own.

Variants (``--config configs/<method>_fashion_mnist.py:<variant>``):

* ``""``: the CPU default, ResNet-18 at a quarter width (CIFAR stem), 10 epochs.
* ``compare``: the same-budget comparison of methods (GMJE issue, baselines
  issue): ResNet-18 at an eighth width, 5 epochs, batch 256, k-NN on the test
  split after every epoch (memory bank: 10 000 training images). Every method
  runs it with the same backbone, data, augmentations, schedule and evaluators.
* ``smoke``: a tiny run for checking the real-data path end to end.
"""

from gjax.eval import evaluator_settings, use_default_evaluators
from gjax.train.config import base_config

VARIANTS = ("", "compare", "smoke")


def fashion_mnist_config(method: str, variant: str):
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of {method}_fashion_mnist; known: {VARIANTS[1:]}")
  c = base_config(method)
  use_default_evaluators(c)
  c.dataset.name = "fashion_mnist"
  c.model.encoder = "resnet18"
  c.model.stem = "cifar"
  c.model.width_multiplier = 0.25
  c.model.bottleneck = 128
  c.optim.base_learning_rate = 0.05
  c.optim.weight_decay = 5e-6
  c.optim.warmup_epochs = 1.0
  c.batch_size = 256
  c.num_epochs = 10.0
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  if variant == "compare":
    c.model.width_multiplier = 0.125
    c.num_epochs = 5.0
    c.eval.every_epochs = 1.0
    c.eval.evaluators = evaluator_settings("knn", "linear_probe")
    c.eval.evaluators.linear_probe.epochs = 30
    c.eval.online_evaluators = ("knn",)
    c.eval.num_train_examples = 10000
    c.keep_checkpoints = 1
  elif variant == "smoke":
    c.model.width_multiplier = 0.125
    c.dataset.num_train_examples = 4096
    c.batch_size = 128
    c.num_train_steps = 60
    c.optim.warmup_epochs = 0.0
    c.log_every_steps = 10
    c.checkpoint_every_steps = 30
  return c


def add_density_projector(c):
  """The GJE family's projector and gradient clipping: a density over z needs z to take negative
  values (the ResNet's pooled output is post-ReLU), so the density sits on a
  2-layer projector with a linear output as wide as the backbone's embedding;
  k-NN and the linear probe also report the backbone output h."""
  c.model.projector = True
  c.model.projector_dim = 64 if c.model.width_multiplier == 0.125 else 128
  c.model.projector_hidden = 4 * c.model.projector_dim
  # The joint NLL's gradients (global norm 50-200 early on) blew the first
  # unclipped GMJE run up to NaN at step ~200 with SGD at lr 0.05.
  c.optim.grad_clip_norm = 5.0
  return c
