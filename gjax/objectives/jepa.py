"""JEPA with a squared-error predictor (VJE paper Eq. 40 and Appendix B.4).

``L = ½ Σ_{(i,j) ∈ {(1,2),(2,1)}} mean_b ||z_j - g_φ(z_i)||² / (2λ)``, with
stop-gradient on the target ``z_j``: the limit of VJE with an isotropic
Gaussian likelihood of fixed scale λ, a point-estimate posterior and no KL
(Appendix B.4, "Recovering squared-error objectives"). Without an EMA target
or a regulariser nothing prevents a constant embedding; the baseline is kept
as published so that its collapse, when it happens, is visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gjax.objectives.registry import Objective, register, require
from gjax.objectives.shared_terms import check_predictor_settings, collapse_metrics, predictor_head_settings


def jepa_mse_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  del rng
  terms = [
    jnp.mean(jnp.sum(jnp.square(jax.lax.stop_gradient(outputs[f"z_{j}"]) - outputs[f"p_{i}"]), axis=-1))
    for i, j in ((1, 2), (2, 1))
  ]
  loss = 0.5 * sum(terms) / (2.0 * hparams.scale)
  return loss, {"loss": loss, **collapse_metrics(outputs)}


def check_jepa_settings(j, config) -> None:
  check_predictor_settings(j, config)
  require(j.scale > 0, "jepa.scale", j.scale, "must be > 0")


JEPA = register(
  Objective(
    "jepa",
    jepa_mse_loss,
    head="predictor",
    description="JEPA: squared-error predictor, stop-gradient target (Eq. 40).",
    # scale: λ of N(z_j; g(z_i), λI), the loss is ||z_j - g(z_i)||² / (2λ)
    defaults={"predictor_hidden": 512, "scale": 1.0},
    check=check_jepa_settings,
    head_settings=predictor_head_settings,
  )
)
