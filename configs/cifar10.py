"""Every method on CIFAR-10 with the VJE paper's recipe (ResNet-18 CIFAR stem,
800 epochs, batch 256), composed (``configs/_compose.py``):

  python train.py --config configs/cifar10.py:method=byol --workdir workdirs/byol_cifar10
  python train.py --config configs/cifar10.py:method=vje,variant=smoke --workdir /tmp/smoke

Needs the TFDS data set prepared offline (``--config.dataset.data_dir=DIR``).
"""

from configs._baselines import baseline_paper_config
from configs._compose import compose
from configs._vje_paper import vje_paper_config


def get_config(spec: str = "method=vje"):
  return compose(
      "cifar10", spec,
      lambda method, variant: vje_paper_config("cifar10", "resnet18", "cifar", 800.0, variant, method),
      lambda method, variant: baseline_paper_config(method, "cifar10", "resnet18", "cifar", 800.0, variant))
