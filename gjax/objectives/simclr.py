"""SimCLR (Chen et al., 2020): NT-Xent over the ``2B`` projected embeddings
of the batch with temperature τ (:func:`gjax.math.nt_xent`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from gjax import math as gm
from gjax.objectives.registry import Objective, register, require
from gjax.objectives.shared_terms import collapse_metrics


def simclr_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  del rng
  loss = gm.nt_xent(outputs["z_1"], outputs["z_2"], hparams.temperature)
  return loss, {"loss": loss, **collapse_metrics(outputs)}


def check_simclr_settings(s, config) -> None:
  del config
  require(s.temperature > 0, "simclr.temperature", s.temperature, "must be > 0")


SIMCLR = register(
  Objective(
    "simclr",
    simclr_loss,
    head="none",
    description="SimCLR: NT-Xent over both views of the batch.",
    defaults={"temperature": 0.2},
    check=check_simclr_settings,
  )
)
