"""The ViT encoders (gjax.models.vit): shapes, parameter counts of the published
sizes, one block and the position table against numpy, drop-path, and ViTs
training through the unchanged trainer (8 devices = 1 device, bitwise resume)."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from gjax.models.encoders import build_encoder, embedding_dim
from gjax.models.vit import (
  VIT_SIZES,
  DropPath,
  TransformerBlock,
  VisionTransformer,
  build_vit,
  sincos_position_embedding,
)
from gjax.train import config as config_lib
from gjax.train import train_and_evaluate
from tests.test_train import _one_step, tiny_config


def count(params) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))


def abstract_params(model, image_side: int, channels: int = 3):
  x = jax.ShapeDtypeStruct((1, image_side, image_side, channels), jnp.float32)
  return jax.eval_shape(lambda r, images: model.init(r, images, train=False), jax.random.PRNGKey(0), x)["params"]


def closed_form_vit_params(
  dim: int, depth: int, patch: int, image_side: int, channels: int = 3, mlp_ratio: int = 4
) -> int:
  """Parameters of a ViT backbone with CLS token and learned positions, from its dims:
  patch embedding ``p²CD + D``, positions ``(N + 1) D``, CLS ``D``, per block two
  LayerNorms ``4D``, q/k/v/out ``4D² + 4D``, MLP ``2 r D² + r D + D``, final LayerNorm ``2D``."""
  n = (image_side // patch) ** 2
  block = 4 * dim + 4 * dim * dim + 4 * dim + 2 * mlp_ratio * dim * dim + mlp_ratio * dim + dim
  return patch * patch * channels * dim + dim + (n + 1) * dim + dim + depth * block + 2 * dim


#: timm's published parameter counts with the 1000-class head (vit_{tiny,small,base,large}_patch16_224;
#: ViT-B/16: "86M" in Dosovitskiy et al. Table 1); the head is D * 1000 + 1000 of them.
PUBLISHED_WITH_HEAD = {"vit_ti16": 5_717_416, "vit_s16": 22_050_664, "vit_b16": 86_567_656, "vit_l16": 304_326_632}


@pytest.mark.parametrize("size", sorted(PUBLISHED_WITH_HEAD))
def test_parameter_counts_of_the_published_sizes(size):
  dim, depth, _, patch = VIT_SIZES[size]
  cls_params = count(abstract_params(build_vit(f"{size}_cls"), 224))
  assert cls_params == closed_form_vit_params(dim, depth, patch, 224)
  assert cls_params == PUBLISHED_WITH_HEAD[size] - (dim * 1000 + 1000)
  # The sine-cosine, mean-pooled variant has no position or CLS parameters.
  assert count(abstract_params(build_vit(size), 224)) == cls_params - (224 // patch) ** 2 * dim - 2 * dim
  assert embedding_dim(size) == dim


def test_output_shapes_dtypes_and_patch_subsets():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 28, 28, 1))
  for name in ("vit_tiny_cpu", "vit_tiny_cpu_cls"):
    model = build_encoder(name, dtype=jnp.bfloat16)
    variables = model.init(jax.random.PRNGKey(1), x, train=False)
    pooled = model.apply(variables, x, train=False)
    tokens = model.apply(variables, x, train=False, return_tokens=True)
    assert pooled.shape == (3, 96) and pooled.dtype == jnp.float32
    assert tokens.shape == (3, 49, 96) and tokens.dtype == jnp.float32
    indices = jnp.array([[0, 5, 48], [1, 2, 3], [7, 8, 9]])
    subset = model.apply(variables, x, train=False, patch_indices=indices, return_tokens=True)
    assert subset.shape == (3, 3, 96)
  with pytest.raises(ValueError, match="not divisible by the ViT patch size 4"):
    build_encoder("vit_tiny_cpu").init(jax.random.PRNGKey(0), jnp.zeros((1, 30, 30, 1)), train=False)
  with pytest.raises(ValueError, match="width_multiplier=0.5 is a ResNet setting"):
    build_encoder("vit_tiny_cpu", width_multiplier=0.5)
  with pytest.raises(ValueError, match="unknown encoder name 'vit_h14'"):
    build_encoder("vit_h14")


def test_patch_indices_gather_the_position_encoded_tokens():
  # A depth-0 ViT is per token (embedding, positions, final norm): the subset's
  # tokens are the full pass's tokens at the indices, positions included.
  model = VisionTransformer(dim=16, depth=0, num_heads=2, patch_size=4)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(1), x, train=False)
  full = model.apply(variables, x, train=False, return_tokens=True)
  indices = jnp.array([[3, 0, 15], [9, 9, 2]])
  subset = model.apply(variables, x, train=False, patch_indices=indices, return_tokens=True)
  np.testing.assert_allclose(
    subset, np.take_along_axis(np.asarray(full), np.asarray(indices)[..., None], 1), rtol=1e-6, atol=1e-6
  )


def numpy_layer_norm(x, scale, bias, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def numpy_block(x, p, num_heads):
  """One pre-norm ViT block in float64 numpy (ViT Eqs. 2-3)."""
  y = numpy_layer_norm(x, p["norm1"]["scale"], p["norm1"]["bias"])
  a = p["attn"]
  q, k, v = (np.einsum("bnd,dhk->bnhk", y, a[n]["kernel"]) + a[n]["bias"] for n in ("query", "key", "value"))
  head_dim = q.shape[-1]
  logits = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(head_dim)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  heads = np.einsum("bhqs,bshk->bqhk", weights, v)
  x = x + np.einsum("bqhk,hkd->bqd", heads, a["out"]["kernel"]) + a["out"]["bias"]
  y = numpy_layer_norm(x, p["norm2"]["scale"], p["norm2"]["bias"])
  y = y @ p["fc1"]["kernel"] + p["fc1"]["bias"]
  y = 0.5 * y * (1.0 + scipy.special.erf(y / math.sqrt(2.0)))
  return x + y @ p["fc2"]["kernel"] + p["fc2"]["bias"]


def test_one_block_matches_a_numpy_reimplementation():
  block = TransformerBlock(dim=32, num_heads=4)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 10, 32))
  params = block.init(jax.random.PRNGKey(1), x, train=False)["params"]
  # Non-trivial norms and biases so that every parameter matters.
  params = jax.tree_util.tree_map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(a.size), a.shape), params)
  out = block.apply({"params": params}, x, train=False)
  expected = numpy_block(
    np.asarray(x, np.float64), jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params), 4
  )
  np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-5)


def test_sincos_table_matches_the_formula():
  dim, rows, cols = 16, 3, 5
  table = sincos_position_embedding(dim, rows, cols)
  assert table.shape == (rows * cols, dim)
  quarter = dim // 4
  for r in range(rows):
    for c in range(cols):
      for k in range(quarter):
        omega = 10000.0 ** (-k / quarter)
        row = table[r * cols + c]
        np.testing.assert_allclose(
          row[[k, quarter + k, 2 * quarter + k, 3 * quarter + k]],
          [math.sin(c * omega), math.cos(c * omega), math.sin(r * omega), math.cos(r * omega)],
          rtol=1e-6,
          atol=1e-6,
        )
  with pytest.raises(ValueError, match="divisible by 4, got 18"):
    sincos_position_embedding(18, 2, 2)


def test_drop_path_is_the_identity_at_eval_and_drops_whole_examples_in_training():
  x = jnp.ones((64, 5, 8))
  layer = DropPath(rate=0.25)
  np.testing.assert_array_equal(layer.apply({}, x, train=False), x)
  out = np.asarray(layer.apply({}, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)}))
  per_example = out.reshape(64, -1)
  kept = np.all(per_example == 1.0 / 0.75, axis=1)
  dropped = np.all(per_example == 0.0, axis=1)
  assert np.all(kept | dropped) and 0 < dropped.sum() < 64
  vit = VisionTransformer(dim=16, depth=3, num_heads=2, patch_size=4, drop_path_rate=0.5)
  images = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))
  variables = vit.init(jax.random.PRNGKey(2), images, train=False)
  np.testing.assert_array_equal(vit.apply(variables, images, train=False), vit.apply(variables, images, train=False))
  a = vit.apply(variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
  b = vit.apply(variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(4)})
  assert not np.allclose(a, b)


def vit_config(method: str, **overrides):
  """``tests.test_train.tiny_config`` with the one-block ViT (16 x 16 synthetic images: 4 x 4 patches)."""
  return tiny_config(method=method, **{"model.encoder": "vit_smoke", "model.width_multiplier": 1.0, **overrides})


#: GMJE's full-covariance mixture on an 8-dimensional projection (its 16-image batch would leave the
#: ViT's 32-dimensional embedding's covariances singular). Its EM fit, Cholesky factors and log-det
#: barrier still amplify float32 summation order, which differs between 8 devices and 1: one parameter
#: in 32 differed by 1.2e-5 (7e-4 relative) at 1e-5, so its tolerance is 1e-4; a per-device statistic
#: where a global one belongs would differ by the update itself (~1e-2).
METHOD_SETTINGS = {
  "vje": ({}, 1e-5),
  "vicreg": ({}, 1e-5),
  "gmje": ({"model.projector": True, "model.projector_dim": 8, "model.projector_hidden": 16}, 1e-4),
}


@pytest.mark.parametrize("method", sorted(METHOD_SETTINGS))
def test_vit_step_on_8_devices_matches_1_device(method):
  assert jax.device_count() == 8
  overrides, tolerance = METHOD_SETTINGS[method]
  config = vit_config(method, **overrides)
  params_8, stats_8, metrics_8 = _one_step(config, jax.devices())
  params_1, stats_1, metrics_1 = _one_step(config, jax.devices()[:1])
  chex.assert_trees_all_close(params_8, params_1, rtol=tolerance, atol=tolerance)
  chex.assert_trees_all_close(stats_8, stats_1, rtol=tolerance, atol=tolerance)
  chex.assert_tree_all_finite(params_8)
  np.testing.assert_allclose(metrics_8["loss"], metrics_1["loss"], rtol=1e-5)
  assert metrics_8["grad_norm"] > 0 and np.isfinite(metrics_8["loss"])


def test_vit_kill_and_resume_is_bitwise(tmp_path):
  config = vit_config("vicreg")
  full = train_and_evaluate(config, str(tmp_path / "full"))
  first = train_and_evaluate(config, str(tmp_path / "resumed"), stop_after_steps=2)
  assert first["final_step"] == 2
  second = train_and_evaluate(config, str(tmp_path / "resumed"))
  assert second["start_step"] == 2 and second["final_step"] == 4
  state_a, state_b = jax.device_get(full["state"]), jax.device_get(second["state"])
  jax.tree_util.tree_map(np.testing.assert_array_equal, state_a.params, state_b.params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state_a.opt_state, state_b.opt_state)


def test_config_names_a_bad_vit_setting():
  with pytest.raises(ValueError, match=r"config\.model\.width_multiplier=0\.5 is invalid: must be 1\.0 for the ViT"):
    config_lib.validate_config(vit_config("vje", **{"model.width_multiplier": 0.5}), 8)
  with pytest.raises(ValueError, match=r"config\.model\.encoder='vit_q16'"):
    config_lib.validate_config(vit_config("vje", **{"model.encoder": "vit_q16"}), 8)
