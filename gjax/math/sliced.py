"""Sliced Epps-Pulley Gaussianity statistic (LeJEPA's SIGReg), the marginal
anti-collapse loss of the design doc ("Remedies", "Marginal anti-collapse loss").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gjax.math import _checks
from gjax.math._numerics import normalize


def epps_pulley(x: jax.Array, t_max: float = 5.0, num_knots: int = 17) -> jax.Array:
  """Epps-Pulley statistic of each column of ``x [N, M]`` against N(0, 1).

  ``T = N ∫ |φ_N(t) - e^{-t²/2}|² e^{-t²/2} dt`` with ``φ_N`` the empirical
  characteristic function, by the trapezoid rule on ``num_knots`` points of
  ``[-t_max, t_max]`` (LeJEPA's defaults: 17 knots on [-5, 5]). Returns ``[M]``.
  """
  _checks.check_ndim("x", x, 2)
  _checks.check_positive_scalar("t_max", t_max)
  if num_knots < 3:
    raise ValueError(f"num_knots must be >= 3, got {num_knots}")
  t = jnp.linspace(-t_max, t_max, num_knots, dtype=x.dtype)
  weights = jnp.full((num_knots,), 2 * t_max / (num_knots - 1), x.dtype).at[jnp.array([0, -1])].multiply(0.5)
  gauss = jnp.exp(-0.5 * jnp.square(t))
  args = x[..., None] * t  # [N, M, T]
  real = jnp.mean(jnp.cos(args), axis=0) - gauss
  imag = jnp.mean(jnp.sin(args), axis=0)
  return x.shape[0] * jnp.sum((jnp.square(real) + jnp.square(imag)) * gauss * weights, axis=-1)


def random_unit_directions(key: jax.Array, dim: int, num_slices: int, dtype=jnp.float32) -> jax.Array:
  """``[dim, num_slices]`` directions uniform on the sphere."""
  return normalize(jax.random.normal(key, (num_slices, dim), dtype)).T


def sliced_epps_pulley(
  key: jax.Array, z: jax.Array, num_slices: int = 256, t_max: float = 5.0, num_knots: int = 17
) -> jax.Array:
  """Mean Epps-Pulley statistic of ``z [N, D]`` over random 1-D projections.

  Zero exactly when every projection's empirical characteristic function is
  that of N(0, 1) on the knots; by Cramér-Wold, driving it down on fresh
  random directions each step pushes ``z`` toward N(0, I) (LeJEPA, SIGReg).
  """
  _checks.check_ndim("z", z, 2)
  if num_slices < 1:
    raise ValueError(f"num_slices must be >= 1, got {num_slices}")
  return jnp.mean(epps_pulley(z @ random_unit_directions(key, z.shape[-1], num_slices, z.dtype), t_max, num_knots))


def effective_rank(z: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Effective rank of a batch ``z [N, D]`` (Roy and Vetterli, 2007).

  ``exp(H(p))`` with ``p`` the singular values of the centred batch divided by
  their sum: ``D`` for isotropic embeddings, 1 when they lie on a line, the
  collapse monitor of the design doc's Mahalanobis Trace Trap experiment.
  """
  _checks.check_ndim("z", z, 2)
  z = z.astype(jnp.promote_types(z.dtype, jnp.float32))  # the SVD takes no bfloat16
  singular = jnp.linalg.svd(z - jnp.mean(z, axis=0), compute_uv=False)
  p = singular / jnp.maximum(jnp.sum(singular), eps)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))
