"""Student-t likelihoods of VJE: directional (Eq. 7/24), radial (Eq. 8/29) and
the multivariate form (Eq. 13-14), with the Gaussian limit ``nu = inf`` exact.

``nu`` is a static Python number; ``math.inf`` selects the Gaussian limit by a
separate code path (``(nu + D)/2 · log(1 + q/nu) -> q/2``), never by a large
finite value.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import scipy.special

from gjax.math import _checks
from gjax.math._numerics import EPS, normalize, safe_norm
from gjax.math.gaussian import LOG_2PI, half_log_det_from_tril, mahalanobis_sq


def student_t_kernel(q: jax.Array, nu: float, dim: int) -> jax.Array:
  """``(nu + dim)/2 · log(1 + q/nu)``, or ``q/2`` at ``nu = inf`` (Eq. 14, first term)."""
  nu = _checks.check_nu(nu)
  if math.isinf(nu):
    return 0.5 * q
  return 0.5 * (nu + dim) * jnp.log1p(q / nu)


def student_t_log_normalizer(nu: float, dim: int) -> float:
  """``log C_{nu,D}`` of Eq. 13 for a unit scale matrix.

  ``log Γ((nu+D)/2) - log Γ(nu/2) - (D/2) log(nu π)``; at ``nu = inf`` the
  Gaussian ``-(D/2) log 2π``. Computed in float64 on the host (static). The
  log-gamma difference is taken as ``log Γ(D/2) - log B(nu/2, D/2)``, which
  stays accurate for huge ``nu`` where two ``lgamma`` calls would cancel.
  """
  nu = _checks.check_nu(nu)
  if math.isinf(nu):
    return -0.5 * dim * LOG_2PI
  log_gamma_ratio = math.lgamma(0.5 * dim) - float(scipy.special.betaln(0.5 * nu, 0.5 * dim))
  return log_gamma_ratio - 0.5 * dim * math.log(nu * math.pi)


def multivariate_student_t_log_prob(x, loc, scale_tril, nu: float) -> jax.Array:
  """Normalised ``log t_nu(x; loc, Σ = L Lᵀ)`` (VJE Eq. 13), full scale matrix."""
  d = _checks.check_last_dims(x=x, loc=loc)
  q = mahalanobis_sq(x, loc, scale_tril)
  return student_t_log_normalizer(nu, d) - half_log_det_from_tril(scale_tril) - student_t_kernel(q, nu, d)


def student_t_nll_parts(z, s, var, nu: float) -> tuple[jax.Array, jax.Array]:
  """The two parts of VJE Eq. 14 with ``Σ = diag(var)``: ``(kernel, log_det)``.

  ``kernel = (nu + D)/2 · log(1 + Q/nu)`` with ``Q = Σ_d (z_d - s_d)²/var_d``
  (the fit: how well ``s`` explains ``z`` at the scale ``var``) and
  ``log_det = ½ Σ_d log var_d`` (the normaliser's scale term, which the KL's
  ``-½ Σ log var`` cancels at ``beta = 1``). Their sum is
  :func:`multivariate_student_t_nll`; logging them apart shows whether the fit
  improves (VJE Section 4.2, Eq. 7/24).
  """
  d = _checks.check_last_dims(z=z, s=s, var=var)
  _checks.check_positive("var", var)
  q = jnp.sum(jnp.square(z - s) / var, axis=-1)
  return student_t_kernel(q, nu, d), 0.5 * jnp.sum(jnp.log(var), axis=-1)


def multivariate_student_t_nll(z, s, var, nu: float) -> jax.Array:
  """VJE Eq. 14 with ``Σ = diag(var)`` (constants dropped), for the ablations.

  ``(nu + D)/2 · log(1 + (z-s)ᵀ Σ⁻¹ (z-s)/nu) + ½ log|Σ|``, summed over the
  last axis; at ``nu = inf`` the Gaussian NLL ``½ q + ½ log|Σ|``.
  """
  kernel, log_det = student_t_nll_parts(z, s, var, nu)
  return kernel + log_det


def student_t_directional_parts(z, s, var, nu: float, eps: float = EPS) -> tuple[jax.Array, jax.Array]:
  """``(kernel, log_det)`` of the directional NLL (Eq. 7 / Eq. 24): the fit
  ``(nu + D)/2 · log(1 + Q/nu)`` on unit directions and ``½ Σ_d log σ²_d``;
  their sum is :func:`student_t_directional_nll`."""
  return student_t_nll_parts(normalize(z, eps), normalize(s, eps), var, nu)


def student_t_directional_nll(z, s, var, nu: float, eps: float = EPS) -> jax.Array:
  """The extrinsic directional Student-t NLL of VJE (Eq. 7 / Eq. 24, Algorithm 1).

  ``ẑ = z / max(||z||, eps)``, ``ŝ = s / max(||s||, eps)``,
  ``Q = Σ_d (ŝ_d - ẑ_d)² / σ²_d``,
  ``ℓ_dir = (nu + D)/2 · log(1 + Q/nu) + ½ Σ_d log σ²_d``.
  Zero-norm embeddings map to the zero direction (finite value and gradient).
  """
  kernel, log_det = student_t_directional_parts(z, s, var, nu, eps)
  return kernel + log_det


def student_t_radial_nll(z, s, nu: float, scale: float = 1.0) -> jax.Array:
  """The radial Student-t NLL of VJE on ``Δr = ||z|| - ||s||`` (Eq. 8 / Eq. 29).

  ``ℓ_rad = (nu + 1)/2 · log(1 + Δr² / (nu λ))`` with ``λ = scale`` (the paper
  fixes ``λ = 1``, Section 4.3); Gaussian limit ``Δr² / (2λ)``.
  """
  _checks.check_last_dims(z=z, s=s)
  scale = _checks.check_positive_scalar("scale", scale)
  delta_r = safe_norm(z) - safe_norm(s)
  return student_t_kernel(jnp.square(delta_r) / scale, nu, 1)


def student_t_radial_log_normalizer(nu: float, scale: float = 1.0) -> float:
  """``log`` of the constant of Eq. 28, so that ``log p_rad = this - ℓ_rad``."""
  return student_t_log_normalizer(nu, 1) - 0.5 * math.log(_checks.check_positive_scalar("scale", scale))
