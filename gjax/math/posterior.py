"""Posterior and collapse diagnostics for amortised diagonal-Gaussian posteriors.

Pure functions of a batch of posterior means ``mu [N, D]``, variances
``var [N, D]`` and encoder embeddings ``z [N, D]``, for watching VJE's
posterior (Section 4.4) during training and at evaluation:

* active units (Burda et al. 2016, "Importance weighted autoencoders"): unit
  ``d`` is active when ``Var_x(E_q[s_d]) = Var_x(mu_d)`` exceeds a threshold
  (:data:`ACTIVE_UNIT_THRESHOLD` = 0.01, Burda et al.'s value). A posterior
  that ignores its input has no active unit.
* the across-input spread of ``mu`` relative to the posterior's own std:
  ``mean_d std_x(mu_d) / mean_d mean_x σ_d``. Below 1 the posterior means of
  different inputs are closer to each other than one posterior is wide: a
  sample cannot tell the inputs apart.
* the mean pairwise cosine of the directions ``mu / ||mu||`` and
  ``z / ||z||`` (1 when every input points the same way).
* dead channels of ``z``: ``std_x(z_d) <= DEAD_CHANNEL_RATIO · mean_d std_x(z_d)``
  (relative, so it does not depend on the embedding's scale).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gjax.math import _checks
from gjax.math._numerics import EPS, normalize

#: Burda et al. (2016)'s activity threshold on ``Var_x(mu_d)``.
ACTIVE_UNIT_THRESHOLD = 0.01
#: A ``z`` channel is dead when its std over inputs is at most this fraction of the mean std.
DEAD_CHANNEL_RATIO = 0.01


def active_units(mu: jax.Array, threshold: float = ACTIVE_UNIT_THRESHOLD) -> jax.Array:
  """Number of units ``d`` with ``Var_x(mu_d) > threshold`` (Burda et al. 2016); ``mu [N, D]``."""
  _checks.check_ndim("mu", mu, 2)
  if not threshold >= 0:
    raise ValueError(f"threshold must be >= 0, got {threshold!r}")
  return jnp.sum(jnp.var(mu, axis=0) > threshold).astype(jnp.float32)


def mean_pairwise_cosine(x: jax.Array, eps: float = EPS) -> jax.Array:
  """Mean cosine similarity over the ``N (N - 1)`` ordered pairs ``i != j`` of ``x [N, D]``.

  ``(||Σ_i x̂_i||² - Σ_i ||x̂_i||²) / (N (N - 1))`` with ``x̂ = x / max(||x||, eps)``:
  O(N D), no N x N matrix.
  """
  _checks.check_ndim("x", x, 2)
  n = x.shape[0]
  if n < 2:
    raise ValueError(f"mean_pairwise_cosine needs at least 2 rows, got x of shape {x.shape}")
  unit = normalize(x, eps)
  total = jnp.sum(unit, axis=0)
  return (jnp.sum(jnp.square(total)) - jnp.sum(jnp.square(unit))) / (n * (n - 1))


def dead_channels(z: jax.Array, ratio: float = DEAD_CHANNEL_RATIO) -> jax.Array:
  """Number of channels with ``std_x(z_d) <= ratio · mean_d std_x(z_d)``; ``z [N, D]``.

  All channels count as dead when every one is constant.
  """
  _checks.check_ndim("z", z, 2)
  if not ratio >= 0:
    raise ValueError(f"ratio must be >= 0, got {ratio!r}")
  std = jnp.std(z, axis=0)
  return jnp.sum(std <= ratio * jnp.mean(std)).astype(jnp.float32)


def mu_spread_to_posterior_std(mu: jax.Array, var: jax.Array) -> jax.Array:
  """``mean_d std_x(mu_d) / mean_d mean_x sqrt(var_d)`` over ``mu, var [N, D]``."""
  _checks.check_ndim("mu", mu, 2)
  _checks.check_last_dims(mu=mu, var=var)
  if mu.shape != var.shape:
    raise ValueError(f"var has shape {var.shape}, expected mu's shape {mu.shape}")
  return jnp.mean(jnp.std(mu, axis=0)) / jnp.mean(jnp.sqrt(var))


def posterior_statistics(var: jax.Array) -> dict[str, jax.Array]:
  """VJE Table 7's statistics of a diagonal posterior's variance ``var [B, D]``.

  ``var_mean``: mean over latent dimensions of the batch-mean variance;
  ``var_cv``: its coefficient of variation across latent dimensions.
  """
  _checks.check_ndim("var", var, 2)
  per_dim = jnp.mean(var, axis=0)
  mean = jnp.mean(per_dim)
  return {"var_mean": mean, "var_cv": jnp.std(per_dim) / mean}


def posterior_diagnostics(mu: jax.Array, var: jax.Array, z: jax.Array) -> dict[str, jax.Array]:
  """Every diagnostic above for one batch (scalars, jit-able):
  ``active_units``, ``mu_spread_ratio``, ``mu_cosine``, ``z_cosine``, ``z_dead_channels``."""
  _checks.check_last_dims(mu=mu, var=var, z=z)
  return {
    "active_units": active_units(mu),
    "mu_spread_ratio": mu_spread_to_posterior_std(mu, var),
    "mu_cosine": mean_pairwise_cosine(mu),
    "z_cosine": mean_pairwise_cosine(z),
    "z_dead_channels": dead_channels(z),
  }
