"""SimCLR on CIFAR-10 (ResNet-18 CIFAR stem, 800 epochs, batch 256, the VJE
paper's schedule and augmentations; heads: configs/_baselines.py).

  python train.py --config configs/simclr_cifar10.py --workdir workdirs/simclr_cifar10

Needs the TFDS data set prepared offline (`--config.dataset.data_dir=DIR`).
"""

from configs._baselines import baseline_paper_config


def get_config(variant: str = ""):
  return baseline_paper_config("simclr", "cifar10", "resnet18", "cifar", 800.0, variant)
