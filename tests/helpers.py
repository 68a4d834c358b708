"""Small shared utilities for the tests."""

import contextlib

import jax
import numpy as np
from jax.test_util import check_grads


def set_fields(config, overrides: dict):
  """Sets ``{"section.field": value}`` overrides on a config, in place; returns it."""
  for key, value in overrides.items():
    *path, last = key.split(".")
    target = config
    for part in path:
      target = target[part]
    target[last] = value
  return config


def random_spd(rng: np.random.Generator, d: int, jitter: float = 0.5) -> np.ndarray:
  a = rng.normal(size=(d, d))
  return a @ a.T / d + jitter * np.eye(d)


def grad_check(fn, args, order: int = 2, eps: float = 1e-4, tol: float = 1e-5):
  """``jax.test_util.check_grads`` in float64, forward and reverse, to ``order``."""
  with jax.enable_x64(True):
    args64 = tuple(np.asarray(a, np.float64) for a in args)
    check_grads(jax.jit(fn), args64, order=order, modes=("fwd", "rev"), eps=eps, atol=tol, rtol=tol)


@contextlib.contextmanager
def x64():
  with jax.enable_x64(True):
    yield
