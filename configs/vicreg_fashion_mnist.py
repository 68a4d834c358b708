"""VICReg on Fashion-MNIST (CPU-sized; heads: configs/_baselines.py).

  python train.py --config configs/vicreg_fashion_mnist.py:compare --workdir workdirs/compare/vicreg
"""

from configs._baselines import baseline_fashion_mnist_config


def get_config(variant: str = ""):
  return baseline_fashion_mnist_config("vicreg", variant)
