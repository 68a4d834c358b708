"""KL divergences between diagonal Gaussians (VJE Eq. 9 / Eq. 34)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gjax.math import _checks


def kl_diag_gaussian_standard_normal(mean: jax.Array, var: jax.Array) -> jax.Array:
  """``KL(N(μ, diag σ²) || N(0, I)) = ½ Σ_d (σ²_d + μ²_d - 1 - log σ²_d)`` (Eq. 9/34)."""
  _checks.check_last_dims(mean=mean, var=var)
  _checks.check_positive("var", var)
  return 0.5 * jnp.sum(var + jnp.square(mean) - 1.0 - jnp.log(var), axis=-1)


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
