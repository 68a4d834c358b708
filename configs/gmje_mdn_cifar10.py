"""GMJE-MDN on CIFAR-10 (ResNet-18 CIFAR stem, 800 epochs, batch 256, the VJE paper's recipe;
settings in configs/_gmje_paper.py).
K = 16 components from a 1024-wide parameter network on a 256-d projector.

  python train.py --config configs/gmje_mdn_cifar10.py --workdir workdirs/gmje_mdn_cifar10
  python train.py --config configs/gmje_mdn_cifar10.py:smoke --workdir /tmp/gmje_mdn_cifar10_smoke

Nothing is published for it to reach (the GJE paper has only its abstract);
the same recipe reaches k-NN30 89.98 %, linear 92.1 % with VJE (Table 2).
Not trained here (no CIFAR-10, no accelerator on these machines). Needs the
TFDS data set prepared offline (``--config.dataset.data_dir=DIR``).
"""

from configs._gmje_paper import gmje_paper_config


def get_config(variant: str = ""):
  return gmje_paper_config("gmje_mdn", "cifar10", "resnet18", "cifar", 800.0, variant)
