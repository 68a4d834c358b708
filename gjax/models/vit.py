"""Vision Transformer encoders (Flax Linen), without a classifier.

Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale" (ICLR): the image is cut into ``p x p`` patches, each
linearly embedded (a convolution with kernel and stride ``p``, Eq. 1), position
embeddings are added, and a stack of pre-norm Transformer blocks follows,
``x <- x + MSA(LN(x))``, ``x <- x + MLP(LN(x))`` (Eqs. 2-3; the MLP is
``Dense(4D) -> GELU -> Dense(D)``), then a final LayerNorm (Eq. 4). The
representation is the CLS token's output (``pool="cls"``, the paper's) or the
mean of the patch tokens (``pool="mean"``, as MAE and I-JEPA evaluate).

Position embeddings are learned (the paper's, ``[1, 1 + N, D]`` with a CLS
token) or the fixed 2-D sine-cosine table of MAE / I-JEPA
(:func:`sincos_position_embedding`). Stochastic depth (Huang et al. 2016,
"drop-path") drops a block's residual branch per example with a rate rising
linearly over the depth, in training only.

Sizes (Table 1 of the paper; Ti and S from DeiT, Touvron et al. 2021): Ti
192/12/3, S 384/12/6, B 768/12/12, L 1024/24/16 (width / depth / heads), MLP
ratio 4, patch 16; ``vit_tiny_cpu`` (96/4/4, patch 4: 7 x 7 patches on 28 x 28
Fashion-MNIST) trains on a CPU; ``vit_smoke`` (32/1/2, patch 4) is for smoke
runs and tests. Registered names (:data:`VIT_ENCODERS`):
``vit_<size>`` is mean pooling with the fixed sine-cosine table;
``vit_<size>_cls`` is the paper's CLS token with learned position embeddings
(whose parameter counts match the published ones: the tests).

``__call__(x, train=..., patch_indices=None, return_tokens=False)``: with
``patch_indices [B, n]`` only those patches (row-major on the patch grid) enter
the Transformer, after their position embeddings are added (the context
encoder of I-JEPA); ``return_tokens`` returns the patch tokens ``[B, n, D]``
instead of the pooled ``[B, D]``. Both are float32 whatever the compute dtype
(parameters stay float32, as in the ResNets).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

#: name -> (width D, depth, heads, patch size).
VIT_SIZES = {
  "vit_ti16": (192, 12, 3, 16),
  "vit_s16": (384, 12, 6, 16),
  "vit_b16": (768, 12, 12, 16),
  "vit_l16": (1024, 24, 16, 16),
  "vit_tiny_cpu": (96, 4, 4, 4),
  "vit_smoke": (32, 1, 2, 4),  # one block: fast-compiling smoke and test runs (as resnet10)
}
#: Every registered ViT encoder name: ``<size>`` (mean pooling, sine-cosine
#: positions) and ``<size>_cls`` (CLS token, learned positions).
VIT_ENCODERS = tuple(sorted(list(VIT_SIZES) + [f"{name}_cls" for name in VIT_SIZES]))
POOLS = ("mean", "cls")
POSITION_EMBEDDINGS = ("sincos", "learned")
MLP_RATIO = 4.0

# As I-JEPA and MAE initialise their Linear layers (timm's trunc_normal_(std=0.02)).
dense_init = nn.initializers.truncated_normal(stddev=0.02)


def sincos_position_embedding_1d(dim: int, positions: np.ndarray) -> np.ndarray:
  """``[len(positions), dim]``: ``sin(p ω_k)`` then ``cos(p ω_k)``, ``ω_k = 10000^{-k/(dim/2)}``
  (Vaswani et al. 2017, Sec. 3.5, with the sines and cosines in two halves as MAE writes them)."""
  if dim % 2:
    raise ValueError(f"a 1-D sine-cosine embedding needs an even width, got {dim}")
  omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
  angles = np.asarray(positions, np.float64).reshape(-1)[:, None] * omega[None, :]
  return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_position_embedding(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
  """The fixed 2-D table ``[grid_h * grid_w, dim]`` of MAE and I-JEPA (row-major
  patches): the first half of the width embeds the patch's column, the second
  half its row (MAE's ``get_2d_sincos_pos_embed``). Needs ``dim % 4 == 0``."""
  if dim % 4:
    raise ValueError(f"a 2-D sine-cosine position embedding needs a width divisible by 4, got {dim}")
  rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
  return np.concatenate(
    [sincos_position_embedding_1d(dim // 2, cols), sincos_position_embedding_1d(dim // 2, rows)], axis=1
  ).astype(np.float32)


class DropPath(nn.Module):
  """Stochastic depth: in training, each example's residual branch is zeroed with
  probability ``rate`` and kept ones scaled by ``1 / (1 - rate)`` (its own
  draws from the ``"dropout"`` RNG stream); the identity at evaluation."""

  rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    if not 0.0 <= self.rate < 1.0:
      raise ValueError(f"drop-path rate must be in [0, 1), got {self.rate!r}")
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


class TransformerBlock(nn.Module):
  """One pre-norm block: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))`` (ViT Eqs. 2-3);
  GELU is the exact (erf) one as in the reference code; LayerNorm ε = 1e-6."""

  dim: int
  num_heads: int
  mlp_ratio: float = MLP_RATIO
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, attention_mask=None):
    if self.dim % self.num_heads:
      raise ValueError(f"width {self.dim} is not divisible by the number of heads {self.num_heads}")
    norm = lambda name: nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    dense = lambda width, name: nn.Dense(
      width, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=dense_init, name=name
    )
    y = norm("norm1")(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      kernel_init=dense_init,
      deterministic=True,
      name="attn",
    )(y, y, mask=attention_mask)
    x = x + DropPath(self.drop_path, name="drop_path1")(y, train=train)
    y = norm("norm2")(x)
    y = dense(int(round(self.dim * self.mlp_ratio)), "fc1")(y)
    y = nn.gelu(y, approximate=False)
    y = dense(self.dim, "fc2")(y)
    return x + DropPath(self.drop_path, name="drop_path2")(y, train=train)


def drop_path_rates(rate: float, depth: int) -> list[float]:
  """Per-block rates rising linearly from 0 to ``rate`` (DeiT / timm)."""
  return [float(r) for r in np.linspace(0.0, rate, depth)] if depth > 1 else [float(rate)] * depth


def gather_tokens(tokens: jax.Array, indices: jax.Array) -> jax.Array:
  """``tokens [B, N, D]`` at ``indices [B, n]`` -> ``[B, n, D]``."""
  return jnp.take_along_axis(tokens, indices[..., None].astype(jnp.int32), axis=1)


class VisionTransformer(nn.Module):
  """ViT encoder: NHWC images -> float32 ``[B, D]`` (or patch tokens ``[B, n, D]``).

  Attributes:
    dim, depth, num_heads, patch_size: the size (:data:`VIT_SIZES`).
    mlp_ratio: the MLP's hidden width over ``dim``.
    pool: ``"mean"`` over the patch tokens, or ``"cls"`` (a learned CLS token).
    position_embedding: ``"sincos"`` (fixed) or ``"learned"``.
    drop_path_rate: stochastic depth at the last block (0 at the first).
    dtype: compute dtype (e.g. bfloat16); parameters stay float32.
  """

  dim: int = 192
  depth: int = 12
  num_heads: int = 3
  patch_size: int = 16
  mlp_ratio: float = MLP_RATIO
  pool: str = "mean"
  position_embedding: str = "sincos"
  drop_path_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @property
  def embedding_dim(self) -> int:
    return self.dim

  def grid(self, image_shape) -> tuple[int, int]:
    """The patch grid ``(rows, cols)`` of images ``[H, W, C]`` (or ``[B, H, W, C]``)."""
    h, w = image_shape[-3], image_shape[-2]
    if h % self.patch_size or w % self.patch_size:
      raise ValueError(f"image side {h}x{w} is not divisible by the ViT patch size {self.patch_size}")
    return h // self.patch_size, w // self.patch_size

  @nn.compact
  def __call__(self, x, *, train: bool, patch_indices=None, return_tokens: bool = False):
    if self.pool not in POOLS:
      raise ValueError(f"unknown ViT pool {self.pool!r}; allowed: {', '.join(POOLS)}")
    if self.position_embedding not in POSITION_EMBEDDINGS:
      raise ValueError(
        f"unknown ViT position embedding {self.position_embedding!r}; allowed: {', '.join(POSITION_EMBEDDINGS)}"
      )
    grid_h, grid_w = self.grid(x.shape)
    num_patches = grid_h * grid_w
    x = jnp.asarray(x, self.dtype)
    x = nn.Conv(
      self.dim,
      (self.patch_size, self.patch_size),
      strides=(self.patch_size, self.patch_size),
      padding="VALID",
      dtype=self.dtype,
      param_dtype=jnp.float32,
      name="patch_embed",
    )(x)
    x = x.reshape(x.shape[0], num_patches, self.dim)
    with_cls = self.pool == "cls"
    if self.position_embedding == "learned":
      pos = self.param(
        "pos_embed",
        nn.initializers.truncated_normal(stddev=0.02),
        (1, num_patches + int(with_cls), self.dim),
        jnp.float32,
      )
      cls_pos, patch_pos = (pos[:, :1], pos[:, 1:]) if with_cls else (None, pos)
    else:
      patch_pos = jnp.asarray(sincos_position_embedding(self.dim, grid_h, grid_w))[None]
      cls_pos = jnp.zeros((1, 1, self.dim), jnp.float32)  # MAE: the CLS token's row of the table is zero
    x = x + patch_pos.astype(self.dtype)
    if patch_indices is not None:
      x = gather_tokens(x, patch_indices)
    if with_cls:
      cls = self.param("cls_token", nn.initializers.truncated_normal(stddev=0.02), (1, 1, self.dim), jnp.float32)
      x = jnp.concatenate([jnp.broadcast_to((cls + cls_pos).astype(self.dtype), (x.shape[0], 1, self.dim)), x], axis=1)
    for i, rate in enumerate(drop_path_rates(self.drop_path_rate, self.depth)):
      x = TransformerBlock(self.dim, self.num_heads, self.mlp_ratio, rate, dtype=self.dtype, name=f"block{i}")(
        x, train=train
      )
    x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, param_dtype=jnp.float32, name="norm")(x).astype(jnp.float32)
    patch_tokens = x[:, 1:] if with_cls else x
    if return_tokens:
      return patch_tokens
    return x[:, 0] if with_cls else jnp.mean(patch_tokens, axis=1)


def build_vit(name: str, dtype: Dtype = jnp.float32, drop_path_rate: float = 0.0) -> VisionTransformer:
  """The registered ViT ``name`` (:data:`VIT_ENCODERS`); ``ValueError`` naming a bad one."""
  if name not in VIT_ENCODERS:
    raise ValueError(f"unknown ViT encoder {name!r}; allowed: {', '.join(VIT_ENCODERS)}")
  with_cls = name.endswith("_cls")
  dim, depth, heads, patch = VIT_SIZES[name[:-4] if with_cls else name]
  return VisionTransformer(
    dim=dim,
    depth=depth,
    num_heads=heads,
    patch_size=patch,
    pool="cls" if with_cls else "mean",
    position_embedding="learned" if with_cls else "sincos",
    drop_path_rate=drop_path_rate,
    dtype=dtype,
  )


def vit_embedding_dim(name: str) -> int:
  if name not in VIT_ENCODERS:
    raise ValueError(f"unknown ViT encoder {name!r}; allowed: {', '.join(VIT_ENCODERS)}")
  return VIT_SIZES[name.removesuffix("_cls")][0]
