"""Gaussian-embedding regularisation (``../shared/papers/gaussian-embeddings-card.txt``;
LeJEPA's SIGReg): ``L = mean_b ||z_1 - z_2||² + λ · D(p(Z) || N(0, I))``,
with ``D`` the sliced Epps-Pulley statistic of both views' embeddings on
random 1-D projections (:func:`gjax.math.sliced_epps_pulley`), the same
marginal loss the GMJE family uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gjax.objectives.registry import Objective, register, require
from gjax.objectives.shared_terms import collapse_metrics, marginal_loss


def sigreg_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  alignment = jnp.mean(jnp.sum(jnp.square(outputs["z_1"] - outputs["z_2"]), axis=-1))
  gaussianity = marginal_loss(outputs, rng, hparams.num_slices)
  loss = alignment + hparams.marginal_weight * gaussianity
  return loss, {"loss": loss, "alignment": alignment, "marginal": gaussianity, **collapse_metrics(outputs)}


def check_sigreg_settings(s, config) -> None:
  del config
  require(s.marginal_weight >= 0, "sigreg.marginal_weight", s.marginal_weight, "must be >= 0")
  require(s.num_slices >= 1, "sigreg.num_slices", s.num_slices, "must be >= 1")


SIGREG = register(
  Objective(
    "sigreg",
    sigreg_loss,
    head="none",
    description="Gaussian embeddings: alignment + λ · sliced Epps-Pulley (SIGReg).",
    defaults={"marginal_weight": 1.0, "num_slices": 256},
    check=check_sigreg_settings,
  )
)
