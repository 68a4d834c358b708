"""Trace-time input validation for ``gjax.math``.

Shapes are static under ``jax.jit``, so shape errors are raised while tracing.
Hyperparameters such as ``nu`` are static Python numbers and are checked the
same way. Array *values* (a variance, say) can only be checked when they are
concrete; under ``jit`` they are tracers and the check is skipped (the floors in
the densities keep those paths finite).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np


def is_concrete(x) -> bool:
  """True when ``x`` holds values now (not a tracer inside jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def check_nu(nu) -> float:
  """Validates the Student-t degrees of freedom; returns it as a float.

  ``nu`` must be a static positive number; ``math.inf`` selects the exact
  Gaussian limit.
  """
  if isinstance(nu, jax.core.Tracer):
    raise TypeError(
      "nu must be a static Python number (it selects the Gaussian limit at "
      f"nu=inf at trace time), got a traced value {nu!r}"
    )
  try:
    value = float(nu)
  except (TypeError, ValueError):
    raise TypeError(f"nu must be a number, got {nu!r}") from None
  if math.isnan(value) or value <= 0:
    raise ValueError(f"nu must be > 0 (or math.inf for the Gaussian limit), got {nu!r}")
  return value


def check_positive_scalar(name: str, value) -> float:
  """A static scalar hyperparameter that must be > 0 and finite."""
  value = float(value)
  if not (value > 0 and math.isfinite(value)):
    raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
  return value


def check_positive(name: str, x) -> None:
  """Raises if a concrete array has an entry that is not > 0."""
  if is_concrete(x):
    arr = np.asarray(x)
    bad = ~(arr > 0)
    if bad.any():
      raise ValueError(
        f"{name} must be > 0 everywhere; got {arr[bad].ravel()[0]!r} "
        f"({int(bad.sum())} of {arr.size} entries not positive)"
      )


def check_last_dims(**arrays) -> int:
  """All arrays share the same last dimension; returns it."""
  dims = {name: np.shape(a)[-1] if np.ndim(a) else None for name, a in arrays.items()}
  if any(d is None for d in dims.values()):
    scalars = [n for n, d in dims.items() if d is None]
    raise ValueError(f"expected arrays with a feature axis, got scalars for {scalars}")
  if len(set(dims.values())) != 1:
    listing = ", ".join(f"{n}: {np.shape(a)}" for n, a in arrays.items())
    raise ValueError(f"last dimensions must match; got shapes {listing}")
  return next(iter(dims.values()))


def check_square(name: str, m) -> int:
  shape = np.shape(m)
  if len(shape) < 2 or shape[-1] != shape[-2]:
    raise ValueError(f"{name} must have shape [..., d, d]; got {shape}")
  return shape[-1]


def check_ndim(name: str, x, ndim: int) -> None:
  if np.ndim(x) != ndim:
    raise ValueError(f"{name} must have {ndim} dimensions; got shape {np.shape(x)}")


def dimension_indices(dims, dim: int, *, proper: bool) -> np.ndarray:
  """Validated index array for ``dims``: an int ``k`` (the first ``k``) or indices.

  With ``proper=True`` the selection must leave at least one dimension out
  (a context/target split); otherwise it may select all ``dim`` of them.
  """
  limit = dim - 1 if proper else dim
  if isinstance(dims, (int, np.integer)):
    if not 0 < int(dims) <= limit:
      raise ValueError(f"split must satisfy 0 < split {'<' if proper else '<='} dim={dim}; got {int(dims)}")
    return np.arange(int(dims))
  idx = np.asarray(dims, dtype=int).ravel()
  if not 0 < idx.size <= limit:
    raise ValueError(f"index set must be non-empty and {'fewer than' if proper else 'at most'} dim={dim}; got {dims!r}")
  if len(set(idx.tolist())) != idx.size:
    raise ValueError(f"indices must be distinct; got {dims!r}")
  if idx.min() < 0 or idx.max() >= dim:
    raise ValueError(f"indices must lie in [0, {dim}); got {dims!r}")
  return idx


def split_indices(split, dim: int) -> tuple[np.ndarray, np.ndarray]:
  """Context and target index arrays for ``split`` over ``dim`` dimensions.

  ``split`` is either an int ``d_c`` (the first ``d_c`` dimensions are the
  context) or a sequence of distinct context indices; the target is the rest.
  """
  context = dimension_indices(split, dim, proper=True)
  return context, np.setdiff1d(np.arange(dim), context)


def check_covariance_type(covariance_type: str) -> str:
  allowed = ("full", "diag", "isotropic")
  if covariance_type not in allowed:
    raise ValueError(f"covariance_type must be one of {allowed}; got {covariance_type!r}")
  return covariance_type


def as_tuple(x: Sequence[int] | int) -> tuple[int, ...]:
  return (x,) if isinstance(x, int) else tuple(x)
