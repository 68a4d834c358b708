"""Synthetic multi-modal alignment data (design doc ``gje-formulation.md``,
"Synthetic multi-modal alignment"; GJE paper Figs. 4-5).

Each data set pairs a 1-D context ``x ~ U(-1, 1)`` with a 1-D target on one of
a few branches, ``y = f_k(x) + ε``, ``k`` uniform over the branches and
``ε ~ N(0, 0.05²)`` [paper: "uniform branch probability, Gaussian observation
noise ε = 0.05"]. The conditional ``p(y | x)`` is therefore an equal-weight
mixture of Gaussians at the branch values, known exactly, which is what the
metrics compare against.

* ``A`` "separated branches": three non-overlapping non-linear branches.
* ``B`` "crossing branches": three branches that cross at ``x = 0``.
* ``C`` "noisy ring": the upper and lower halves of the unit circle,
  ``y = ±sqrt(1 - x²)`` (a bimodal conditional; ``x`` uniform rather than the
  angle, so every context is equally represented).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

NOISE_STD = 0.05

Branch = Callable[[np.ndarray], np.ndarray]

BRANCHES: dict[str, tuple[Branch, ...]] = {
  "A": (lambda x: 1.5 + 0.5 * np.sin(np.pi * x), lambda x: x**2 - 0.3, lambda x: -1.5 + 0.5 * np.cos(np.pi * x)),
  "B": (lambda x: 1.2 * x, lambda x: -1.2 * x, lambda x: 0.8 * np.sin(np.pi * x)),
  "C": (lambda x: np.sqrt(np.clip(1.0 - x**2, 0.0, None)), lambda x: -np.sqrt(np.clip(1.0 - x**2, 0.0, None))),
}
NAMES = {"A": "separated branches", "B": "crossing branches", "C": "noisy ring"}


@dataclasses.dataclass(frozen=True)
class MultimodalDataset:
  name: str
  x: np.ndarray  # [N] contexts
  y: np.ndarray  # [N] targets
  branch: np.ndarray  # [N] branch index of each pair

  @property
  def pairs(self) -> np.ndarray:
    """``[N, 2]`` joint vectors ``u = [x; y]`` in float32."""
    return np.stack([self.x, self.y], axis=-1).astype(np.float32)


def _check_name(name: str) -> tuple[Branch, ...]:
  if name not in BRANCHES:
    raise ValueError(f"unknown multimodal data set {name!r}; known: {sorted(BRANCHES)}")
  return BRANCHES[name]


def branch_values(name: str, x) -> np.ndarray:
  """``[N, n_branches]``: every branch's noise-free target at the contexts ``x``."""
  return np.stack([f(np.asarray(x, np.float64)) for f in _check_name(name)], axis=-1)


def make_multimodal(name: str, num_examples: int, seed: int) -> MultimodalDataset:
  """``num_examples`` pairs of data set ``name``, the same for the same seed."""
  branches = _check_name(name)
  if num_examples < 1:
    raise ValueError(f"num_examples must be >= 1, got {num_examples}")
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1.0, 1.0, num_examples)
  k = rng.integers(0, len(branches), num_examples)
  y = branch_values(name, x)[np.arange(num_examples), k] + NOISE_STD * rng.normal(size=num_examples)
  return MultimodalDataset(name, x, y, k)


def sample_true_conditional(name: str, x, num_samples: int, rng: np.random.Generator) -> np.ndarray:
  """``[len(x), num_samples]`` draws from the true ``p(y | x)``."""
  values = branch_values(name, x)
  k = rng.integers(0, values.shape[1], (values.shape[0], num_samples))
  return np.take_along_axis(values, k, axis=1) + NOISE_STD * rng.normal(size=k.shape)


def true_conditional_log_prob(name: str, x, y) -> np.ndarray:
  """``log p(y | x)`` of the generating process, ``[N]``."""
  values = branch_values(name, x)
  z = (np.asarray(y)[:, None] - values) / NOISE_STD
  log_comp = -0.5 * z**2 - np.log(NOISE_STD * np.sqrt(2 * np.pi)) - np.log(values.shape[1])
  top = log_comp.max(axis=1, keepdims=True)
  return (top + np.log(np.exp(log_comp - top).sum(axis=1, keepdims=True)))[:, 0]
