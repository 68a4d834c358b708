"""I-JEPA's multi-block masks, sampled on the device with fixed shapes.

Assran et al. 2023, "Self-Supervised Learning from Images with a
Joint-Embedding Predictive Architecture" (CVPR), Sec. 3 and Fig. 4: per image,
M = 4 target blocks of scale (0.15, 0.2) of the patch grid and aspect ratio
(0.75, 1.5), and one context block of scale (0.85, 1.0) and aspect 1, from
which the target blocks' patches are removed (so the context never sees a
target patch).

jit needs fixed shapes, and blocks vary in area. Here each block's shape ``(h,
w)`` is drawn uniformly among the integer shapes whose area fraction ``hw / N``
and aspect ``h / w`` lie in the ranges (:func:`block_shapes`; the paper draws a
scale and an aspect and rounds), its position uniformly; then a fixed number of
its patches is kept, chosen by the top-k of random scores restricted to the
allowed set: ``num_target_patches`` = the smallest admissible target area, and
``num_context_patches`` = the smallest context area minus M times the largest
target area (the fewest patches a context can keep). The reference code does
alike across a batch: it truncates every mask to the batch's smallest one.
Patches are indices into the row-major patch grid.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class MultiBlockMasks:
  """The sampler's settings (the paper's defaults); ranges are ``(low, high)``, inclusive."""

  num_targets: int = 4
  target_scale: tuple[float, float] = (0.15, 0.2)
  target_aspect: tuple[float, float] = (0.75, 1.5)
  context_scale: tuple[float, float] = (0.85, 1.0)
  context_aspect: tuple[float, float] = (1.0, 1.0)

  def __post_init__(self):
    if self.num_targets < 1:
      raise ValueError(f"num_targets must be >= 1, got {self.num_targets!r}")
    for name in ("target_scale", "context_scale", "target_aspect", "context_aspect"):
      low, high = getattr(self, name)
      if not 0 < low <= high:
        raise ValueError(f"{name}={(low, high)!r} must be a range 0 < low <= high")
      if name.endswith("scale") and high > 1:
        raise ValueError(f"{name}={(low, high)!r} must lie in (0, 1] (a fraction of the patch grid)")

  def target_shapes(self, grid: tuple[int, int]) -> np.ndarray:
    return block_shapes(grid, self.target_scale, self.target_aspect, "target")

  def context_shapes(self, grid: tuple[int, int]) -> np.ndarray:
    return block_shapes(grid, self.context_scale, self.context_aspect, "context")

  def num_target_patches(self, grid: tuple[int, int]) -> int:
    """Patches kept per target block: the smallest admissible target block's area."""
    return int(np.min(np.prod(self.target_shapes(grid), axis=1)))

  def num_context_patches(self, grid: tuple[int, int]) -> int:
    """Patches kept in the context: the fewest any context block keeps once M target blocks are removed."""
    fewest = int(
      np.min(np.prod(self.context_shapes(grid), axis=1))
      - self.num_targets * np.max(np.prod(self.target_shapes(grid), axis=1))
    )
    if fewest < 1:
      raise ValueError(
        f"on a {grid[0]}x{grid[1]} patch grid, {self.num_targets} target blocks of scale "
        f"{self.target_scale} can cover a context block of scale {self.context_scale}: "
        "use fewer or smaller targets, or a finer patch grid"
      )
    return fewest


def block_shapes(
  grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float], what: str = "block"
) -> np.ndarray:
  """``[S, 2]`` integer ``(h, w)`` with ``scale[0] <= hw / N <= scale[1]`` and
  ``aspect[0] <= h / w <= aspect[1]`` on a ``grid = (rows, cols)`` of ``N`` patches."""
  rows, cols = grid
  n = rows * cols
  eps = 1e-9
  shapes = [
    (h, w)
    for h in range(1, rows + 1)
    for w in range(1, cols + 1)
    if scale[0] - eps <= h * w / n <= scale[1] + eps and aspect[0] - eps <= h / w <= aspect[1] + eps
  ]
  if not shapes:
    raise ValueError(
      f"no {what} block of scale {tuple(scale)} and aspect {tuple(aspect)} fits a {rows}x{cols} "
      "patch grid: widen the ranges or change the patch size"
    )
  return np.asarray(shapes, np.int32)


def _block(key: jax.Array, shapes: np.ndarray, grid: tuple[int, int]) -> jax.Array:
  """A ``[N]`` bool mask of one block: a shape among ``shapes`` and a position, uniformly."""
  k_shape, k_top, k_left = jax.random.split(key, 3)
  hw = jnp.asarray(shapes)[jax.random.randint(k_shape, (), 0, shapes.shape[0])]
  h, w = hw[0], hw[1]
  top = jax.random.randint(k_top, (), 0, grid[0] - h + 1)
  left = jax.random.randint(k_left, (), 0, grid[1] - w + 1)
  r = jnp.arange(grid[0])[:, None]
  c = jnp.arange(grid[1])[None, :]
  return ((r >= top) & (r < top + h) & (c >= left) & (c < left + w)).reshape(-1)


def choose_patches(key: jax.Array, allowed: jax.Array, k: int) -> jax.Array:
  """``k`` distinct indices (ascending) drawn uniformly from the ``allowed [N]``
  set, which must hold at least ``k``: the top-k of uniform scores, disallowed at -1."""
  scores = jnp.where(allowed, jax.random.uniform(key, allowed.shape), -1.0)
  return jnp.sort(jax.lax.top_k(scores, k)[1]).astype(jnp.int32)


def _one_image(key, masks: MultiBlockMasks, grid):
  m = masks.num_targets
  keys = jax.random.split(key, 2 * m + 2)
  target_shapes, context_shapes = masks.target_shapes(grid), masks.context_shapes(grid)
  target_blocks = jnp.stack([_block(keys[i], target_shapes, grid) for i in range(m)])  # [M, N]
  nt, nc = masks.num_target_patches(grid), masks.num_context_patches(grid)
  targets = jnp.stack([choose_patches(keys[m + i], target_blocks[i], nt) for i in range(m)])  # [M, Nt]
  allowed = _block(keys[2 * m], context_shapes, grid) & ~jnp.any(target_blocks, axis=0)
  context = choose_patches(keys[2 * m + 1], allowed, nc)
  return context, targets, target_blocks


def sample_multiblock_masks(
  key: jax.Array,
  batch: int,
  grid: tuple[int, int],
  masks: MultiBlockMasks = MultiBlockMasks(),
  *,
  with_blocks: bool = False,
):
  """Per image: ``context [B, Nc]`` and ``targets [B, M, Nt]`` patch indices
  (int32, fixed shapes for a grid); ``with_blocks`` adds the target blocks'
  ``[B, M, N]`` bool masks (the patches the context excludes)."""
  grid = (int(grid[0]), int(grid[1]))
  one = functools.partial(_one_image, masks=masks, grid=grid)
  context, targets, blocks = jax.vmap(one)(jax.random.split(key, batch))
  return (context, targets, blocks) if with_blocks else (context, targets)
