"""Every method on Fashion-MNIST, composed (``configs/_compose.py``):

  python train.py --config configs/fashion_mnist.py:method=vicreg --workdir workdirs/vicreg
  python train.py --config configs/fashion_mnist.py:method=byol,variant=compare --workdir workdirs/compare/byol
  python train.py --config configs/fashion_mnist.py:method=vje,variant=one_class ...

Variants: ``""`` (quarter-width ResNet-18, 10 epochs), ``compare`` (the
same-budget comparison), ``smoke``, and a method's own (VJE: ``one_class``,
``one_class_paper``). ``method=vje`` is ``configs/vje_fashion_mnist.py``, and
so on for every method with a file of its own.
"""

from configs._baselines import baseline_fashion_mnist_config
from configs._compose import compose
from configs._fashion_mnist import fashion_mnist_config


def get_config(spec: str = "method=vje"):
  return compose("fashion_mnist", spec, fashion_mnist_config, baseline_fashion_mnist_config)
