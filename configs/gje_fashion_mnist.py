"""GJE on Fashion-MNIST (CPU-sized): one global joint Gaussian (K = 1) over
``u = [z_c; z_t]`` on a projector's output, plus the sliced Epps-Pulley
marginal loss (lambda = 1). Diagonal covariance on CPU (docs/gje-design-notes.md,
"Full covariances on CPU"); ``--config.gje.covariance_type=full`` for the
Schur-complement conditional with cross-view covariance on an accelerator.

  python train.py --config configs/gje_fashion_mnist.py:compare --workdir workdirs/compare/gje_em_logdet \
      --config.gje.fit=em --config.gje.log_det_weight=1.0

Its measured row is GJE fitted by EM with the log-det barrier (the command
above): 52.5 minutes of training here (2 CPU cores; the sampling comparison
ran after every epoch), k-NN30 70.4 % on h, effective rank of z 62.0 of 64
(the same-budget comparison, row ``gje_em_logdet``).
"""

from configs._fashion_mnist import add_density_projector, fashion_mnist_config


def get_config(variant: str = ""):
  c = add_density_projector(fashion_mnist_config("gje", variant))
  c.gje.covariance_type = "diag"
  return c
