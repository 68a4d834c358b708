"""SimCLR (Chen et al., 2020): NT-Xent over the ``2B`` projected embeddings
of the batch with temperature τ (:func:`gjax.math.nt_xent`)."""

from __future__ import annotations

from typing import Any, Mapping

import jax

from gjax import math as gm
from gjax.objectives.gmje import collapse_metrics
from gjax.objectives.registry import Objective, register


def simclr_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  del rng
  loss = gm.nt_xent(outputs["z_1"], outputs["z_2"], hparams.temperature)
  return loss, {"loss": loss, **collapse_metrics(outputs)}


SIMCLR = register(Objective("simclr", simclr_loss, head="none",
                            description="SimCLR: NT-Xent over both views of the batch."))
