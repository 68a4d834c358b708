"""Every method on CIFAR-10 with the VJE paper's recipe (ResNet-18 CIFAR stem,
800 epochs, batch 256), composed (``configs/_compose.py``):

  python train.py --config configs/cifar10.py:method=vje --workdir workdirs/vje_cifar10
  python train.py --config configs/cifar10.py:method=byol --workdir workdirs/byol_cifar10
  python train.py --config configs/cifar10.py:method=vje,variant=smoke --workdir /tmp/smoke

``method=vje`` should reach what the paper reports (Table 2): k-NN30 89.98 %,
linear 92.1 % on z (89.02 / 90.8 % on mu); Table 5 (nu = 3, three runs):
86.2 / 88.9 %. Not trained here (no CIFAR-10, no accelerator on these
machines); ``results/tpu_compile.md`` sizes it: 0.9 chip-hours on a v4-8 by
the compiler's estimate. Needs the TFDS data set prepared offline
(``--config.dataset.data_dir=DIR``).
"""

from configs._baselines import baseline_paper_config
from configs._compose import compose
from configs._vje_paper import vje_paper_config


def get_config(spec: str = "method=vje"):
  return compose(
    "cifar10",
    spec,
    lambda method, variant: vje_paper_config("cifar10", "resnet18", "cifar", 800.0, variant, method),
    lambda method, variant: baseline_paper_config(method, "cifar10", "resnet18", "cifar", 800.0, variant),
  )
