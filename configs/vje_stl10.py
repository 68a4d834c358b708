"""VJE on STL-10 (unlabelled+train at 96x96, ResNet-18 with the ImageNet stem, blur on; Section 5.4 ablations).

  python train.py --config configs/vje_stl10.py --workdir workdirs/vje_stl10
  python train.py --config configs/vje_stl10.py:smoke --workdir /tmp/vje_stl10_smoke

Needs the TFDS data set prepared offline (`--config.dataset.data_dir=DIR`).
"""

from configs._vje_paper import vje_paper_config


def get_config(variant: str = ""):
  return vje_paper_config("stl10", "resnet18", "imagenet", 800.0, variant)
