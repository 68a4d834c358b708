"""Prototype GMJE on Fashion-MNIST (CPU-sized): K = 8 diagonal-covariance global
components over ``u = [z_c; z_t]``, trained by gradient with the encoder, plus
the sliced Epps-Pulley marginal loss (λ = 1), on the output of a projector. ``--config.gmje.fit=em`` trains
the components by stepwise EM instead (GMJE-EM).

  python train.py --config configs/gmje_fashion_mnist.py --workdir workdirs/gmje_fmnist
  python train.py --config configs/gmje_fashion_mnist.py:compare --workdir workdirs/compare/gmje
"""

from configs._fashion_mnist import add_density_projector, fashion_mnist_config


def get_config(variant: str = ""):
  c = add_density_projector(fashion_mnist_config("gmje", variant))
  c.gmje.num_components = 8
  c.gmje.covariance_type = "diag"  # see docs/gje-design-notes.md, "Full covariances on CPU"
  c.gmje.marginal_weight = 1.0
  return c
