"""The linear probe's parameters and optimiser, shared by the host probe
(:mod:`gjax.eval.linear_probe`) and the probe on sharded features
(:mod:`gjax.eval.sharded`); a module of its own so that neither imports the other."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import optax

#: Columns whose training-set standard deviation is below this are only centred.
STD_FLOOR = 1e-8


class LinearProbe(NamedTuple):
  """A trained probe: ``logits = ((x - mean) / std) @ weights + bias``.

  ``mean``/``std`` are the training-set statistics (zeros/ones when
  standardisation is off); all fields are host numpy arrays.
  """

  weights: np.ndarray  # [D, C]
  bias: np.ndarray  # [C]
  mean: np.ndarray  # [D]
  std: np.ndarray  # [D]
  final_loss: float  # mean training loss over the steps of the last epoch


def make_probe_optimizer(
  learning_rate: float, momentum: float, weight_decay: float, total_steps: int
) -> optax.GradientTransformation:
  """SGD with momentum on a cosine schedule from ``learning_rate`` to 0 over
  ``total_steps``; decoupled weight decay on the weights only (not the bias)."""
  schedule = optax.cosine_decay_schedule(learning_rate, decay_steps=total_steps)
  parts = []
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay, mask={"weights": True, "bias": False}))
  parts.append(optax.sgd(schedule, momentum=momentum))
  return optax.chain(*parts)
