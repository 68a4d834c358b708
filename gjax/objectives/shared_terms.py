"""Loss terms and monitors that several methods share (one definition each).

* :func:`joint_rows`: the joint embeddings ``u = [z_c; z_t]`` (GJE family).
* :func:`marginal_loss`: the sliced Epps-Pulley anti-collapse term toward
  N(0, I) (GJE family, GMJE-MDN, SIGReg); :func:`log_det_barrier`, the
  design's log-det alternative; :func:`anti_collapse_loss`, their weighted sum
  with its settings (:data:`ANTI_COLLAPSE_DEFAULTS`,
  :func:`check_anti_collapse_settings`) for the density objectives.
* :func:`memory_bank_loss`: InfoNCE against a weighted particle bank (GMJE's
  SMC memory bank and its MoCo-queue limit).
* :func:`embedding_statistics`, :func:`collapse_metrics`: the collapse monitors
  every method logs.
* The settings shared by methods with the same head: a predictor's
  (:func:`check_predictor_settings`; JEPA, SimSiam, BYOL) and a memory bank's
  (:func:`check_bank_settings`; GMJE-SMC, MoCo), with their head settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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


def log_det_barrier(outputs: Mapping[str, jax.Array]) -> jax.Array:
  """``-(½ log|Σ̂(z_1)| + ½ log|Σ̂(z_2)|)``: each view's batch covariance, floored
  by ``1e-6·I`` (:func:`gjax.math.empirical_half_log_det`).

  A density's NLL of the joint embeddings rewards shrinking them through its
  ``½ log|Σ|`` (the Mahalanobis Trace Trap, and its slow form when a learned
  density follows the embeddings). For a Gaussian, ``½ log|Σ| = ½ log|Σ_cc| +
  ½ log|S|`` (S the Schur complement), so with weight 1 this barrier cancels
  the marginal part and leaves ``½ log|S| - ½ log|Σ_tt|`` = minus the Gaussian
  mutual information of the two views: shrinking is no longer rewarded, only
  the fit of one view given the other (design doc, "Marginal anti-collapse
  loss", the log-det alternative)."""
  return -sum(gm.empirical_half_log_det(outputs[f"z_{i}"], ridge=gm.EPS) for i in (1, 2))


def component_log_det_barrier(u: jax.Array, responsibilities: jax.Array) -> jax.Array:
  """The barrier per mixture component: ``-Σ_k π̂_k (½ log|Σ̂_k(u_c)| + ½ log|Σ̂_k(u_t)|)``.

  ``Σ̂_k(u_c)`` is the covariance of the context half of the joint rows ``u
  [N, 2d]`` weighted by component k's responsibilities ``[N, K]`` (taken as
  given: the caller stops their gradient), ``π̂_k`` their batch mean; floored
  by ``1e-6·I``. A mixture's NLL rewards shrinking each component, and the
  batch barrier (:func:`log_det_barrier`) cancels only the reward for
  shrinking the whole batch: most embeddings can collapse inside one
  component while others, far away, keep the batch covariance large
  (docs/gje-design-notes.md, "Within-component collapse"). For hard
  assignments to components that are each the Gaussian of their own rows,
  the NLL plus this barrier at weight 1 is ``Σ_k π̂_k (-log π̂_k - MI_k) +
  const``: no component gains by shrinking (design doc, "Marginal
  anti-collapse loss", the log-det alternative, per component)."""
  d = u.shape[-1] // 2
  # One QR per component and view, not a vmapped (batched) one: jaxlib runs a batched LAPACK call through
  # its thread pool (ParallelBatchMap), which deadlocked in the 2-core CPU train step (docs/gje-design-notes.md,
  # "Full covariances on CPU: a jaxlib hang").
  half_log_dets = jnp.stack(
    [
      sum(
        gm.empirical_half_log_det(part, ridge=gm.EPS, weights=responsibilities[:, k]) for part in (u[:, :d], u[:, d:])
      )
      for k in range(responsibilities.shape[1])
    ]
  )
  return -jnp.sum(jnp.mean(responsibilities, axis=0) * half_log_dets)


BARRIER_FORMS = ("batch", "component")

ANTI_COLLAPSE_DEFAULTS = {
  "marginal_weight": 1.0,  # λ of the sliced Epps-Pulley statistic toward N(0, I)
  "num_slices": 256,
  "log_det_weight": 0.0,  # γ of the log-det barrier (0: off; 1 cancels the density's reward for shrinking)
}


def anti_collapse_loss(
  outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any, barrier: Callable[[], jax.Array] | None = None
):
  """``λ · EppsPulley(z) + γ · log_det_barrier`` and its metrics (``marginal``,
  and ``log_det_barrier`` when ``γ > 0``; γ = 0 adds nothing to the graph).
  ``barrier``: computes another barrier in place of :func:`log_det_barrier`
  (a mixture's :func:`component_log_det_barrier`)."""
  marginal = marginal_loss(outputs, rng, hparams.num_slices)
  penalty, metrics = hparams.marginal_weight * marginal, {"marginal": marginal}
  if hparams.log_det_weight > 0:
    metrics["log_det_barrier"] = barrier() if barrier is not None else log_det_barrier(outputs)
    penalty = penalty + hparams.log_det_weight * metrics["log_det_barrier"]
  return penalty, metrics


def check_anti_collapse_settings(s, config) -> None:
  m = config.method
  require(s.marginal_weight >= 0, f"{m}.marginal_weight", s.marginal_weight, "must be >= 0")
  require(s.num_slices >= 1, f"{m}.num_slices", s.num_slices, "must be >= 1")
  require(s.log_det_weight >= 0, f"{m}.log_det_weight", s.log_det_weight, "must be >= 0")


def memory_bank_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  """SMC-memory-bank GMJE: ``-log`` responsibility of the positive target among
  the positive and the bank's weighted particles (:func:`gjax.math.bank_info_nce`),
  both directions when ``symmetric``. With the MoCo-queue settings this is
  InfoNCE with a queue (design doc, "Contrastive learning as the degenerate
  limit"). Keys are the momentum target's embeddings when there is one
  (``target_z_i``; constants), else the other view's online embeddings, through
  which the gradient flows as through the queries."""
  del rng
  bank = gm.ParticleBank(
    outputs["bank_particles"], outputs["bank_log_weights"], outputs["bank_filled"], jnp.zeros((), jnp.int32)
  )
  q_1, q_2 = gm.normalize(outputs["z_1"]), gm.normalize(outputs["z_2"])
  # Without a target network the keys are the other view's queries themselves (one graph, as before targets).
  k_1, k_2 = (
    (gm.normalize(outputs["target_z_1"]), gm.normalize(outputs["target_z_2"]))
    if "target_z_1" in outputs
    else (q_1, q_2)
  )
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
  require(
    b.bank_size >= config.batch_size,
    f"{m}.bank_size",
    b.bank_size,
    f"the memory bank must hold at least one batch ({config.batch_size})",
  )
  require(b.temperature > 0, f"{m}.temperature", b.temperature, "must be > 0")
  require(b.get("reweight_strength", 0.0) >= 0, f"{m}.reweight_strength", b.get("reweight_strength"), "must be >= 0")
  require(
    0 <= b.get("resample_threshold", 0.0) <= 1,
    f"{m}.resample_threshold",
    b.get("resample_threshold"),
    "must be in [0, 1]",
  )
  require(b.get("move_std", 0.0) >= 0, f"{m}.move_std", b.get("move_std"), "must be >= 0")


def bank_head_settings(b) -> dict[str, Any]:
  """The bank's size and SMC rule; a section without SMC fields (MoCo) gets the queue's."""
  smc = {
    name: b.get(name, getattr(gm.FIFO_QUEUE, name)) for name in ("reweight_strength", "resample_threshold", "move_std")
  }
  return {"bank_size": b.bank_size, "rule": gm.SMCParams(temperature=b.temperature, **smc)}
