"""The GJE / GMJE family's density objectives (design doc ``gje-formulation.md``).

* ``gje``: one learnable global joint Gaussian over ``u = [z_c; z_t]`` (K = 1,
  full covariance), trained on the joint NLL plus the marginal anti-collapse
  loss; prediction is its Schur-complement conditional.
* ``gmje``: prototype GMJE, K learnable global components (full, diagonal or
  isotropic), same loss (design doc, "Remedies": prototype GMJE).
* ``gje_naive``: the batch-empirical Gaussian NLL whose Mahalanobis term is
  the constant ``2d`` — the Mahalanobis Trace Trap, kept so the collapse can
  be reproduced (design doc, "The Mahalanobis Trace Trap").

Views: view 1 is the context, view 2 the target; with ``symmetric`` both
orders ``[z_1; z_2]`` and ``[z_2; z_1]`` are scored.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.objectives.registry import Objective, register
from gjax.objectives.vje import embedding_statistics


def joint_rows(outputs: Mapping[str, jax.Array], symmetric: bool) -> jax.Array:
  """Joint embeddings ``u = [z_c; z_t]`` of the batch, ``[B or 2B, 2d]``."""
  z_1, z_2 = outputs["z_1"], outputs["z_2"]
  rows = [jnp.concatenate([z_1, z_2], axis=-1)]
  if symmetric:
    rows.append(jnp.concatenate([z_2, z_1], axis=-1))
  return jnp.concatenate(rows, axis=0)


def marginal_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, num_slices: int) -> jax.Array:
  """Sliced Epps-Pulley statistic of both views' embeddings toward N(0, I)."""
  return gm.sliced_epps_pulley(rng, jnp.concatenate([outputs["z_1"], outputs["z_2"]]), num_slices)


def collapse_metrics(outputs) -> dict[str, jax.Array]:
  z = jnp.concatenate([outputs["z_1"], outputs["z_2"]])
  return {**embedding_statistics(z), "z_effective_rank": gm.effective_rank(z)}


def _density_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any, covariance_type: str):
  u = joint_rows(outputs, hparams.symmetric)
  log_p = gm.mixture_log_prob(u, outputs["density_logits"], outputs["density_means"],
                              outputs["density_cov"], covariance_type)
  nll = -jnp.mean(log_p)
  marginal = marginal_loss(outputs, rng, hparams.num_slices)
  loss = nll + hparams.marginal_weight * marginal
  extra = {k: outputs[k] for k in ("gng_active",) if k in outputs}
  return loss, {"loss": loss, "nll": nll, "marginal": marginal, **extra, **collapse_metrics(outputs)}


def joint_density_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  """``-mean log p(u) + λ · EppsPulley(z)`` under the head's global mixture.

  ``outputs`` carries ``z_1, z_2`` and the density head's ``density_logits``,
  ``density_means``, ``density_cov``; ``hparams``: ``covariance_type``,
  ``marginal_weight`` (λ), ``num_slices``, ``symmetric``.
  """
  return _density_loss(outputs, rng, hparams, hparams.covariance_type)


def gng_density_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  """GMJE-GNG: :func:`joint_density_loss` under the GNG's isotropic mixture."""
  return _density_loss(outputs, rng, hparams, "isotropic")


def memory_bank_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  """SMC-memory-bank GMJE: ``-log`` responsibility of the positive target among
  the positive and the bank's weighted particles (:func:`gjax.math.bank_info_nce`),
  both directions when ``symmetric``. With the MoCo-queue settings this is
  InfoNCE with a queue (design doc, "Contrastive learning as the degenerate limit")."""
  del rng
  bank = gm.ParticleBank(outputs["bank_particles"], outputs["bank_log_weights"], outputs["bank_filled"],
                         jnp.zeros((), jnp.int32))
  z_1, z_2 = gm.normalize(outputs["z_1"]), gm.normalize(outputs["z_2"])
  pairs = ((z_1, z_2), (z_2, z_1)) if hparams.symmetric else ((z_1, z_2),)
  losses = [jnp.mean(gm.bank_info_nce(q, k, bank, hparams.temperature)) for q, k in pairs]
  loss = sum(losses) / len(losses)
  metrics = {"loss": loss, "bank_fill": jnp.mean(outputs["bank_filled"].astype(jnp.float32))}
  metrics |= {k: outputs[k] for k in ("bank_ess", "bank_resampled") if k in outputs}
  return loss, {**metrics, **collapse_metrics(outputs)}


def naive_empirical_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  """The trap: NLL of the batch under its own empirical Gaussian (+ optional λ·marginal)."""
  trap = gm.empirical_gaussian_nll(joint_rows(outputs, hparams.symmetric), ridge=hparams.ridge)
  loss = trap.nll
  metrics = {"nll": trap.nll, "mahalanobis": trap.mahalanobis, "half_log_det": trap.half_log_det}
  if hparams.marginal_weight > 0:
    metrics["marginal"] = marginal_loss(outputs, rng, hparams.num_slices)
    loss = loss + hparams.marginal_weight * metrics["marginal"]
  return loss, {"loss": loss, **metrics, **collapse_metrics(outputs)}


def conditional_predictive(density: Mapping[str, jax.Array], z_c: jax.Array,
                           covariance_type: str) -> gm.ConditionalMixture:
  """``p(z_t | z_c)`` of a learned joint density (the Schur-complement
  conditional per component; a single Gaussian for GJE)."""
  return gm.mixture_conditional(z_c, density["density_logits"], density["density_means"],
                                density["density_cov"], z_c.shape[-1], covariance_type)


def sample_joint(key: jax.Array, density: Mapping[str, jax.Array], covariance_type: str,
                 num_samples: int) -> jax.Array:
  """Unconditional samples ``u = [z_c; z_t] ~ p(u)`` from the learned density."""
  return gm.mixture_sample(key, density["density_logits"], density["density_means"],
                           density["density_cov"], covariance_type, (num_samples,))


GJE = register(Objective("gje", joint_density_loss, head="joint_density",
                         description="Gaussian joint embedding: one global joint Gaussian (K=1)."))
GMJE = register(Objective("gmje", joint_density_loss, head="joint_density",
                          description="Prototype GMJE: K global Gaussian components over [z_c; z_t]."))
GMJE_GNG = register(Objective("gmje_gng", gng_density_loss, head="gng_density",
                              description="GMJE-GNG: Growing Neural Gas prototypes as isotropic components."))
GMJE_SMC = register(Objective("gmje_smc", memory_bank_loss, head="memory_bank",
                              description="GMJE with an SMC memory bank of past targets (MoCo queue when degenerate)."))
GJE_NAIVE = register(Objective("gje_naive", naive_empirical_loss, head="none",
                               description="Batch-empirical Gaussian NLL: the Mahalanobis Trace Trap."))
