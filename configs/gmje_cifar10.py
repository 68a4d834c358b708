"""Prototype GMJE on CIFAR-10 (ResNet-18 CIFAR stem, 800 epochs, batch 256, the VJE paper's recipe).
Prototype GMJE settings: configs/_gmje_paper.py.

  python train.py --config configs/gmje_cifar10.py --workdir workdirs/gmje_cifar10
  python train.py --config configs/gmje_cifar10.py:smoke --workdir /tmp/gmje_cifar10_smoke

Needs the TFDS data set prepared offline (`--config.dataset.data_dir=DIR`).
"""

from configs._gmje_paper import gmje_paper_config


def get_config(variant: str = ""):
  return gmje_paper_config("gmje", "cifar10", "resnet18", "cifar", 800.0, variant)
