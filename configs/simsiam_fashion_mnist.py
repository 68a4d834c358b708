"""SimSiam on Fashion-MNIST (CPU-sized; heads: configs/_baselines.py).

  python train.py --config configs/simsiam_fashion_mnist.py:compare --workdir workdirs/compare/simsiam
"""

from configs._baselines import baseline_fashion_mnist_config


def get_config(variant: str = ""):
  return baseline_fashion_mnist_config("simsiam", variant)
