"""Gaussian mixtures over joint embeddings: density, responsibilities, the
conditional mixture ``p(z_t | z_c)``, sampling and one EM step.

Design doc ``gje-formulation.md``, "Primitives" 3 and 4, and "Remedies"
(prototype GMJE / GMJE-EM). A mixture is ``(logits, means, cov)`` with
``logits [K]`` (normalised inside with ``log_softmax``), ``means [K, d]`` and a
covariance parameter whose form ``covariance_type`` names:

* ``"full"``: lower Cholesky factors ``[K, d, d]``;
* ``"diag"``: variances ``[K, d]``;
* ``"isotropic"``: one variance per component ``[K]``.

Conditional mixtures carry per-example logits ``[B, K]`` and means
``[B, K, d_t]``; every function below accepts either form.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gjax.math import _checks
from gjax.math.gaussian import LOG_2PI


class MixtureParams(NamedTuple):
  logits: jax.Array
  means: jax.Array
  cov: jax.Array


class ConditionalMixture(NamedTuple):
  """``p(z_t | z_c) = Σ_k w_k(z_c) N(z_t; m_k(z_c), S_k)``.

  ``logits [B, K]`` are normalised log-weights ``log w_k(z_c)``, ``means
  [B, K, d_t]``, ``cov`` the conditional covariance parameter (same form as the
  joint's), and ``context_log_prob [B]`` the marginal ``log p(z_c)``.
  """

  logits: jax.Array
  means: jax.Array
  cov: jax.Array
  context_log_prob: jax.Array


#: How a learned mixture is fitted: by the loss's gradient, or by stepwise EM on stop-gradient embeddings.
MIXTURE_FITS = ("gradient", "em")


def joint_embeddings(z_1: jax.Array, z_2: jax.Array, symmetric: bool) -> jax.Array:
  """The joint variable ``u = [z_c; z_t]`` of a batch (GJE design doc, "Joint
  density"): ``[z_1; z_2]`` per row, and with ``symmetric`` also ``[z_2; z_1]``
  below them: ``[B or 2B, d_1 + d_2]``."""
  _checks.check_ndim("z_1", z_1, 2)
  _checks.check_ndim("z_2", z_2, 2)
  if z_1.shape[0] != z_2.shape[0]:
    raise ValueError(f"z_1 {z_1.shape} and z_2 {z_2.shape} must have the same batch size")
  rows = [jnp.concatenate([z_1, z_2], axis=-1)]
  if symmetric:
    rows.append(jnp.concatenate([z_2, z_1], axis=-1))
  return jnp.concatenate(rows, axis=0)


def _check_mixture(logits, means, cov, covariance_type: str) -> tuple[int, int]:
  _checks.check_covariance_type(covariance_type)
  if means.ndim < 2:
    raise ValueError(f"means must have shape [..., K, d]; got {means.shape}")
  k, d = means.shape[-2:]
  if logits.shape[-1] != k:
    raise ValueError(f"logits {logits.shape} and means {means.shape} disagree on K")
  expected = {"full": (k, d, d), "diag": (k, d), "isotropic": (k,)}[covariance_type]
  if cov.shape != expected:
    raise ValueError(
      f"covariance_type={covariance_type!r} needs cov of shape {expected} for K={k}, d={d}; got {cov.shape}"
    )
  if covariance_type != "full":
    _checks.check_positive("cov (variances)", cov)
  return k, d


def _whiten(x, means, cov, covariance_type):
  """Whitened residuals ``[..., K, d]`` and ``½ log|Σ_k|`` ``[K]``."""
  resid = x[..., None, :] - means
  if covariance_type == "full":
    k, d = cov.shape[0], cov.shape[-1]
    flat = jnp.moveaxis(resid.reshape(-1, k, d), 1, 0)  # [K, N, d]
    # Row form of L⁻¹ r: solve y Lᵀ = rᵀ, batched over the K factors.
    white = lax.linalg.triangular_solve(cov, flat, left_side=False, lower=True, transpose_a=True)
    white = jnp.moveaxis(white, 0, 1).reshape(resid.shape)
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(cov, axis1=-2, axis2=-1)), axis=-1)
  elif covariance_type == "diag":
    white = resid * lax.rsqrt(cov)
    half_log_det = 0.5 * jnp.sum(jnp.log(cov), axis=-1)
  else:
    white = resid * lax.rsqrt(cov)[:, None]
    half_log_det = 0.5 * x.shape[-1] * jnp.log(cov)
  return white, half_log_det


def _component_log_probs_and_white(x, logits, means, cov, covariance_type):
  _, d = _check_mixture(logits, means, cov, covariance_type)
  if x.shape[-1] != d:
    raise ValueError(f"x has {x.shape[-1]} features, the mixture has d={d}")
  white, half_log_det = _whiten(x, means, cov, covariance_type)
  log_norm = -0.5 * (d * LOG_2PI + jnp.sum(jnp.square(white), axis=-1)) - half_log_det
  return jax.nn.log_softmax(logits, axis=-1) + log_norm, white


def mixture_component_log_probs(x, logits, means, cov, covariance_type: str = "full"):
  """``log π_k + log N(x; μ_k, Σ_k)`` for every component: ``[..., K]``."""
  return _component_log_probs_and_white(x, logits, means, cov, covariance_type)[0]


def mixture_log_prob(x, logits, means, cov, covariance_type: str = "full"):
  """Joint mixture log-density ``log Σ_k π_k N(x; μ_k, Σ_k)`` (logsumexp): ``[...]``."""
  return jax.nn.logsumexp(mixture_component_log_probs(x, logits, means, cov, covariance_type), axis=-1)


def mixture_responsibilities(x, logits, means, cov, covariance_type: str = "full"):
  """Posterior component probabilities ``γ_k(x) ∝ π_k N(x; μ_k, Σ_k)``: ``[..., K]``."""
  return jax.nn.softmax(mixture_component_log_probs(x, logits, means, cov, covariance_type), axis=-1)


def _split_cov(cov, num_context: int, covariance_type: str):
  """Context-marginal and target-conditional covariance parameters."""
  if covariance_type == "full":
    # The leading block of a Cholesky factor is the Cholesky factor of the
    # leading block of Σ; the trailing block is that of the Schur complement.
    return cov[:, :num_context, :num_context], cov[:, num_context:, num_context:]
  if covariance_type == "diag":
    return cov[:, :num_context], cov[:, num_context:]
  return cov, cov


def mixture_conditional(z_c, logits, means, cov, num_context: int, covariance_type: str = "full") -> ConditionalMixture:
  """The conditional mixture ``p(z_t | z_c)`` (design doc, "Primitives" 3).

  ``w_k(z_c) ∝ π_k N(z_c; μ_k,c, Σ_k,cc)`` and, per component, the
  Schur-complement conditional ``N(m_k, S_k)``. For full covariances the
  triangular solve ``L_k,cc⁻¹ (z_c - μ_k,c)`` that scores the context is reused
  for the conditional mean ``m_k = μ_k,t + L_k,tc L_k,cc⁻¹ (z_c - μ_k,c)``, and
  ``S_k``'s Cholesky factor is the joint factor's ``L_k,tt`` block: no inverse,
  no second factorisation. The context is the leading ``num_context`` dims.
  """
  _, d = _check_mixture(logits, means, cov, covariance_type)
  if means.ndim != 2:
    raise ValueError(f"the joint mixture needs means of shape [K, d]; got {means.shape}")
  _checks.split_indices(num_context, d)
  cov_c, cov_t = _split_cov(cov, num_context, covariance_type)
  log_w, white_c = _component_log_probs_and_white(z_c, logits, means[:, :num_context], cov_c, covariance_type)
  context_log_prob = jax.nn.logsumexp(log_w, axis=-1)
  cond_means = jnp.broadcast_to(means[:, num_context:], z_c.shape[:-1] + means[:, num_context:].shape)
  if covariance_type == "full":
    cond_means = cond_means + jnp.einsum("kij,...kj->...ki", cov[:, num_context:, :num_context], white_c)
  return ConditionalMixture(log_w - context_log_prob[..., None], cond_means, cov_t, context_log_prob)


def mixture_conditional_log_prob(z_t, conditional: ConditionalMixture, covariance_type: str = "full"):
  """``log p(z_t | z_c)`` under a :class:`ConditionalMixture`: ``[B]``."""
  return mixture_log_prob(z_t, conditional.logits, conditional.means, conditional.cov, covariance_type)


def mixture_sample(key, logits, means, cov, covariance_type: str = "full", sample_shape=()):
  """Ancestral samples: a component from ``logits``, then ``μ_k + L_k ε``.

  Works for a joint mixture (``logits [K]``, ``means [K, d]``) and for a
  conditional one (``logits [B, K]``, ``means [B, K, d]``). Returns
  ``sample_shape + logits.shape[:-1] + [d]``.
  """
  means = jnp.asarray(means)
  _, d = _check_mixture(logits, means, cov, covariance_type)
  key_component, key_noise = jax.random.split(key)
  shape = _checks.as_tuple(sample_shape) + logits.shape[:-1]
  component = jax.random.categorical(key_component, logits, shape=shape)
  eps = jax.random.normal(key_noise, shape + (d,), means.dtype)
  pick = (
    lambda table: jnp.take_along_axis(  # noqa: E731  table: [..., K, d]
      jnp.broadcast_to(table, shape + table.shape[-2:]), component[..., None, None], axis=-2
    )[..., 0, :]
  )
  mean = pick(means)
  if covariance_type == "full":
    scaled = jnp.einsum("kij,...j->...ki", cov, eps)  # every factor, then select
    return mean + jnp.take_along_axis(scaled, component[..., None, None], axis=-2)[..., 0, :]
  if covariance_type == "diag":
    return mean + jnp.sqrt(cov)[component] * eps
  return mean + jnp.sqrt(cov)[component][..., None] * eps


class MixtureStatistics(NamedTuple):
  """Batch-averaged sufficient statistics of a mixture under responsibilities ``γ``.

  ``weight [K] = mean_n γ_nk``, ``first [K, d] = mean_n γ_nk x_n``, ``second``
  ``= mean_n γ_nk x_n x_nᵀ`` (``[K, d, d]`` for full covariances, its diagonal
  ``[K, d]`` otherwise). Averages, so two batches combine by a convex sum; this
  is what stepwise (online) EM accumulates (Cappé and Moulines, 2009).
  """

  weight: jax.Array
  first: jax.Array
  second: jax.Array


def mixture_statistics(x, logits, means, cov, covariance_type: str = "full"):
  """E-step on ``x [N, d]``: ``(MixtureStatistics, batch-mean log-likelihood)``."""
  _checks.check_ndim("x", x, 2)
  comp = mixture_component_log_probs(x, logits, means, cov, covariance_type)
  log_likelihood = jnp.mean(jax.nn.logsumexp(comp, axis=-1))
  resp = jax.nn.softmax(comp, axis=-1)
  n = x.shape[0]
  if covariance_type == "full":
    second = jnp.einsum("nk,ni,nj->kij", resp, x, x) / n
  else:
    second = resp.T @ jnp.square(x) / n
  return MixtureStatistics(jnp.mean(resp, axis=0), resp.T @ x / n, second), log_likelihood


def mixture_m_step(
  stats: MixtureStatistics,
  previous: MixtureParams,
  covariance_type: str = "full",
  cov_floor: float = 1e-4,
  min_weight: float = 1e-8,
) -> MixtureParams:
  """M-step from sufficient statistics (design doc, "Remedies": GMJE-EM).

  ``π_k ∝ weight_k``, ``μ_k = first_k / weight_k``, ``Σ_k = second_k /
  weight_k - μ_k μ_kᵀ + cov_floor·I`` (diagonal: the diagonal; isotropic: its
  mean). A component whose weight is below ``min_weight`` keeps its previous
  parameters (an empty component is not moved to the origin).
  """
  _checks.check_positive_scalar("cov_floor", cov_floor)
  k, d = previous.means.shape[-2:]
  alive = stats.weight > min_weight
  safe = jnp.maximum(stats.weight, jnp.finfo(stats.first.dtype).tiny)
  means = stats.first / safe[:, None]
  if covariance_type == "full":
    scatter = stats.second / safe[:, None, None] - means[:, :, None] * means[:, None, :]
    scatter = 0.5 * (scatter + jnp.swapaxes(scatter, -1, -2))
    cov = jnp.linalg.cholesky(scatter + cov_floor * jnp.eye(d, dtype=means.dtype))
    keep_cov = alive[:, None, None]
  else:
    var = jnp.maximum(stats.second / safe[:, None] - jnp.square(means), 0.0)
    cov = (var if covariance_type == "diag" else jnp.mean(var, axis=-1)) + cov_floor
    keep_cov = alive[:, None] if covariance_type == "diag" else alive
  return MixtureParams(
    logits=jnp.where(alive, jnp.log(safe / jnp.sum(stats.weight)), previous.logits),
    means=jnp.where(alive[:, None], means, previous.means),
    cov=jnp.where(keep_cov, cov, previous.cov),
  )


def online_em_step(
  x,
  stats: MixtureStatistics,
  params: MixtureParams,
  covariance_type: str = "full",
  step_size: float = 0.05,
  cov_floor: float = 1e-4,
):
  """One stepwise-EM update on a mini-batch (GMJE-EM on stop-gradient embeddings).

  ``stats ← (1 - ρ) stats + ρ · E-step(x)``, then the M-step of the running
  statistics. With ``ρ = 1`` it is :func:`em_step` on the batch. ``ρ`` may be
  a traced scalar (a schedule under ``jit``). Returns ``(stats, params,
  batch-mean log-likelihood before the step)``.
  """
  if isinstance(step_size, (int, float)) and not 0.0 < step_size <= 1.0:
    raise ValueError(f"step_size must be in (0, 1], got {step_size}")
  batch, log_likelihood = mixture_statistics(x, *params, covariance_type)
  stats = jax.tree_util.tree_map(lambda old, new: (1.0 - step_size) * old + step_size * new, stats, batch)
  return stats, mixture_m_step(stats, params, covariance_type, cov_floor), log_likelihood


def em_step(x, logits, means, cov, covariance_type: str = "full", cov_floor: float = 1e-4):
  """One EM step on a batch ``x [N, d]`` (design doc, "Remedies": GMJE-EM).

  E: responsibilities ``γ_nk``. M: ``N_k = Σ_n γ_nk``, ``π_k = N_k / N``,
  ``μ_k = Σ_n γ_nk x_n / N_k``, ``Σ_k = Σ_n γ_nk (x_n-μ_k)(x_n-μ_k)ᵀ / N_k +
  cov_floor·I`` (diagonal / isotropic: the matching entries or their mean).
  A component with no responsibility keeps its parameters. Returns the new
  :class:`MixtureParams` and the batch-mean log-likelihood before the step.
  """
  _checks.check_positive_scalar("cov_floor", cov_floor)
  stats, log_likelihood = mixture_statistics(x, logits, means, cov, covariance_type)
  return mixture_m_step(stats, MixtureParams(logits, means, cov), covariance_type, cov_floor), log_likelihood
