"""Prototype GMJE on Fashion-MNIST (CPU-sized): K = 8 diagonal-covariance global
components over ``u = [z_c; z_t]``, trained by gradient with the encoder, plus
the sliced Epps-Pulley marginal loss (λ = 1), on the output of a projector. ``--config.gmje.fit=em`` trains
the components by stepwise EM instead (GMJE-EM).

  python train.py --config configs/gmje_fashion_mnist.py --workdir workdirs/gmje_fmnist
  python train.py --config configs/gmje_fashion_mnist.py:compare --workdir workdirs/compare/gmje
"""

from configs._fashion_mnist import fashion_mnist_config


def get_config(variant: str = ""):
  c = fashion_mnist_config("gmje", variant)
  # A linear-output projector: the density is over z, which must be able to
  # take negative values (the ResNet's pooled output is post-ReLU); k-NN and
  # the linear probe also report the backbone output h.
  c.model.projector = True
  c.model.projector_dim = 64 if c.model.width_multiplier == 0.125 else 128
  c.model.projector_hidden = 4 * c.model.projector_dim
  c.gmje.num_components = 8
  c.gmje.covariance_type = "diag"  # see docs/gje-design-notes.md, "Full covariances on CPU"
  c.gmje.marginal_weight = 1.0
  return c
