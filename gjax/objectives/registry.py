"""Maps ``config.method`` to its objective.

An objective is a pure function ``(outputs, rng, hparams) -> (loss, metrics)``
plus a description of the heads it needs; adding a method is one module that
calls :func:`register`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax

LossFn = Callable[[Mapping[str, jax.Array], jax.Array, Any], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Objective:
  """A method: its loss and the name of the head it trains on top of the encoder."""

  name: str
  loss_fn: LossFn
  head: str
  description: str = ""


_REGISTRY: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
  if objective.name in _REGISTRY:
    raise ValueError(f"objective {objective.name!r} is already registered")
  _REGISTRY[objective.name] = objective
  return objective


def get_objective(name: str) -> Objective:
  if name not in _REGISTRY:
    raise ValueError(f"unknown method {name!r}; registered methods: {sorted(_REGISTRY)}")
  return _REGISTRY[name]


def registered_methods() -> list[str]:
  return sorted(_REGISTRY)
