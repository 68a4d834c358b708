"""SimSiam (Chen and He, 2021): ``L = ½ D(p_1, sg z_2) + ½ D(p_2, sg z_1)``,
``D = -cos``; a BatchNorm projector and a bottleneck predictor. Its loss is
the directional limit of VJE (Appendix B.4, "Recovering directional
objectives"). ``output_std`` is SimSiam's own collapse indicator: the
per-dimension std of the normalised output, ``1/sqrt(d)`` when spread and 0
when collapsed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.objectives.registry import Objective, register
from gjax.objectives.shared_terms import check_predictor_settings, collapse_metrics, predictor_head_settings


def negative_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
  """``-mean_b cos(p_b, sg z_b)``."""
  return -jnp.mean(jnp.sum(gm.normalize(p) * gm.normalize(jax.lax.stop_gradient(z)), axis=-1))


def simsiam_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  del rng, hparams
  loss = 0.5 * negative_cosine(outputs["p_1"], outputs["z_2"]) + 0.5 * negative_cosine(outputs["p_2"], outputs["z_1"])
  output_std = jnp.mean(jnp.std(gm.normalize(outputs["z_1"]), axis=0))
  return loss, {"loss": loss, "output_std": output_std, **collapse_metrics(outputs)}


SIMSIAM = register(
  Objective(
    "simsiam",
    simsiam_loss,
    head="predictor",
    description="SimSiam: negative cosine with a predictor and stop-gradient.",
    defaults={"predictor_hidden": 512},
    check=check_predictor_settings,
    head_settings=predictor_head_settings,
  )
)
