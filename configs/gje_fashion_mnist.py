"""GJE on Fashion-MNIST (CPU-sized): one global joint Gaussian (K = 1) over
``u = [z_c; z_t]`` on a projector's output, plus the sliced Epps-Pulley
marginal loss (λ = 1). Diagonal covariance on CPU (docs/gje-design-notes.md,
"Full covariances on CPU"); ``--config.gje.covariance_type=full`` for the
Schur-complement conditional with cross-view covariance on an accelerator.

  python train.py --config configs/gje_fashion_mnist.py:compare --workdir workdirs/compare/gje
"""

from configs._fashion_mnist import add_density_projector, fashion_mnist_config


def get_config(variant: str = ""):
  c = add_density_projector(fashion_mnist_config("gje", variant))
  c.gje.covariance_type = "diag"
  return c
