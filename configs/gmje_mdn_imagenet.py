"""GMJE-MDN on ImageNet-1K (ResNet-50, 100 epochs, batch 256, the VJE paper's recipe).
GMJE-MDN settings: configs/_gmje_paper.py.

  python train.py --config configs/gmje_mdn_imagenet.py --workdir workdirs/gmje_mdn_imagenet
  python train.py --config configs/gmje_mdn_imagenet.py:smoke --workdir /tmp/gmje_mdn_imagenet_smoke

Needs the TFDS data set prepared offline (`--config.dataset.data_dir=DIR`).
"""

from configs._gmje_paper import gmje_paper_config


def get_config(variant: str = ""):
  return gmje_paper_config("gmje_mdn", "imagenet2012", "resnet50", "imagenet", 100.0, variant)
