"""Paper-sized GMJE settings (CIFAR-10 / ImageNet); imported by the per-data-set
configs. The backbone, optimiser, batch and schedule are the VJE paper's
(``configs/_vje_paper.py``), so the two families compare on one recipe; the
density sits on a 2-layer projector (linear output, LayerNorm hidden layer)."""

from configs._vje_paper import vje_paper_config


def gmje_paper_config(method: str, dataset: str, encoder: str, stem: str, num_epochs: float, variant: str):
  if method not in ("gmje", "gmje_mdn"):
    raise ValueError(f"gmje_paper_config is for 'gmje' and 'gmje_mdn', got {method!r}")
  c = vje_paper_config(dataset, encoder, stem, num_epochs, variant, method)
  c.model.projector = True
  c.model.projector_hidden = 2048
  c.model.projector_dim = 256
  if method == "gmje":
    c.gmje.num_components = 16
    c.gmje.covariance_type = "full"
  else:
    c.gmje_mdn.num_components = 16
    c.gmje_mdn.hidden = 1024
  if variant == "smoke":
    c.model.projector_hidden = 64
    c.model.projector_dim = 16
    if method == "gmje_mdn":
      c.gmje_mdn.hidden = 32
  return c
