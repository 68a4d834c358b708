"""GMJE-MDN on Fashion-MNIST (CPU-sized): a 2-layer, 256-wide parameter network
on z_c predicts an 8-component diagonal mixture for z_t, with the sliced
Epps-Pulley marginal loss on the context embeddings (lambda = 1).

  python train.py --config configs/gmje_mdn_fashion_mnist.py:compare --workdir workdirs/compare/gmje_mdn

``compare`` (eighth-width ResNet-18, 5 epochs) trained in 23.3 minutes here
(2 CPU cores) and reached k-NN30 78.7 % on h, linear 79.8 % (the same-budget
comparison, row ``gmje_mdn``, seed 0). The default variant (quarter width,
10 epochs) has not been measured.
"""

from configs._fashion_mnist import add_density_projector, fashion_mnist_config


def get_config(variant: str = ""):
  c = add_density_projector(fashion_mnist_config("gmje_mdn", variant))
  c.gmje_mdn.num_components = 8
  c.gmje_mdn.hidden = 256
  c.gmje_mdn.marginal_weight = 1.0
  return c
