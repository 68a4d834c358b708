"""Loss terms and monitors that several methods share (one definition each).

* :func:`joint_rows`: the joint embeddings ``u = [z_c; z_t]`` (GJE family).
* :func:`marginal_loss`: the sliced Epps-Pulley anti-collapse term toward
  N(0, I) (GJE family, GMJE-MDN, SIGReg).
* :func:`memory_bank_loss`: InfoNCE against a weighted particle bank (GMJE's
  SMC memory bank and its MoCo-queue limit).
* :func:`embedding_statistics`, :func:`collapse_metrics`: the collapse monitors
  every method logs.
* The settings shared by methods with the same head: a predictor's
  (:func:`check_predictor_settings`; JEPA, SimSiam, BYOL) and a memory bank's
  (:func:`check_bank_settings`; GMJE-SMC, MoCo), with their head settings.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.objectives.registry import require


def embedding_statistics(z: jax.Array) -> dict[str, jax.Array]:
  """Collapse monitor: per-dimension std of ``z [B, D]`` (min and mean) and the mean norm."""
  std = jnp.std(z, axis=0)
  return {"z_std_min": jnp.min(std), "z_std_mean": jnp.mean(std), "z_norm_mean": jnp.mean(gm.safe_norm(z))}


def collapse_metrics(outputs) -> dict[str, jax.Array]:
  """:func:`embedding_statistics` and the effective rank of both views' ``z``."""
  z = jnp.concatenate([outputs["z_1"], outputs["z_2"]])
  return {**embedding_statistics(z), "z_effective_rank": gm.effective_rank(z)}


def joint_rows(outputs: Mapping[str, jax.Array], symmetric: bool) -> jax.Array:
  """Joint embeddings ``u = [z_c; z_t]`` of the batch, ``[B or 2B, 2d]``
  (:func:`gjax.math.joint_embeddings`)."""
  return gm.joint_embeddings(outputs["z_1"], outputs["z_2"], symmetric)


def marginal_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, num_slices: int) -> jax.Array:
  """Sliced Epps-Pulley statistic of both views' embeddings toward N(0, I)."""
  return gm.sliced_epps_pulley(rng, jnp.concatenate([outputs["z_1"], outputs["z_2"]]), num_slices)


def memory_bank_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  """SMC-memory-bank GMJE: ``-log`` responsibility of the positive target among
  the positive and the bank's weighted particles (:func:`gjax.math.bank_info_nce`),
  both directions when ``symmetric``. With the MoCo-queue settings this is
  InfoNCE with a queue (design doc, "Contrastive learning as the degenerate
  limit"). Keys are the momentum target's embeddings when there is one
  (``target_z_i``; constants), else the other view's online embeddings, through
  which the gradient flows as through the queries."""
  del rng
  bank = gm.ParticleBank(outputs["bank_particles"], outputs["bank_log_weights"], outputs["bank_filled"],
                         jnp.zeros((), jnp.int32))
  q_1, q_2 = gm.normalize(outputs["z_1"]), gm.normalize(outputs["z_2"])
  # Without a target network the keys are the other view's queries themselves (one graph, as before targets).
  k_1, k_2 = ((gm.normalize(outputs["target_z_1"]), gm.normalize(outputs["target_z_2"]))
              if "target_z_1" in outputs else (q_1, q_2))
  pairs = ((q_1, k_2), (q_2, k_1)) if hparams.symmetric else ((q_1, k_2),)
  losses = [jnp.mean(gm.bank_info_nce(q, k, bank, hparams.temperature)) for q, k in pairs]
  loss = sum(losses) / len(losses)
  metrics = {"loss": loss, "bank_fill": jnp.mean(outputs["bank_filled"].astype(jnp.float32))}
  metrics |= {k: outputs[k] for k in ("bank_ess", "bank_resampled") if k in outputs}
  return loss, {**metrics, **collapse_metrics(outputs)}


def check_predictor_settings(p, config) -> None:
  require(p.predictor_hidden >= 1, f"{config.method}.predictor_hidden", p.predictor_hidden, "must be >= 1")


def predictor_head_settings(p) -> dict[str, Any]:
  return {"hidden": p.predictor_hidden}


def check_bank_settings(b, config) -> None:
  """Checks of a memory bank's settings (GMJE-SMC and MoCo); fields it lacks are MoCo's degenerate ones."""
  m = config.method
  require(b.bank_size >= config.batch_size, f"{m}.bank_size", b.bank_size,
          f"the memory bank must hold at least one batch ({config.batch_size})")
  require(b.temperature > 0, f"{m}.temperature", b.temperature, "must be > 0")
  require(b.get("reweight_strength", 0.0) >= 0, f"{m}.reweight_strength", b.get("reweight_strength"), "must be >= 0")
  require(0 <= b.get("resample_threshold", 0.0) <= 1, f"{m}.resample_threshold", b.get("resample_threshold"),
          "must be in [0, 1]")
  require(b.get("move_std", 0.0) >= 0, f"{m}.move_std", b.get("move_std"), "must be >= 0")


def bank_head_settings(b) -> dict[str, Any]:
  """The bank's size and SMC rule; a section without SMC fields (MoCo) gets the queue's."""
  smc = {name: b.get(name, getattr(gm.FIFO_QUEUE, name))
         for name in ("reweight_strength", "resample_threshold", "move_std")}
  return {"bank_size": b.bank_size, "rule": gm.SMCParams(temperature=b.temperature, **smc)}
