"""Maps ``config.method`` to its objective.

A method is one module: a pure loss ``(outputs, rng, hparams) -> (loss,
metrics)``, the head kind it trains on top of the encoder (a kind of
:mod:`gjax.models`, or one the module registers itself with
:func:`gjax.models.register_head`), its settings with their defaults and the
checks that belong to them, all given to :func:`register`. The config of a run
holds only the chosen method's section (``config.<method>``, built from
:attr:`Objective.defaults`); the trainer and the models know no method by name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gjax.config_checks import require
from gjax.registry import Registry

LossFn = Callable[[Mapping[str, jax.Array], jax.Array, Any], tuple[jax.Array, dict[str, jax.Array]]]
#: ``(hparams, config) -> None``; raises ``ValueError`` (through :func:`require`) naming the field.
CheckFn = Callable[[Any, Any], None]

#: Schedules of a momentum target's EMA rate τ (:func:`target_momentum_at`).
TARGET_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class Objective:
  """A method: its loss, its head, its settings and their checks.

  ``defaults``: the method's hyperparameters (``config.<name>``), every one a
  bool, int, float, str or tuple; the schema check holds a config to their
  types. ``check(hparams, config)``: range checks beside the defaults (the whole
  config is given for checks across sections, e.g. a queue at least one batch
  long). ``head``: the head kind; ``head_settings(hparams)``: its keyword
  settings (default: none). ``target_network``: the method may train against a
  momentum (EMA) copy of the network (its encoder and projector give the targets); its ``defaults`` then carry
  ``target_momentum`` (τ; 0 = no target network, the online network under
  stop-gradient) and ``target_momentum_schedule`` (:data:`TARGET_SCHEDULES`).
  ``may_be_infinite``: settings that may be ``math.inf`` (others must be finite).
  ``model_defaults``: ``config.model`` fields the method needs in its base config
  (I-JEPA: a ViT encoder); recipes set them for their data set.
  """

  name: str
  loss_fn: LossFn
  head: str = "none"
  description: str = ""
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  check: CheckFn | None = None
  head_settings: Callable[[Any], Mapping[str, Any]] | None = None
  target_network: bool = False
  may_be_infinite: tuple[str, ...] = ()  # float settings for which math.inf means something (a limit)
  # config.model fields the method needs other than the shared defaults (I-JEPA: a ViT encoder)
  model_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def validate(self, hparams, config) -> None:
    if self.target_network:
      tau = hparams.target_momentum
      require(0 <= tau < 1, f"{self.name}.target_momentum", tau, "must be in [0, 1) (0 = no target network)")
      require(
        hparams.target_momentum_schedule in TARGET_SCHEDULES,
        f"{self.name}.target_momentum_schedule",
        hparams.target_momentum_schedule,
        f"must be one of {TARGET_SCHEDULES}",
      )
    if self.check is not None:
      self.check(hparams, config)

  def head_kwargs(self, hparams) -> dict[str, Any]:
    return dict(self.head_settings(hparams)) if self.head_settings is not None else {}

  def uses_target(self, hparams) -> bool:
    return self.target_network and hparams.target_momentum > 0


def target_momentum_at(hparams, step, total_steps: int):
  """τ at ``step``: constant, or BYOL's cosine increase from ``target_momentum``
  to 1, ``τ_k = 1 - (1 - τ_0)(cos(π k / K) + 1) / 2`` (Grill et al. 2020, Sec. 3.2)."""
  tau = hparams.target_momentum
  if hparams.target_momentum_schedule == "constant":
    return jnp.asarray(tau, jnp.float32)
  progress = jnp.minimum(step / max(1, total_steps), 1.0)
  return (1.0 - (1.0 - tau) * (jnp.cos(math.pi * progress) + 1.0) / 2.0).astype(jnp.float32)


_METHODS: Registry[Objective] = Registry("method")


def register(objective: Objective) -> Objective:
  if objective.name in _METHODS:
    raise ValueError(f"method {objective.name!r} is already registered")
  if objective.target_network and not {"target_momentum", "target_momentum_schedule"} <= set(objective.defaults):
    raise ValueError(
      f"objective {objective.name!r} has target_network=True: its defaults need "
      "target_momentum and target_momentum_schedule"
    )
  return _METHODS.add(objective.name, objective)


def get_objective(name: str) -> Objective:
  return _METHODS.get(name)


def registered_methods() -> list[str]:
  return _METHODS.names()
