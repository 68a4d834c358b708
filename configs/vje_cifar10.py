"""VJE on CIFAR-10 (Section 5.2: ResNet-18 CIFAR stem, 800 epochs, batch 256, lr 0.05, wd 5e-6, beta 1, nu 3, no blur at 32x32).

  python train.py --config configs/vje_cifar10.py --workdir workdirs/vje_cifar10
  python train.py --config configs/vje_cifar10.py:smoke --workdir /tmp/vje_cifar10_smoke

Needs the TFDS data set prepared offline (`--config.dataset.data_dir=DIR`).
"""

from configs._vje_paper import vje_paper_config


def get_config(variant: str = ""):
  return vje_paper_config("cifar10", "resnet18", "cifar", 800.0, variant)
