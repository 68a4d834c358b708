"""BYOL (Grill et al., 2020): the online network's prediction of the momentum
target network's projection of the other view.

``L = Σ_{(i,j) ∈ {(1,2),(2,1)}} mean_b (2 - 2 cos(q_i, sg z'_j))`` with ``q_i =
g(z_i)`` the predictor's output on the online projection and ``z'_j`` the
target network's projection (``target_z_j``); the target's parameters follow
the online ones by EMA, ``ξ <- τ ξ + (1 - τ) θ``, with τ raised from
``target_momentum`` to 1 by BYOL's cosine schedule (Sec. 3.2; 0.99 here, the
paper's value for its shorter runs). This module is all BYOL takes: a loss,
settings and the predictor head; the target network is the trainer's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.objectives.registry import Objective, register, require
from gjax.objectives.shared_terms import check_predictor_settings, collapse_metrics, predictor_head_settings


def normalized_prediction_error(q: jax.Array, target: jax.Array) -> jax.Array:
  """``mean_b ||q̂ - sg t̂||² = mean_b (2 - 2 cos(q, t))`` (BYOL Eq. 2)."""
  cosine = jnp.sum(gm.normalize(q) * gm.normalize(jax.lax.stop_gradient(target)), axis=-1)
  return jnp.mean(2.0 - 2.0 * cosine)


def byol_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  del rng, hparams
  terms = [normalized_prediction_error(outputs[f"p_{i}"], outputs[f"target_z_{j}"]) for i, j in ((1, 2), (2, 1))]
  loss = terms[0] + terms[1]
  target_cosine = jnp.mean(jnp.sum(gm.normalize(outputs["z_1"]) * gm.normalize(outputs["target_z_1"]), axis=-1))
  return loss, {"loss": loss, "online_target_cosine": target_cosine, **collapse_metrics(outputs)}


def check_byol_settings(b, config) -> None:
  check_predictor_settings(b, config)
  require(
    b.target_momentum > 0,
    "byol.target_momentum",
    b.target_momentum,
    "must be > 0: BYOL's targets come from its momentum network",
  )


BYOL = register(
  Objective(
    "byol",
    byol_loss,
    head="predictor",
    description="BYOL: predict the momentum target network's projection of the other view.",
    defaults={"predictor_hidden": 512, "target_momentum": 0.99, "target_momentum_schedule": "cosine"},
    check=check_byol_settings,
    head_settings=predictor_head_settings,
    target_network=True,
  )
)
