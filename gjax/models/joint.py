"""The two-view joint-embedding network every method trains: a shared encoder,
an optional projector, and the method's head, applied to both views."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.models.density_heads import GNGDensity, MemoryBank, MixtureDensity, OnlineEMMixtureDensity
from gjax.models.heads import MixtureDensityNetwork, Predictor, Projector, VJEInferenceNetwork
from gjax.models.resnet import build_encoder, embedding_dim

HEADS = ("none", "vje_inference", "joint_density", "mdn", "gng_density", "memory_bank", "predictor")
DENSITY_FITS = ("gradient", "em")


class TwoViewModel(nn.Module):
  """``(view_1, view_2) -> {z_i, <head outputs>_i}`` for ``i`` in 1, 2.

  Each view goes through the encoder separately (as in the PyTorch reference
  implementations), so BatchNorm statistics are per view and global over the
  data-parallel batch. ``z`` is the projector's output when a projector is
  configured, else the encoder's pooled embedding.
  """

  encoder: nn.Module
  projector: nn.Module | None = None
  head: nn.Module | None = None
  density: nn.Module | None = None  # global joint density (GJE / GMJE), applied once per batch

  def embed(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
    """Features of one view: encoder output ``h``, ``z``, and head outputs."""
    h = self.encoder(x, train=train)
    z = self.projector(h, train=train) if self.projector is not None else h
    out = {"h": h, "z": z}
    if self.head is not None:
      out.update(self.head(z, train=train))
    return out

  def __call__(self, view_1: jax.Array, view_2: jax.Array, *, train: bool) -> dict[str, Any]:
    outputs = {}
    for i, view in ((1, view_1), (2, view_2)):
      for key, value in self.embed(view, train=train).items():
        if key != "h":
          outputs[f"{key}_{i}"] = value
    if self.density is not None:
      outputs.update(self.density(outputs, train=train))
    return outputs


def build_two_view_model(model_config, head: str, hparams=None) -> TwoViewModel:
  """Builds the network from ``config.model``, the objective's head name and,
  for density and MDN heads, the method's hyperparameters (``num_components``,
  ``covariance_type``, ``fit``, ``hidden``)."""
  if head not in HEADS:
    raise ValueError(f"unknown head {head!r}; allowed: {HEADS}")
  dtype = jnp.dtype(model_config.compute_dtype)
  encoder = build_encoder(model_config.encoder, model_config.stem, model_config.width_multiplier, dtype=dtype)
  latent_dim = embedding_dim(model_config.encoder, model_config.width_multiplier)
  projector = None
  if model_config.projector:
    projector = Projector(model_config.projector_hidden, model_config.projector_dim,
                          activation=model_config.activation, layers=model_config.projector_layers,
                          norm=model_config.projector_norm, norm_last=model_config.projector_norm_last,
                          dtype=dtype)
    latent_dim = model_config.projector_dim
  head_module = None
  if head == "vje_inference":
    head_module = VJEInferenceNetwork(latent_dim=latent_dim, bottleneck=model_config.bottleneck,
                                      activation=model_config.activation, dtype=dtype)
  if head == "mdn":
    head_module = MixtureDensityNetwork(latent_dim=latent_dim, num_components=hparams.num_components,
                                        hidden=hparams.hidden, activation=model_config.activation, dtype=dtype)
  if head == "predictor":
    head_module = Predictor(dim=latent_dim, hidden=hparams.predictor_hidden, activation=model_config.activation,
                            dtype=dtype)
  density = None
  if head == "joint_density":
    if hparams.fit not in DENSITY_FITS:
      raise ValueError(f"density fit {hparams.fit!r} is not one of {DENSITY_FITS}")
    if hparams.fit == "em":
      density = OnlineEMMixtureDensity(dim=2 * latent_dim, num_components=hparams.num_components,
                                       covariance_type=hparams.covariance_type, symmetric=hparams.symmetric,
                                       step_size=hparams.em_step_size)
    else:
      density = MixtureDensity(dim=2 * latent_dim, num_components=hparams.num_components,
                               covariance_type=hparams.covariance_type)
  if head == "gng_density":
    density = GNGDensity(dim=2 * latent_dim, capacity=hparams.capacity, symmetric=hparams.symmetric,
                         params=gm.GNGParams(hparams.epsilon_winner, hparams.epsilon_neighbor, hparams.max_age,
                                             hparams.insert_every, hparams.insert_error_decay,
                                             hparams.error_decay))
  if head == "memory_bank":
    # The MoCo baseline's section has no SMC fields: its bank is the degenerate one.
    smc = {name: hparams.get(name, getattr(gm.MOCO_QUEUE, name))
           for name in ("reweight_strength", "resample_threshold", "move_std")}
    density = MemoryBank(size=hparams.bank_size, dim=latent_dim,
                         params=gm.SMCParams(temperature=hparams.temperature, **smc))
  return TwoViewModel(encoder=encoder, projector=projector, head=head_module, density=density)
