"""VJE on CIFAR-100 (the CIFAR-10 recipe; Section 5.4 ablations).

  python train.py --config configs/vje_cifar100.py --workdir workdirs/vje_cifar100
  python train.py --config configs/vje_cifar100.py:smoke --workdir /tmp/vje_cifar100_smoke

Needs the TFDS data set prepared offline (`--config.dataset.data_dir=DIR`).
"""

from configs._vje_paper import vje_paper_config


def get_config(variant: str = ""):
  return vje_paper_config("cifar100", "resnet18", "cifar", 800.0, variant)
