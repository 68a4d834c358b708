"""Heads on top of the encoder embedding (Flax Linen).

* ``GaussianPosteriorNetwork``: the amortised inference network g_phi of VJE
  (paper Section 3 "Encoder and inference network", Section 5.1).
* ``Projector``: the optional 2-layer LayerNorm projector of VJE
  (Section 5.2, "Projection heads in VJE"; SimSiam-style, 2048-d).
* ``MLP``: a generic MLP (BatchNorm/LayerNorm, activation) reused by the above
  and by baseline projectors/predictors (SimSiam, VICReg; Section 5.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gjax.math import softplus_variance

Dtype = Any
Activation = str | Callable[..., Any]

ACTIVATIONS: dict[str, Callable[..., Any]] = {
  "relu": nn.relu,
  "gelu": nn.gelu,
  "silu": nn.silu,
  "tanh": nn.tanh,
  "elu": nn.elu,
  "leaky_relu": nn.leaky_relu,
}
NORMS = ("batch", "layer", "none")

_LECUN_NORMAL = nn.initializers.lecun_normal()


def get_activation(activation: Activation) -> Callable[..., Any]:
  """A callable activation, or its name in ``ACTIVATIONS`` (else ``ValueError``)."""
  if callable(activation):
    return activation
  if activation not in ACTIVATIONS:
    raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
  return ACTIVATIONS[activation]


class MLP(nn.Module):
  """Dense layers with an optional norm and activation after each.

  Every hidden layer is ``Dense -> norm -> activation``; the last layer is
  ``Dense`` followed by the norm only if ``norm_last`` and by the activation
  only if ``activate_last``. A Dense followed by BatchNorm has no bias (the BN
  shift makes it redundant). BatchNorm uses momentum 0.9, epsilon 1e-5, like
  the encoder.

  Attributes:
    features: output width of each layer.
    norm: ``"batch"``, ``"layer"`` or ``"none"``.
    activation: a callable or a name in ``ACTIVATIONS``.
    norm_last: also normalise the last layer's output.
    last_norm_affine: scale/shift in the last norm (SimSiam's projector ends in
      a BatchNorm without them).
    activate_last: also apply the activation to the last layer's output.
    dtype: compute dtype; parameters stay float32.
  """

  features: Sequence[int]
  norm: str = "batch"
  activation: Activation = "relu"
  norm_last: bool = False
  last_norm_affine: bool = True
  activate_last: bool = False
  dtype: Dtype = jnp.float32

  def _norm(self, train: bool, affine: bool, name: str):
    if self.norm == "batch":
      return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        use_bias=affine,
        use_scale=affine,
        dtype=self.dtype,
        param_dtype=jnp.float32,
        name=name,
      )
    return nn.LayerNorm(
      epsilon=1e-5, use_bias=affine, use_scale=affine, dtype=self.dtype, param_dtype=jnp.float32, name=name
    )

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.norm not in NORMS:
      raise ValueError(f"unknown norm {self.norm!r}; allowed: {', '.join(NORMS)}")
    if not self.features:
      raise ValueError("MLP needs at least one layer in `features`")
    act = get_activation(self.activation)
    last = len(self.features) - 1
    for i, width in enumerate(self.features):
      use_norm = self.norm != "none" and (i < last or self.norm_last)
      x = nn.Dense(
        width,
        use_bias=not (use_norm and self.norm == "batch"),
        dtype=self.dtype,
        param_dtype=jnp.float32,
        name=f"dense{i}",
      )(x)
      if use_norm:
        affine = i < last or self.last_norm_affine
        x = self._norm(train, affine, name=f"norm{i}")(x)
      if i < last or self.activate_last:
        x = act(x)
    return x


class GaussianPosteriorNetwork(nn.Module):
  """Amortised inference network g_phi: z -> q(s | z) = N(mu, diag(var)).

  VJE paper Section 3 ("Encoder and inference network") and Section 5.1: a
  three-layer bottleneck MLP, each layer ``Dense -> LayerNorm -> activation``
  with widths ``(bottleneck, bottleneck, latent_dim)``, then two linear heads
  for the posterior mean and variance. The variance is
  ``softplus(raw) + 1e-6`` (Appendix A, "Variance parameterization"). The paper
  uses ``bottleneck`` 512 with ResNet-50 and 128 with ResNet-18.

  Returns ``{"mu": [B, D], "var": [B, D], "var_raw": [B, D]}`` in float32,
  ``D = latent_dim`` (the encoder embedding dim; no projection head).
  """

  latent_dim: int
  bottleneck: int = 512
  activation: Activation = "relu"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z, train: bool = False):
    h = MLP(
      (self.bottleneck, self.bottleneck, self.latent_dim),
      norm="layer",
      activation=self.activation,
      norm_last=True,
      activate_last=True,
      dtype=self.dtype,
      name="trunk",
    )(z, train=train)
    dense = lambda name: nn.Dense(self.latent_dim, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    mu = dense("mu_head")(h).astype(jnp.float32)
    raw = dense("var_head")(h).astype(jnp.float32)
    return {"mu": mu, "var": softplus_variance(raw), "var_raw": raw}


class Projector(nn.Module):
  """Projector MLP: ``layers - 1`` hidden ``Dense -> norm -> activation``
  blocks of width ``hidden_dim``, then ``Dense(out_dim)`` (normalised too with
  ``norm_last``, without scale/shift).

  The default (2 layers, LayerNorm, linear output) is the VJE paper's
  Section 5.2 projector ("Projection heads in VJE": LayerNorm instead of
  BatchNorm so posterior statistics do not depend on the batch); the baselines
  use their own: SimSiam 2 layers with BatchNorm on the output too, VICReg 3
  layers of 4096 with BatchNorm, SimCLR 2 layers.
  """

  hidden_dim: int = 2048
  out_dim: int = 2048
  activation: Activation = "relu"
  layers: int = 2
  norm: str = "layer"
  norm_last: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.layers < 1:
      raise ValueError(f"projector layers must be >= 1, got {self.layers}")
    widths = (self.hidden_dim,) * (self.layers - 1) + (self.out_dim,)
    return MLP(
      widths,
      norm=self.norm,
      activation=self.activation,
      norm_last=self.norm_last,
      last_norm_affine=False,
      dtype=self.dtype,
      name="mlp",
    )(x, train=train)


class Predictor(nn.Module):
  """The predictor ``g_φ`` of JEPA (Eq. 40) and SimSiam: ``Dense(hidden) ->
  BatchNorm -> ReLU -> Dense(dim)`` (SimSiam's bottleneck predictor).
  Returns ``{"p": [B, dim]}``."""

  dim: int
  hidden: int = 512
  activation: Activation = "relu"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z, train: bool = False):
    p = MLP((self.hidden, self.dim), norm="batch", activation=self.activation, dtype=self.dtype, name="mlp")(
      z, train=train
    )
    return {"p": p.astype(jnp.float32)}


class MixtureDensityNetwork(nn.Module):
  """GMJE-MDN's parameter network: ``z_c -> p(z_t | z_c)``, a K-component
  diagonal Gaussian mixture (design doc, "Remedies": GMJE-MDN; GJE paper Fig. 3:
  "the parameter network must take only the context embedding z_c as input").

  A two-layer ``Dense -> LayerNorm -> activation`` trunk, then linear heads for
  the mixing logits ``[B, K]``, means ``[B, K, D]`` and variances ``[B, K, D]``
  (``softplus(raw) + 1e-6``). The means are a residual on ``z_c`` so that an
  untrained network predicts "the target is near the context".
  """

  latent_dim: int
  num_components: int = 8
  hidden: int = 512
  activation: Activation = "relu"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z, train: bool = False):
    if self.num_components < 1:
      raise ValueError(f"num_components must be >= 1, got {self.num_components}")
    k, d = self.num_components, self.latent_dim
    h = MLP(
      (self.hidden, self.hidden),
      norm="layer",
      activation=self.activation,
      norm_last=True,
      activate_last=True,
      dtype=self.dtype,
      name="trunk",
    )(z, train=train)
    dense = lambda width, name, init=_LECUN_NORMAL: nn.Dense(
      width, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=init, name=name
    )
    logits = dense(k, "logits_head", nn.initializers.zeros)(h).astype(jnp.float32)
    offsets = dense(k * d, "means_head")(h).astype(jnp.float32).reshape(z.shape[:-1] + (k, d))
    raw = dense(k * d, "var_head")(h).astype(jnp.float32).reshape(z.shape[:-1] + (k, d))
    means = z.astype(jnp.float32)[..., None, :] + offsets
    return {"mdn_logits": logits, "mdn_means": means, "mdn_var": softplus_variance(raw)}
