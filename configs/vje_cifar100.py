"""VJE on CIFAR-100 (the CIFAR-10 recipe: ResNet-18 CIFAR stem, 800 epochs,
batch 256; the paper's Section 5.4 ablations).

  python train.py --config configs/vje_cifar100.py --workdir workdirs/vje_cifar100
  python train.py --config configs/vje_cifar100.py:smoke --workdir /tmp/vje_cifar100_smoke

Should reach what the paper reports at nu = 3 (Table 5, mean of three runs):
k-NN30 53.7 %, linear 62.7 %. Not trained here (no CIFAR-100, no
accelerator on these machines). Needs the TFDS data set prepared offline
(``--config.dataset.data_dir=DIR``).
"""

from configs._vje_paper import vje_paper_config


def get_config(variant: str = ""):
  return vje_paper_config("cifar100", "resnet18", "cifar", 800.0, variant)
