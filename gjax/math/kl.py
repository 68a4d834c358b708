"""KL divergences between diagonal Gaussians (VJE Eq. 9 / Eq. 34)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gjax.math import _checks


def kl_diag_gaussian_standard_normal_per_dim(mean: jax.Array, var: jax.Array) -> jax.Array:
  """The summands of Eq. 9/34, ``½ (σ²_d + μ²_d - 1 - log σ²_d)``, one per
  dimension (same shape as ``mean``); the per-unit KL of free bits."""
  _checks.check_last_dims(mean=mean, var=var)
  _checks.check_positive("var", var)
  return 0.5 * (var + jnp.square(mean) - 1.0 - jnp.log(var))


def kl_diag_gaussian_standard_normal(mean: jax.Array, var: jax.Array) -> jax.Array:
  """``KL(N(μ, diag σ²) || N(0, I)) = ½ Σ_d (σ²_d + μ²_d - 1 - log σ²_d)`` (Eq. 9/34)."""
  return jnp.sum(kl_diag_gaussian_standard_normal_per_dim(mean, var), axis=-1)


def free_bits_kl(mean: jax.Array, var: jax.Array, free_bits: float) -> jax.Array:
  """KL to ``N(0, I)`` with a floor of ``free_bits`` nats per dimension
  (Kingma et al. 2016, "free bits"), a scalar for the batch ``[..., D]``
  (the mean runs over every leading axis).

  ``Σ_d max(free_bits, mean_b KL_bd)``: a dimension whose batch-mean KL is
  under the floor gets no gradient from the KL, so the prior cannot switch it
  off entirely (the standard remedy for VAE posterior collapse; not in the VJE
  paper). ``free_bits = 0`` gives the batch mean of
  :func:`kl_diag_gaussian_standard_normal` exactly.
  """
  if not free_bits >= 0:
    raise ValueError(f"free_bits must be >= 0, got {free_bits!r}")
  per_unit = kl_diag_gaussian_standard_normal_per_dim(mean, var)
  per_dim = jnp.mean(per_unit.reshape(-1, per_unit.shape[-1]), axis=0)
  return jnp.sum(jnp.maximum(per_dim, free_bits) if free_bits > 0 else per_dim)


def kl_diag_gaussians(mean_q, var_q, mean_p, var_p) -> jax.Array:
  """``KL(N(μ_q, diag σ²_q) || N(μ_p, diag σ²_p))``, summed over the last axis.

  ``½ Σ_d (σ²_q/σ²_p + (μ_p - μ_q)²/σ²_p - 1 + log σ²_p - log σ²_q)``.
  """
  _checks.check_last_dims(mean_q=mean_q, var_q=var_q, mean_p=mean_p, var_p=var_p)
  _checks.check_positive("var_q", var_q)
  _checks.check_positive("var_p", var_p)
  return 0.5 * jnp.sum(
    var_q / var_p + jnp.square(mean_p - mean_q) / var_p - 1.0 + jnp.log(var_p) - jnp.log(var_q),
    axis=-1,
  )
