"""Prototype GMJE on Fashion-MNIST (CPU-sized), at its best measured setting:
K = 4 full-covariance global components over ``u = [z_c; z_t]`` fitted by
stepwise EM, the log-det barrier per component (γ = 1) and the sliced
Epps-Pulley marginal loss (λ = 1), on the output of a projector.

  python train.py --config configs/gmje_fashion_mnist.py:compare --workdir workdirs/compare/gmje

Here (2 CPU cores) ``compare`` (eighth-width ResNet-18, 5 epochs) trained in
8.1-8.5 minutes; it reached k-NN30 73.6 / 80.8 / 76.1 % on
h at seeds 0 / 1 / 2 (studies: the same-budget comparison, row
``gmje_full_em_component_logdet``). The earlier recipe (K = 8 diagonal, fitted
by gradient, no barrier; k-NN30 72.7 %) is

  --config.gmje.num_components=8 --config.gmje.covariance_type=diag --config.gmje.fit=gradient \
  --config.gmje.log_det_weight=0.0 --config.gmje.log_det_form=batch
"""

from configs._fashion_mnist import add_density_projector, fashion_mnist_config


def get_config(variant: str = ""):
  c = add_density_projector(fashion_mnist_config("gmje", variant))
  c.gmje.num_components = 4
  c.gmje.covariance_type = "full"
  c.gmje.fit = "em"
  c.gmje.log_det_weight = 1.0
  c.gmje.log_det_form = "component"
  c.gmje.marginal_weight = 1.0
  return c
