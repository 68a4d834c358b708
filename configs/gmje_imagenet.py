"""Prototype GMJE on ImageNet-1K (ResNet-50, 100 epochs, batch 256, the VJE paper's recipe;
settings in configs/_gmje_paper.py).
K = 16 full-covariance components on a 256-d projector, fitted by EM with the
barrier per component (the method's defaults).

  python train.py --config configs/gmje_imagenet.py --workdir workdirs/gmje_imagenet
  python train.py --config configs/gmje_imagenet.py:smoke --workdir /tmp/gmje_imagenet_smoke

Nothing is published for it to reach (the GJE paper has only its abstract);
the VJE paper's recipe reaches 65.6 % linear top-1 with VJE (Table 1).
Not trained here (no ImageNet-1K, no accelerator on these machines). Needs the
TFDS data set prepared offline (``--config.dataset.data_dir=DIR``).
"""

from configs._gmje_paper import gmje_paper_config


def get_config(variant: str = ""):
  return gmje_paper_config("gmje", "imagenet2012", "resnet50", "imagenet", 100.0, variant)
