"""GMJE-MDN on Fashion-MNIST (CPU-sized): a 2-layer, 256-wide parameter network
on z_c predicts an 8-component diagonal mixture for z_t, with the sliced
Epps-Pulley marginal loss on the context embeddings (λ = 1).

  python train.py --config configs/gmje_mdn_fashion_mnist.py --workdir workdirs/gmje_mdn_fmnist
  python train.py --config configs/gmje_mdn_fashion_mnist.py:compare --workdir workdirs/compare/gmje_mdn
"""

from configs._fashion_mnist import fashion_mnist_config


def get_config(variant: str = ""):
  c = fashion_mnist_config("gmje_mdn", variant)
  # A linear-output projector: the density is over z, which must be able to
  # take negative values (the ResNet's pooled output is post-ReLU); k-NN and
  # the linear probe also report the backbone output h.
  c.model.projector = True
  c.model.projector_dim = 64 if c.model.width_multiplier == 0.125 else 128
  c.model.projector_hidden = 4 * c.model.projector_dim
  c.gmje_mdn.num_components = 8
  c.gmje_mdn.hidden = 256
  c.gmje_mdn.marginal_weight = 1.0
  return c
