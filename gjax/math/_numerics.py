"""Numerically safe building blocks shared by every density in ``gjax.math``.

The floors follow the VJE paper (Appendix A, "Stability"): a 1e-6 constant
inside ``normalize`` (``z / max(||z||, eps)``) and as a floor on the variance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Floor on norms and variances (VJE paper, Appendix A "Stability").
EPS = 1e-6


def safe_norm(x: jax.Array, axis: int = -1, keepdims: bool = False) -> jax.Array:
  """Euclidean norm with an exact value everywhere and a finite gradient at 0.

  ``jnp.linalg.norm`` has a NaN gradient at the origin (d sqrt(u)/du = inf times
  0). The double ``where`` keeps the value exact (0 at the origin) and makes the
  gradient 0 there instead of NaN.
  """
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=keepdims)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def normalize(x: jax.Array, eps: float = EPS, axis: int = -1) -> jax.Array:
  """``x / max(||x||, eps)`` (VJE Algorithm 1, line 1-2, with the paper's floor)."""
  return x / jnp.maximum(safe_norm(x, axis=axis, keepdims=True), eps)


def softplus_variance(raw: jax.Array, floor: float = EPS) -> jax.Array:
  """Variance from an unconstrained head output: ``softplus(raw) + floor``.

  VJE Appendix A ("Variance parameterization"): the inference network's
  variance head passes through softplus and a small floor (1e-6).
  """
  return jax.nn.softplus(raw) + floor
