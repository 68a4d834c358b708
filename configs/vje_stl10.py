"""VJE on STL-10 (unlabelled + train at 96x96, ResNet-18 with the ImageNet stem,
blur on, 800 epochs; the paper's Section 5.4 ablations).

  python train.py --config configs/vje_stl10.py --workdir workdirs/vje_stl10
  python train.py --config configs/vje_stl10.py:smoke --workdir /tmp/vje_stl10_smoke

Should reach what the paper reports at nu = 3 (Table 5, mean of three runs):
k-NN30 79.7 %, linear 85.1 %. Not trained here (no STL-10, no accelerator
on these machines). Needs the TFDS data set prepared offline
(``--config.dataset.data_dir=DIR``).
"""

from configs._vje_paper import vje_paper_config


def get_config(variant: str = ""):
  return vje_paper_config("stl10", "resnet18", "imagenet", 800.0, variant)
