"""I-JEPA's network: a ViT context encoder on the visible patches, the narrow
ViT predictor, and the target encoder's patch tokens (Assran et al. 2023,
"Self-Supervised Learning from Images with a Joint-Embedding Predictive
Architecture", Sec. 3 and Fig. 3).

:class:`IJEPAModel` is a :class:`~gjax.models.joint.TwoViewModel` (the
trainer's interface) whose head is the :class:`IJEPAPredictor`: it reads the
first view only, samples the multi-block masks (:mod:`gjax.data.masks`) from
the ``"masks"`` RNG stream inside the jitted step, encodes the context
patches, predicts every target patch's representation, and gathers the
targets from ``target_tokens`` (the momentum target encoder's patch tokens of
the whole image, layer-normalised: :meth:`IJEPAModel.target_embeddings`).

The predictor (Sec. 3, "Predictor"; the reference ``VisionTransformerPredictor``):
the context tokens linearly mapped to the predictor's width, plus its fixed
sine-cosine positions; for each target block, one learned mask token plus the
position of each target patch; the concatenation through pre-norm Transformer
blocks; the mask tokens' outputs mapped back to the encoder's width. With
``num_components > 0`` it outputs instead, per target patch, a K-component
diagonal Gaussian mixture over the target representation (GMJE-MDN's
conditional mixture, GJE paper Fig. 3, applied per patch): mixing logits, means
(a shared centre plus per-component offsets that start apart) and variances
(``softplus + 1e-6``).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gjax.data.masks import MultiBlockMasks, sample_multiblock_masks
from gjax.math import softplus_variance
from gjax.models.joint import Head, TwoViewModel, float32_outputs, register_head
from gjax.models.vit import VIT_SIZES, TransformerBlock, dense_init, gather_tokens, sincos_position_embedding

Dtype = Any


def normalize_tokens(tokens: jax.Array) -> jax.Array:
  """Layer normalisation without parameters over the last axis (I-JEPA's
  ``F.layer_norm(h, (h.size(-1),))`` on the target encoder's outputs), float32."""
  tokens = tokens.astype(jnp.float32)
  mean = jnp.mean(tokens, axis=-1, keepdims=True)
  var = jnp.var(tokens, axis=-1, keepdims=True)
  return (tokens - mean) * jax.lax.rsqrt(var + 1e-6)


class IJEPAPredictor(nn.Module):
  """``(context tokens [B, Nc, D], context indices [B, Nc], target indices [B, M, Nt], grid)``
  -> ``{"prediction": [B, M, Nt, D]}``, or with ``num_components = K > 0`` the
  mixture ``{"logits": [B, M, Nt, K], "means", "var": [B, M, Nt, K, D]}``."""

  encoder_dim: int
  dim: int = 384
  depth: int = 6
  num_heads: int = 12
  num_components: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, context_tokens, context_indices, target_indices, grid, *, train: bool):
    b, m, nt = target_indices.shape
    nc = context_indices.shape[1]
    pos = jnp.asarray(sincos_position_embedding(self.dim, *grid))  # [N, dim]
    dense = lambda width, name, init=dense_init: nn.Dense(
      width, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=init, name=name
    )
    x = dense(self.dim, "embed")(context_tokens) + pos[context_indices].astype(self.dtype)  # [B, Nc, dim]
    mask_token = self.param("mask_token", nn.initializers.truncated_normal(stddev=0.02), (self.dim,), jnp.float32)
    queries = (mask_token + pos[target_indices]).astype(self.dtype)  # [B, M, Nt, dim]
    x = jnp.broadcast_to(x[:, None], (b, m, nc, self.dim)).reshape(b * m, nc, self.dim)
    h = jnp.concatenate([x, queries.reshape(b * m, nt, self.dim)], axis=1)
    for i in range(self.depth):
      h = TransformerBlock(self.dim, self.num_heads, dtype=self.dtype, name=f"block{i}")(h, train=train)
    h = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, param_dtype=jnp.float32, name="norm")(h)[:, nc:]
    h = h.reshape(b, m, nt, self.dim)
    d = self.encoder_dim
    if self.num_components == 0:
      return {"prediction": dense(d, "proj")(h).astype(jnp.float32)}
    k = self.num_components
    logits = dense(k, "logits_head", nn.initializers.zeros)(h).astype(jnp.float32)
    # Each component's mean is a shared centre plus its own offset; the offsets start O(1) apart
    # (LeCun-normal on the normalised features, as GMJE-MDN's head) so the components do not start as one.
    centre = dense(d, "proj")(h).astype(jnp.float32)
    offsets = dense(k * d, "means_head", nn.initializers.lecun_normal())(h).astype(jnp.float32)
    means = centre[..., None, :] + offsets.reshape(b, m, nt, k, d)
    # Variances start small (softplus(-3) = 0.049 against unit-variance targets), so each component first
    # takes the targets nearest it rather than one broad component covering several modes.
    raw = nn.Dense(
      k * d,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      kernel_init=dense_init,
      bias_init=nn.initializers.constant(-3.0),
      name="var_head",
    )(h)
    raw = raw.astype(jnp.float32).reshape(b, m, nt, k, d)
    return {"logits": logits, "means": means, "var": softplus_variance(raw)}


class IJEPAModel(TwoViewModel):
  """The I-JEPA network in the two-view interface: ``view_2`` is not used.

  ``__call__`` outputs ``masked_target [B, M, Nt, D]`` (constants), the
  predictor's outputs as ``masked_<name>``, ``context_tokens [B, Nc, D]``, and
  ``z_1`` / ``z_2``, the mean context token and the mean target token (the
  collapse monitors). Without a momentum target (``targets=None``) the targets
  are the online encoder's own, under stop-gradient. At ``train=False``
  (initialisation, a deterministic loss) the masks come from a fixed key; in
  training from the ``"masks"`` RNG stream, which the train step provides.
  ``embed`` (evaluation) is the encoder's pooled embedding of the whole image.
  """

  masks: MultiBlockMasks = MultiBlockMasks()

  def embed(self, x, *, train: bool = False):
    h = self.encoder(x, train=train)
    return float32_outputs({"h": h, "z": h})

  def target_embeddings(self, view_1, view_2, *, train: bool):
    del view_2
    return {"target_tokens": normalize_tokens(self.encoder(view_1, train=train, return_tokens=True))}

  def __call__(self, view_1, view_2, *, train: bool, targets=None):
    grid = self.encoder.grid(view_1.shape)
    key = self.make_rng("masks") if train else jax.random.PRNGKey(0)
    context_indices, target_indices = sample_multiblock_masks(key, view_1.shape[0], grid, self.masks)
    context = self.encoder(view_1, train=train, patch_indices=context_indices, return_tokens=True)
    if targets is None:
      target_tokens = jax.lax.stop_gradient(self.target_embeddings(view_1, view_2, train=train)["target_tokens"])
    else:
      target_tokens = targets["target_tokens"]
    b, m, nt = target_indices.shape
    target = gather_tokens(target_tokens, target_indices.reshape(b, m * nt)).reshape(b, m, nt, -1)
    predicted = self.head(context, context_indices, target_indices, grid, train=train)
    outputs = {
      "masked_target": target,
      "context_tokens": context,
      "z_1": jnp.mean(context, axis=1),
      "z_2": jnp.mean(target_tokens, axis=1),
      **{f"masked_{name}": value for name, value in predicted.items()},
    }
    return float32_outputs(outputs)


def masked_prediction_head(
  latent_dim,
  model_config,
  dtype,
  *,
  masks: MultiBlockMasks,
  predictor_dim: int,
  predictor_depth: int,
  predictor_heads: int,
  num_components: int,
) -> Head:
  """The head kind ``masked_prediction``: the whole network is :class:`IJEPAModel`
  (context encoder on the visible patches, target encoder, predictor)."""
  if model_config.encoder not in VIT_SIZES:
    raise ValueError(
      f"config.model.encoder={model_config.encoder!r} is invalid: masked prediction needs a ViT, "
      f"one of {sorted(VIT_SIZES)}"
    )
  predictor = IJEPAPredictor(
    encoder_dim=latent_dim,
    dim=predictor_dim,
    depth=predictor_depth,
    num_heads=predictor_heads,
    num_components=num_components,
    dtype=dtype,
  )
  return Head(per_view=predictor, network=functools.partial(IJEPAModel, masks=masks))


register_head("masked_prediction", masked_prediction_head)
