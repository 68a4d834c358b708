"""VJE on Fashion-MNIST: the CPU-sized default (quarter-width ResNet-18, CIFAR stem).

  python train.py --config configs/vje_fashion_mnist.py --workdir workdirs/vje_fmnist
  python train.py --config configs/vje_fashion_mnist.py:smoke --workdir /tmp/smoke

  python -m gjax.eval.one_class --config configs/vje_fashion_mnist.py:one_class \
      --workdir workdirs/one_class --grid vje.beta=1.0 --grid vje.nu=0.5,1,3

``:one_class`` is the per-class model of the one-class protocol (Section 5.3):
an eighth-width ResNet-18 trained for 10 epochs on the 6000 images of one
class. ``:smoke`` is a tiny run (a few minutes on 2 CPU cores at most) for checking
that everything works end to end on the real data.
"""

from gjax.train.config import base_config


def get_config(variant: str = "") -> "ml_collections.ConfigDict":
  c = base_config()
  c.method = "vje"
  c.dataset.name = "fashion_mnist"
  c.model.encoder = "resnet18"
  c.model.stem = "cifar"
  c.model.width_multiplier = 0.25
  c.model.bottleneck = 128
  c.vje.nu = 3.0
  c.vje.beta = 1.0
  c.optim.base_learning_rate = 0.05
  c.optim.weight_decay = 5e-6
  c.optim.warmup_epochs = 1.0
  c.batch_size = 256
  c.num_epochs = 10.0
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  if variant == "smoke":
    c.model.width_multiplier = 0.125
    c.dataset.num_train_examples = 4096
    c.batch_size = 128
    c.num_train_steps = 60
    c.optim.warmup_epochs = 0.0
    c.log_every_steps = 10
    c.checkpoint_every_steps = 30
  elif variant == "one_class":
    c.model.width_multiplier = 0.125
    c.batch_size = 128
    c.num_epochs = 10.0
    c.optim.warmup_epochs = 1.0
    c.log_every_steps = 46
    c.checkpoint_every_steps = 460
    c.keep_checkpoints = 1
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of vje_fashion_mnist; known: 'smoke', 'one_class'")
  return c
