"""I-JEPA (Assran et al. 2023, "Self-Supervised Learning from Images with a
Joint-Embedding Predictive Architecture", CVPR): from one context block of an
image, predict the representations of M target blocks of the same image.

Per image (Sec. 3): the target encoder (an EMA of the context encoder, ``ξ <- τ
ξ + (1 - τ) θ``) encodes the whole image into patch tokens, layer-normalised
without parameters; M = 4 target blocks and one context block are sampled
(:mod:`gjax.data.masks`, on the device, fixed shapes); the context encoder sees
only the context patches; the predictor, given the context tokens and the
target positions, predicts each target patch's token (:mod:`gjax.models.masked_prediction`).

``predictor_loss``:

* ``"l2"``: the paper's Eq. 1, ``(1/M) Σ_i Σ_{j ∈ B_i} ||ŝ_j - s_j||²``, here
  averaged over the batch, the M·Nt target patches and the D dimensions;
* ``"smooth_l1"``: the reference code's ``F.smooth_l1_loss`` (β = 1, mean);
* ``"mdn"``: the GJE paper's probabilistic predictor in place of the point
  prediction: per target patch, a K-component diagonal Gaussian mixture
  ``p(s_j | context)`` (GMJE-MDN, GJE paper Fig. 3), trained by its negative
  log-likelihood (per patch, summed over D), plus ``marginal_weight`` times the
  sliced Epps-Pulley statistic of the context tokens toward N(0, I) (GMJE-MDN's
  marginal loss on ``z_c``; with ``marginal_weight > 0`` it is added under any
  ``predictor_loss``).

Where a target is multi-modal given the context, the squared loss's minimiser
is the conditional mean, between the modes; the mixture's is the modes
(studies/ijepa_toy).

The momentum τ rises from ``target_momentum`` (0.996, the paper's) to 1 by
BYOL's cosine schedule (the paper: linearly). The ViT must be mean-pooled
(``model.encoder = "vit_<size>"``, not ``_cls``); no projector. Evaluation
(``embed``) uses the online (context) encoder on the whole image, mean-pooled;
the paper evaluates the target encoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.data.masks import MultiBlockMasks
from gjax.objectives.gmje_mdn import mdn_conditional_log_prob
from gjax.objectives.registry import Objective, register, require
from gjax.objectives.shared_terms import collapse_metrics

PREDICTOR_LOSSES = ("l2", "smooth_l1", "mdn")


def smooth_l1(diff: jax.Array) -> jax.Array:
  """Huber with β = 1: ``½ d²`` for ``|d| < 1``, else ``|d| - ½`` (``torch.nn.functional.smooth_l1_loss``)."""
  a = jnp.abs(diff)
  return jnp.where(a < 1.0, 0.5 * jnp.square(diff), a - 0.5)


def mixture_nll_per_patch(target: jax.Array, logits: jax.Array, means: jax.Array, var: jax.Array) -> jax.Array:
  """``-log Σ_k π_k N(s; m_k, diag v_k)`` per target patch: ``target [..., D]``,
  ``logits [..., K]``, ``means``, ``var [..., K, D]`` -> ``[...]``."""
  lead = target.shape[:-1]
  k, d = means.shape[-2:]
  log_prob = mdn_conditional_log_prob(
    target.reshape(-1, d), logits.reshape(-1, k), means.reshape(-1, k, d), var.reshape(-1, k, d)
  )
  return -log_prob.reshape(lead)


def mixture_top_mean(logits: jax.Array, means: jax.Array) -> jax.Array:
  """The mean of each patch's heaviest component, ``[..., D]``."""
  top = jnp.argmax(logits, axis=-1)
  return jnp.take_along_axis(means, top[..., None, None], axis=-2)[..., 0, :]


def ijepa_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  """The I-JEPA objective on :class:`~gjax.models.masked_prediction.IJEPAModel`'s outputs."""
  target = jax.lax.stop_gradient(outputs["masked_target"])
  metrics = {}
  if hparams.predictor_loss == "mdn":
    nll = jnp.mean(
      mixture_nll_per_patch(target, outputs["masked_logits"], outputs["masked_means"], outputs["masked_var"])
    )
    loss = nll
    point = mixture_top_mean(outputs["masked_logits"], outputs["masked_means"])
    weights = jax.nn.softmax(outputs["masked_logits"], axis=-1)
    metrics |= {
      "nll": nll,
      "mdn_max_weight": jnp.mean(jnp.max(weights, axis=-1)),
      "mdn_std_mean": jnp.mean(jnp.sqrt(outputs["masked_var"])),
    }
  else:
    point = outputs["masked_prediction"]
    diff = point - target
    loss = jnp.mean(jnp.square(diff)) if hparams.predictor_loss == "l2" else jnp.mean(smooth_l1(diff))
  if hparams.marginal_weight > 0:
    tokens = outputs["context_tokens"]
    marginal = gm.sliced_epps_pulley(rng, tokens.reshape(-1, tokens.shape[-1]), hparams.num_slices)
    loss = loss + hparams.marginal_weight * marginal
    metrics["marginal"] = marginal
  metrics |= {
    "loss": loss,
    "prediction_mse": jnp.mean(jnp.square(jax.lax.stop_gradient(point) - target)),
    "target_token_std": jnp.mean(jnp.std(target, axis=0)),
  }
  return loss, {**metrics, **collapse_metrics(outputs)}


def masks_from_settings(h) -> MultiBlockMasks:
  return MultiBlockMasks(
    num_targets=int(h.num_targets),
    target_scale=tuple(h.target_scale),
    target_aspect=tuple(h.target_aspect),
    context_scale=tuple(h.context_scale),
    context_aspect=tuple(h.context_aspect),
  )


def check_ijepa_settings(h, config) -> None:
  encoder = config.model.encoder
  require(
    encoder.startswith("vit_") and not encoder.endswith("_cls"),
    "model.encoder",
    encoder,
    "I-JEPA needs a mean-pooled ViT (its patch tokens): a vit_* encoder without _cls",
  )
  require(not config.model.projector, "model.projector", config.model.projector, "I-JEPA has no projector")
  require(
    h.predictor_loss in PREDICTOR_LOSSES, "ijepa.predictor_loss", h.predictor_loss, f"must be one of {PREDICTOR_LOSSES}"
  )
  require(h.predictor_depth >= 1, "ijepa.predictor_depth", h.predictor_depth, "must be >= 1")
  require(
    h.predictor_dim >= 4 and h.predictor_dim % 4 == 0,
    "ijepa.predictor_dim",
    h.predictor_dim,
    "must be a positive multiple of 4 (its 2-D sine-cosine positions)",
  )
  require(
    h.predictor_heads >= 1 and h.predictor_dim % h.predictor_heads == 0,
    "ijepa.predictor_heads",
    h.predictor_heads,
    f"must be >= 1 and divide ijepa.predictor_dim={h.predictor_dim}",
  )
  require(h.num_targets >= 1, "ijepa.num_targets", h.num_targets, "must be >= 1 (M target blocks)")
  require(h.num_components >= 1, "ijepa.num_components", h.num_components, "must be >= 1 (K of the mixture)")
  require(h.marginal_weight >= 0, "ijepa.marginal_weight", h.marginal_weight, "must be >= 0")
  require(h.num_slices >= 1, "ijepa.num_slices", h.num_slices, "must be >= 1")
  for field in ("target_scale", "target_aspect", "context_scale", "context_aspect"):
    require(len(tuple(h[field])) == 2, f"ijepa.{field}", h[field], "must be a (low, high) pair")
  try:
    masks_from_settings(h)
  except ValueError as error:
    raise ValueError(f"config.ijepa mask settings are invalid: {error}") from None


def ijepa_head_settings(h) -> dict[str, Any]:
  return {
    "masks": masks_from_settings(h),
    "predictor_dim": h.predictor_dim,
    "predictor_depth": h.predictor_depth,
    "predictor_heads": h.predictor_heads,
    "num_components": h.num_components if h.predictor_loss == "mdn" else 0,
  }


IJEPA = register(
  Objective(
    "ijepa",
    ijepa_loss,
    head="masked_prediction",
    description="I-JEPA: predict masked target blocks' representations from a context block (ViT).",
    defaults={
      "predictor_dim": 384,
      "predictor_depth": 6,
      "predictor_heads": 12,
      "num_targets": 4,
      "target_scale": (0.15, 0.2),
      "target_aspect": (0.75, 1.5),
      "context_scale": (0.85, 1.0),
      "context_aspect": (1.0, 1.0),
      "predictor_loss": "l2",  # "l2" (Eq. 1) | "smooth_l1" (the reference code) | "mdn" (GMJE-MDN per patch)
      "num_components": 4,  # K of the "mdn" predictor
      "marginal_weight": 0.0,  # λ of the Epps-Pulley term on the context tokens (GMJE-MDN's marginal loss)
      "num_slices": 256,
      "target_momentum": 0.996,
      "target_momentum_schedule": "cosine",
    },
    model_defaults={"encoder": "vit_tiny_cpu", "width_multiplier": 1.0},
    check=check_ijepa_settings,
    head_settings=ijepa_head_settings,
    target_network=True,
  )
)
