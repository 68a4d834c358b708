"""Heads of the baseline methods with their published widths, applied to a
Fashion-MNIST (``configs/_fashion_mnist.py``) or paper-sized
(``configs/_vje_paper.py``) base config; imported by ``configs/<method>_*.py``.

Published heads (at width multiplier 1): SimSiam a 2-layer 2048-d BatchNorm
projector with a normalised output and a 2048-512-2048 predictor; VICReg a
3-layer 4096-d BatchNorm expander; SimCLR / MoCo a 2048-128 BatchNorm
projector; the Gaussian-embedding method (SIGReg) the same; JEPA a 512-wide
predictor on the encoder output (no projector, as VJE); BYOL a 4096-256
BatchNorm projector and a 4096-wide predictor (Grill et al. 2020, Sec. 3.3). At a narrower
backbone every head width is scaled by the same width multiplier (at least
64), so that on the CPU budget the heads do not cost more than the encoder.
"""

from configs._fashion_mnist import fashion_mnist_config
from configs._vje_paper import vje_paper_config

BASELINES = ("jepa", "simsiam", "vicreg", "simclr", "moco", "sigreg", "byol")


def apply_baseline_heads(c, method: str):
  if method not in BASELINES:
    raise ValueError(f"unknown baseline {method!r}; known: {BASELINES}")
  if c.method != method:
    raise ValueError(f"the config trains {c.method!r}; build it for {method!r} (base_config({method!r}))")
  scale = lambda width: max(64, int(width * min(1.0, c.model.width_multiplier)))
  heads = {  # projector: (layers, hidden, out, norm_last) or None; predictor hidden
    "jepa": (None, 512),
    "simsiam": ((2, 2048, 2048, True), 512),
    "vicreg": ((3, 4096, 4096, False), None),
    "simclr": ((2, 2048, 128, False), None),
    "moco": ((2, 2048, 128, False), None),
    "sigreg": ((2, 2048, 128, False), None),
    "byol": ((2, 4096, 256, False), 4096),
  }
  projector, predictor_hidden = heads[method]
  if projector is not None:
    layers, hidden, out, norm_last = projector
    c.model.projector = True
    c.model.projector_layers = layers
    c.model.projector_hidden = scale(hidden)
    c.model.projector_dim = scale(out) if out > 128 else out
    c.model.projector_norm = "batch"
    c.model.projector_norm_last = norm_last
  if predictor_hidden is not None:
    c[method].predictor_hidden = scale(predictor_hidden)
  return c


def baseline_fashion_mnist_config(method: str, variant: str):
  return apply_baseline_heads(fashion_mnist_config(method, variant), method)


def baseline_paper_config(method: str, dataset: str, encoder: str, stem: str, num_epochs: float, variant: str):
  return apply_baseline_heads(vje_paper_config(dataset, encoder, stem, num_epochs, variant, method), method)
