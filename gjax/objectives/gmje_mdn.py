"""GMJE-MDN: a mixture density network on the context predicts ``p(z_t | z_c)``
(design doc ``gje-formulation.md``, "Remedies"; GJE paper Fig. 3).

"The parameter network must take only the context embedding z_c as input to
predict the conditional mixture parameters. These generated parameters are then
evaluated against the target embedding z_t inside the conditional mixture
model. To prevent representation collapse, this conditional objective is
coupled with a marginal loss on z_c." [paper]

Loss: ``-mean log Σ_k π_k(z_c) N(z_t; m_k(z_c), diag s_k(z_c)) + λ · EppsPulley``
(the sliced Gaussianity statistic of the context embeddings toward N(0, I);
``+ γ · log-det barrier`` with ``log_det_weight``),
averaged over both directions when ``symmetric``. With ``stop_gradient_target``
the target is a constant (as VJE treats its observed view).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.objectives.registry import Objective, register, require
from gjax.objectives.shared_terms import (
  ANTI_COLLAPSE_DEFAULTS,
  anti_collapse_loss,
  check_anti_collapse_settings,
  collapse_metrics,
)


def mdn_conditional_log_prob(z_t: jax.Array, logits: jax.Array, means: jax.Array, var: jax.Array) -> jax.Array:
  """``log p(z_t | z_c)`` per example under per-example diagonal mixtures
  (``logits [B, K]``, ``means`` and ``var [B, K, d]``) -> ``[B]``."""
  one = lambda z, l, m, v: gm.mixture_log_prob(z[None], l, m, v, "diag")[0]
  return jax.vmap(one)(z_t, logits, means, var)


def mdn_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  """The GMJE-MDN objective; ``outputs`` has ``z_i`` and ``mdn_{logits,means,var}_i``."""
  directions = ((1, 2), (2, 1)) if hparams.symmetric else ((1, 2),)
  nlls = []
  for c, t in directions:
    target = outputs[f"z_{t}"]
    if hparams.stop_gradient_target:
      target = jax.lax.stop_gradient(target)
    nlls.append(
      -jnp.mean(
        mdn_conditional_log_prob(target, outputs[f"mdn_logits_{c}"], outputs[f"mdn_means_{c}"], outputs[f"mdn_var_{c}"])
      )
    )
  nll = sum(nlls) / len(nlls)
  penalty, penalty_metrics = anti_collapse_loss(outputs, rng, hparams)
  loss = nll + penalty
  weights = jax.nn.softmax(outputs["mdn_logits_1"], axis=-1)
  metrics = {
    "loss": loss,
    "nll": nll,
    **penalty_metrics,
    "mdn_max_weight": jnp.mean(jnp.max(weights, axis=-1)),
    "mdn_std_mean": jnp.mean(jnp.sqrt(outputs["mdn_var_1"])),
  }
  return loss, {**metrics, **collapse_metrics(outputs)}


def check_mdn_settings(m, config) -> None:
  check_anti_collapse_settings(m, config)
  require(m.num_components >= 1, "gmje_mdn.num_components", m.num_components, "must be >= 1 (K)")
  require(m.hidden >= 1, "gmje_mdn.hidden", m.hidden, "must be >= 1")


GMJE_MDN = register(
  Objective(
    "gmje_mdn",
    mdn_loss,
    head="mdn",
    description="GMJE-MDN: a context-only network predicts the conditional mixture.",
    defaults={
      "num_components": 8,
      "hidden": 512,
      **ANTI_COLLAPSE_DEFAULTS,
      "symmetric": True,
      "stop_gradient_target": True,
    },
    check=check_mdn_settings,
    head_settings=lambda m: {"num_components": m.num_components, "hidden": m.hidden},
  )
)
