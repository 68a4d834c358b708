"""The two-view joint-embedding network every method trains: a shared encoder,
an optional projector, and the method's head, applied to both views.

Heads are registered by kind (:func:`register_head`): a builder
``(latent_dim, model_config, dtype, **settings) -> Head`` gives a per-view
module (applied to each view's ``z``; its outputs get the view's suffix) and/or
a joint module (applied once per batch to all outputs: the global densities
and the memory bank). A method names its kind and the settings
(``Objective.head`` and ``Objective.head_settings``); a method with a new kind
of head registers it in its own module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.models.density_heads import GNGDensity, MemoryBank, MixtureDensity, OnlineEMMixtureDensity
from gjax.models.encoders import build_encoder, embedding_dim  # ResNets and ViTs
from gjax.models.heads import GaussianPosteriorNetwork, MixtureDensityNetwork, Predictor, Projector
from gjax.registry import Registry


class Head(NamedTuple):
  per_view: nn.Module | None = None
  joint: nn.Module | None = None
  # Builds the whole network in place of TwoViewModel, with the same fields and
  # interface (a TwoViewModel subclass): a masked-prediction method (I-JEPA).
  network: Callable[..., TwoViewModel] | None = None


HeadBuilder = Callable[..., Head]
_HEADS: Registry[HeadBuilder] = Registry("head kind")


def register_head(kind: str, builder: HeadBuilder) -> HeadBuilder:
  if kind in _HEADS:
    raise ValueError(f"head kind {kind!r} is already registered")
  return _HEADS.add(kind, builder)


def registered_heads() -> list[str]:
  return _HEADS.names()


def float32_outputs(outputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The network's outputs in float32 whatever its compute dtype: the
  objectives' densities and decompositions (Cholesky, QR, SVD) run in float32,
  as mixed-precision training keeps the loss in float32 (and jax's
  decompositions take no bfloat16)."""
  return {k: v.astype(jnp.float32) if jnp.issubdtype(v.dtype, jnp.floating) else v for k, v in outputs.items()}


class TwoViewModel(nn.Module):
  """``(view_1, view_2) -> {z_i, <head outputs>_i}`` for ``i`` in 1, 2.

  Each view goes through the encoder separately (as in the PyTorch reference
  implementations), so BatchNorm statistics are per view and global over the
  data-parallel batch. ``z`` is the projector's output when a projector is
  configured, else the encoder's pooled embedding. ``targets`` (a momentum
  target network's ``target_z_i``, constants) join the outputs before the
  joint head runs, so a memory bank can queue them.
  """

  encoder: nn.Module
  projector: nn.Module | None = None
  head: nn.Module | None = None
  density: nn.Module | None = None  # the joint head, applied once per batch

  def embed(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
    """Features of one view: encoder output ``h``, ``z``, and head outputs."""
    h = self.encoder(x, train=train)
    z = self.projector(h, train=train) if self.projector is not None else h
    out = {"h": h, "z": z}
    if self.head is not None:
      out.update(self.head(z, train=train))
    return float32_outputs(out)

  def target_embeddings(self, view_1: jax.Array, view_2: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """``{"target_z_i"}``: encoder and projector only (applied with the target network's parameters)."""
    outputs = {}
    for i, view in ((1, view_1), (2, view_2)):
      h = self.encoder(view, train=train)
      outputs[f"target_z_{i}"] = self.projector(h, train=train) if self.projector is not None else h
    return float32_outputs(outputs)

  def __call__(
    self, view_1: jax.Array, view_2: jax.Array, *, train: bool, targets: dict[str, jax.Array] | None = None
  ) -> dict[str, Any]:
    outputs = {}
    for i, view in ((1, view_1), (2, view_2)):
      for key, value in self.embed(view, train=train).items():
        if key != "h":
          outputs[f"{key}_{i}"] = value
    if targets:
      outputs.update(targets)
    if self.density is not None:
      outputs.update(self.density(outputs, train=train))
    return outputs


def build_two_view_model(model_config, head: str, head_settings: dict[str, Any] | None = None) -> TwoViewModel:
  """Builds the network from ``config.model``, a head kind and its settings
  (``Objective.head_kwargs(hparams)``)."""
  builder = _HEADS.get(head)
  dtype = jnp.dtype(model_config.compute_dtype)
  encoder = build_encoder(model_config.encoder, model_config.stem, model_config.width_multiplier, dtype=dtype)
  latent_dim = embedding_dim(model_config.encoder, model_config.width_multiplier)
  projector = None
  if model_config.projector:
    projector = Projector(
      model_config.projector_hidden,
      model_config.projector_dim,
      activation=model_config.activation,
      layers=model_config.projector_layers,
      norm=model_config.projector_norm,
      norm_last=model_config.projector_norm_last,
      dtype=dtype,
    )
    latent_dim = model_config.projector_dim
  built = builder(latent_dim, model_config, dtype, **(head_settings or {}))
  network = built.network if built.network is not None else TwoViewModel
  return network(encoder=encoder, projector=projector, head=built.per_view, density=built.joint)


def _no_head(latent_dim, model_config, dtype) -> Head:
  return Head()


def _diagonal_posterior(latent_dim, model_config, dtype) -> Head:
  return Head(
    per_view=GaussianPosteriorNetwork(
      latent_dim=latent_dim, bottleneck=model_config.bottleneck, activation=model_config.activation, dtype=dtype
    )
  )


def _mdn(latent_dim, model_config, dtype, *, num_components: int, hidden: int) -> Head:
  return Head(
    per_view=MixtureDensityNetwork(
      latent_dim=latent_dim,
      num_components=num_components,
      hidden=hidden,
      activation=model_config.activation,
      dtype=dtype,
    )
  )


def _predictor(latent_dim, model_config, dtype, *, hidden: int) -> Head:
  return Head(per_view=Predictor(dim=latent_dim, hidden=hidden, activation=model_config.activation, dtype=dtype))


def _joint_density(
  latent_dim,
  model_config,
  dtype,
  *,
  num_components: int,
  covariance_type: str,
  fit: str,
  symmetric: bool,
  em_step_size: float,
  em_cov_floor: float,
) -> Head:
  del model_config, dtype  # the density is float32 parameters, not a network
  if fit not in gm.MIXTURE_FITS:
    raise ValueError(f"density fit {fit!r} is not one of {gm.MIXTURE_FITS}")
  if fit == "em":
    return Head(
      joint=OnlineEMMixtureDensity(
        dim=2 * latent_dim,
        num_components=num_components,
        covariance_type=covariance_type,
        symmetric=symmetric,
        step_size=em_step_size,
        cov_floor=em_cov_floor,
      )
    )
  return Head(joint=MixtureDensity(dim=2 * latent_dim, num_components=num_components, covariance_type=covariance_type))


def _gng_density(latent_dim, model_config, dtype, *, capacity: int, symmetric: bool, rule: gm.GNGParams) -> Head:
  del model_config, dtype
  return Head(joint=GNGDensity(dim=2 * latent_dim, capacity=capacity, symmetric=symmetric, params=rule))


def _memory_bank(latent_dim, model_config, dtype, *, bank_size: int, rule: gm.SMCParams) -> Head:
  del model_config, dtype
  return Head(joint=MemoryBank(size=bank_size, dim=latent_dim, params=rule))


for _kind, _builder in (
  ("none", _no_head),
  ("diagonal_posterior", _diagonal_posterior),
  ("mdn", _mdn),
  ("predictor", _predictor),
  ("joint_density", _joint_density),
  ("gng_density", _gng_density),
  ("memory_bank", _memory_bank),
):
  register_head(_kind, _builder)
