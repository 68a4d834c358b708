"""Gaussian densities, Schur-complement conditionals, marginals and sampling.

Covariances are handled through Cholesky factors: ``log|Σ| = 2 Σ log diag L``
and Mahalanobis terms come from triangular solves. No matrix is ever inverted
(design doc ``gje-formulation.md``, "Primitives", items 1, 2 and 4).

Shapes: a point is ``[..., d]``; a full covariance ``[..., d, d]`` with its lower
Cholesky factor ``scale_tril``; a diagonal one is a variance vector ``[..., d]``;
an isotropic one a variance ``[...]``. Leading axes broadcast.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from gjax.math import _checks

LOG_2PI = math.log(2.0 * math.pi)


def tri_solve(scale_tril: jax.Array, residual: jax.Array) -> jax.Array:
  """Solves ``L y = r`` for lower-triangular ``L``, broadcasting batch axes.

  With one shared factor (``L`` of shape ``[d, d]``) all residuals go through a
  single matrix right-hand side, so ``L`` is never copied per example.
  """
  d = _checks.check_square("scale_tril", scale_tril)
  if residual.shape[-1] != d:
    raise ValueError(
      f"residual last dimension {residual.shape[-1]} does not match scale_tril of shape {scale_tril.shape}"
    )
  if scale_tril.ndim == 2:
    flat = residual.reshape(-1, d)
    return solve_triangular(scale_tril, flat.T, lower=True).T.reshape(residual.shape)
  batch = jnp.broadcast_shapes(scale_tril.shape[:-2], residual.shape[:-1])
  lower = jnp.broadcast_to(scale_tril, batch + (d, d))
  rhs = jnp.broadcast_to(residual, batch + (d,))
  return solve_triangular(lower, rhs[..., None], lower=True)[..., 0]


def half_log_det_from_tril(scale_tril: jax.Array) -> jax.Array:
  """``½ log|Σ| = Σ_i log L_ii`` for ``Σ = L Lᵀ``."""
  return jnp.sum(jnp.log(jnp.diagonal(scale_tril, axis1=-2, axis2=-1)), axis=-1)


def mahalanobis_sq(x: jax.Array, mean: jax.Array, scale_tril: jax.Array) -> jax.Array:
  """``(x-μ)ᵀ Σ⁻¹ (x-μ) = ||L⁻¹(x-μ)||²`` by one triangular solve."""
  white = tri_solve(scale_tril, x - mean)
  return jnp.sum(jnp.square(white), axis=-1)


def gaussian_log_prob(x: jax.Array, mean: jax.Array, scale_tril: jax.Array) -> jax.Array:
  """Full-covariance ``log N(x; μ, L Lᵀ)`` (design doc, "Primitives" 1).

  ``-½ d log 2π - Σ log L_ii - ½ ||L⁻¹(x-μ)||²``.
  """
  d = _checks.check_last_dims(x=x, mean=mean)
  if _checks.check_square("scale_tril", scale_tril) != d:
    raise ValueError(f"scale_tril {scale_tril.shape} does not match dimension {d}")
  return -0.5 * (d * LOG_2PI + mahalanobis_sq(x, mean, scale_tril)) - half_log_det_from_tril(scale_tril)


def gaussian_log_prob_from_cov(x: jax.Array, mean: jax.Array, cov: jax.Array) -> jax.Array:
  """``log N(x; μ, Σ)`` for a dense covariance, through its Cholesky factor."""
  _checks.check_square("cov", cov)
  return gaussian_log_prob(x, mean, jnp.linalg.cholesky(cov))


def diag_gaussian_log_prob(x: jax.Array, mean: jax.Array, var: jax.Array) -> jax.Array:
  """``log N(x; μ, diag(var))``, summed over the last axis."""
  _checks.check_last_dims(x=x, mean=mean, var=var)
  _checks.check_positive("var", var)
  return -0.5 * jnp.sum(LOG_2PI + jnp.log(var) + jnp.square(x - mean) / var, axis=-1)


def isotropic_gaussian_log_prob(x: jax.Array, mean: jax.Array, var: jax.Array) -> jax.Array:
  """``log N(x; μ, var·I)`` with one variance per batch entry (shape ``[...]``)."""
  d = _checks.check_last_dims(x=x, mean=mean)
  _checks.check_positive("var", var)
  sq = jnp.sum(jnp.square(x - mean), axis=-1)
  return -0.5 * (d * (LOG_2PI + jnp.log(var)) + sq / var)


def gaussian_marginal(mean: jax.Array, cov: jax.Array, dims) -> tuple[jax.Array, jax.Array]:
  """Marginal ``N(μ_A, Σ_AA)`` over the dimensions ``dims`` (an int = leading)."""
  d = _checks.check_square("cov", cov)
  idx = _checks.dimension_indices(dims, d, proper=False)
  mean, cov = jnp.asarray(mean), jnp.asarray(cov)
  return mean[..., idx], cov[..., idx, :][..., :, idx]


class GaussianConditional(NamedTuple):
  """``p(z_t | z_c) = N(mean, cov)``; ``scale_tril`` is the Cholesky of ``cov``."""

  mean: jax.Array
  cov: jax.Array
  scale_tril: jax.Array


def gaussian_conditional_from_tril(
  z_c: jax.Array, mean: jax.Array, scale_tril: jax.Array, num_context: int
) -> GaussianConditional:
  """Schur-complement conditional from the joint Cholesky factor.

  With ``u = [z_c; z_t]`` and ``L = [[L_cc, 0], [L_tc, L_tt]]``:
  ``Σ_tc Σ_cc⁻¹ = L_tc L_cc⁻¹``, so ``m = μ_t + L_tc L_cc⁻¹ (z_c - μ_c)`` and the
  Schur complement ``S = Σ_tt - Σ_tc Σ_cc⁻¹ Σ_ct = L_tt L_ttᵀ`` with Cholesky
  factor ``L_tt`` (design doc, "Primitives" 2). One triangular solve.
  """
  d = _checks.check_square("scale_tril", scale_tril)
  _checks.split_indices(num_context, d)
  if z_c.shape[-1] != num_context:
    raise ValueError(f"z_c has {z_c.shape[-1]} features but the split has {num_context}")
  l_cc = scale_tril[..., :num_context, :num_context]
  l_tc = scale_tril[..., num_context:, :num_context]
  l_tt = scale_tril[..., num_context:, num_context:]
  white_c = tri_solve(l_cc, z_c - mean[..., :num_context])
  cond_mean = mean[..., num_context:] + jnp.einsum("...ij,...j->...i", l_tc, white_c)
  return GaussianConditional(cond_mean, l_tt @ jnp.swapaxes(l_tt, -1, -2), l_tt)


def _permutation(split, d: int):
  context, target = _checks.split_indices(split, d)
  return np.concatenate([context, target]), len(context)


def gaussian_conditional(z_c: jax.Array, mean: jax.Array, cov: jax.Array, split) -> GaussianConditional:
  """``p(z_t | z_c)`` of a joint Gaussian over any split of its dimensions.

  ``split`` is the number of leading context dimensions or a sequence of
  context indices; the target is the rest, in increasing order.
  """
  d = _checks.check_square("cov", cov)
  perm, num_context = _permutation(split, d)
  mean, cov = jnp.asarray(mean), jnp.asarray(cov)
  cov_p = cov[..., perm, :][..., :, perm]
  return gaussian_conditional_from_tril(z_c, mean[..., perm], jnp.linalg.cholesky(cov_p), num_context)


def gaussian_sample(key: jax.Array, mean: jax.Array, scale_tril: jax.Array, sample_shape=()) -> jax.Array:
  """Reparameterised sample ``μ + L ε``, ``ε ~ N(0, I)``; shape ``sample_shape + batch + [d]``."""
  d = _checks.check_square("scale_tril", scale_tril)
  mean = jnp.asarray(mean)
  batch = jnp.broadcast_shapes(mean.shape[:-1], scale_tril.shape[:-2])
  eps = jax.random.normal(key, _checks.as_tuple(sample_shape) + batch + (d,), mean.dtype)
  return mean + jnp.einsum("...ij,...j->...i", scale_tril, eps)


def reparameterize_diag(mean: jax.Array, var: jax.Array, noise: jax.Array) -> jax.Array:
  """``s = μ + σ ⊙ ε`` (VJE Eq. 33) with given standard-normal ``noise``."""
  _checks.check_last_dims(mean=mean, var=var, noise=noise)
  return mean + jnp.sqrt(var) * noise


def diag_gaussian_sample(key: jax.Array, mean: jax.Array, var: jax.Array, sample_shape=()) -> jax.Array:
  """Reparameterised sample from ``N(μ, diag(var))`` (VJE Eq. 33)."""
  mean = jnp.asarray(mean)
  shape = _checks.as_tuple(sample_shape) + jnp.broadcast_shapes(mean.shape, jnp.shape(var))
  return reparameterize_diag(mean, var, jax.random.normal(key, shape, mean.dtype))


def scale_tril_from_params(raw: jax.Array, min_diag: float = 1e-3) -> jax.Array:
  """Cholesky factor from unconstrained ``[..., d, d]`` parameters.

  Strict lower triangle as is, diagonal ``softplus(raw_ii) + min_diag`` (design
  doc, "Primitives" 4: "Cholesky with positive diagonal and a floor").
  """
  _checks.check_square("raw", raw)
  _checks.check_positive_scalar("min_diag", min_diag)
  diag = jax.nn.softplus(jnp.diagonal(raw, axis1=-2, axis2=-1)) + min_diag
  return jnp.tril(raw, -1) + diag[..., None] * jnp.eye(raw.shape[-1], dtype=raw.dtype)


class EmpiricalGaussianNLL(NamedTuple):
  """Batch-mean NLL under the batch's own Gaussian moments and its parts."""

  nll: jax.Array
  mahalanobis: jax.Array
  half_log_det: jax.Array


def _centred_qr(u: jax.Array, ridge: float, name: str = "u", weights: jax.Array | None = None):
  """QR of the centred batch stacked on ``√(N·ridge)·I``: ``Rᵀ R = N (Σ̂ + ridge·I)``.

  ``Σ̂`` is the batch's biased (1/N) covariance; the whitened batch is
  ``L⁻¹ (u_n - μ̂) = √N · Q_n`` with ``L = Rᵀ/√N``. Working from the data rather
  than from ``Σ̂`` keeps the condition number unsquared in float32. With
  ``weights`` ``w_n >= 0`` the moments are weighted (``μ̂ = Σ w_n u_n / Σ w``,
  ``Σ̂ = Σ w_n (u_n - μ̂)(u_n - μ̂)ᵀ / Σ w``): the rows are scaled by
  ``√(N w_n / Σ w)``.
  Returns ``(Q of the batch rows, ½ log|Σ̂ + ridge·I|)``.
  """
  _checks.check_ndim(name, u, 2)
  n, dim = u.shape
  if ridge < 0:
    raise ValueError(f"ridge must be >= 0, got {ridge!r}")
  if ridge == 0 and n <= dim:
    raise ValueError(
      f"the empirical covariance of {n} samples in {dim} dimensions is singular (need N > dim, or ridge > 0)"
    )
  if weights is None:
    centred = u - jnp.mean(u, axis=0)
  else:
    _checks.check_ndim(f"weights of {name}", weights, 1)
    if weights.shape[0] != n:
      raise ValueError(f"weights have {weights.shape[0]} entries for {n} rows of {name}")
    # All weights 0 (a mixture component no row belongs to) leaves the ridge alone, not 0/0.
    share = weights / jnp.maximum(jnp.sum(weights), jnp.finfo(u.dtype).tiny)
    centred = jnp.sqrt(n * share)[:, None] * (u - share @ u)
  stacked = jnp.concatenate([centred, jnp.sqrt(n * ridge) * jnp.eye(dim, dtype=u.dtype)], axis=0)
  q, r = jnp.linalg.qr(stacked, mode="reduced")
  half_log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(r)))) - 0.5 * dim * jnp.log(float(n))
  return q[:n], half_log_det


def empirical_gaussian_nll(u: jax.Array, ridge: float = 0.0) -> EmpiricalGaussianNLL:
  """The Mahalanobis Trace Trap quantity (design doc, "The Mahalanobis Trace Trap").

  Scores a batch ``u`` of shape ``[N, dim]`` under ``N(μ̂, Σ̂ + ridge·I)`` where
  ``μ̂, Σ̂`` are the batch's own (biased, 1/N) moments. With ``ridge = 0`` the
  batch-mean Mahalanobis term is ``tr(Σ̂⁻¹ Σ̂) = dim`` whatever ``u`` is, so the
  loss reduces to ``½ log|Σ̂|`` plus constants, which shrinking ``u`` lowers.
  Requires ``N > dim`` when ``ridge = 0`` (otherwise ``Σ̂`` is singular).
  Computed from a QR factorisation of the centred batch (no inverse, no
  explicit ``Σ̂``).
  """
  q, half_log_det = _centred_qr(u, ridge)
  maha = jnp.sum(jnp.square(q))  # = (1/N) Σ_n ||√N Q_n||²
  return EmpiricalGaussianNLL(0.5 * u.shape[1] * LOG_2PI + half_log_det + 0.5 * maha, maha, half_log_det)


def empirical_half_log_det(u: jax.Array, ridge: float = 0.0, weights: jax.Array | None = None) -> jax.Array:
  """``½ log|Σ̂ + ridge·I|`` of a batch ``u [N, dim]`` (biased 1/N covariance;
  with ``weights [N]``, ``w_n >= 0``, the weighted covariance
  ``Σ w_n (u_n - μ̂)(u_n - μ̂)ᵀ / Σ w`` about the weighted mean; all 0: the
  ridge alone, ``½ dim log ridge``). Differentiable in ``u``; the weights are
  taken as constants.

  The log-det barrier of the design doc's "Marginal anti-collapse loss"
  alternatives: ``-½ log|Σ̂|`` grows without bound as the batch shrinks in any
  direction, and it is the term a Gaussian density's NLL of the same batch
  rewards lowering (``½ log|Σ̂|``, the Mahalanobis Trace Trap), so adding it
  with weight 1 cancels that reward exactly. Same QR as
  :func:`empirical_gaussian_nll`; requires ``N > dim`` when ``ridge = 0``.
  """
  return _centred_qr(u, ridge, weights=weights)[1]
