"""I-JEPA (gjax.objectives.ijepa): the multi-block mask sampler, the predictor,
the losses, and the method through the trainer (one compile, 8 devices = 1,
bitwise resume with its momentum target)."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gjax import data as gdata
from gjax.data.masks import MultiBlockMasks, block_shapes, sample_multiblock_masks
from gjax.models.masked_prediction import IJEPAPredictor
from gjax.objectives import get_objective
from gjax.train import config as config_lib
from gjax.train import create_train_state, make_optimizer, make_train_step, train_and_evaluate
from gjax.train.input_pipeline import build_train_input
from gjax.train.state import build_method
from tests.test_train import tiny_config


def test_block_shapes_are_the_admissible_integer_blocks():
  # 14 x 14 patches (224 / 16): targets of 29.4 to 39.2 patches with h / w in [0.75, 1.5].
  assert block_shapes((14, 14), (0.15, 0.2), (0.75, 1.5)).tolist() == [[5, 6], [6, 5], [6, 6], [7, 5]]
  assert block_shapes((14, 14), (0.85, 1.0), (1.0, 1.0)).tolist() == [[13, 13], [14, 14]]
  masks = MultiBlockMasks()
  assert masks.num_target_patches((14, 14)) == 30
  assert masks.num_context_patches((14, 14)) == 169 - 4 * 36
  assert (masks.num_target_patches((7, 7)), masks.num_context_patches((7, 7))) == (9, 13)
  with pytest.raises(ValueError, match="no target block of scale .* fits a 4x4 patch grid"):
    masks.num_target_patches((4, 4))
  with pytest.raises(ValueError, match="can cover a context block"):
    MultiBlockMasks(num_targets=6).num_context_patches((7, 7))
  with pytest.raises(ValueError, match=r"target_scale=\(0.2, 1.5\) must lie in \(0, 1\]"):
    MultiBlockMasks(target_scale=(0.2, 1.5))


@pytest.mark.parametrize("grid", [(7, 7), (14, 14), (8, 8)])
def test_masks_have_fixed_counts_no_overlap_and_lie_in_their_blocks(grid):
  masks = MultiBlockMasks()
  nc, nt, n = masks.num_context_patches(grid), masks.num_target_patches(grid), grid[0] * grid[1]
  shapes = {tuple(s) for s in masks.target_shapes(grid).tolist()}
  chex.clear_trace_counter()
  sample = jax.jit(
    chex.assert_max_traces(lambda key: sample_multiblock_masks(key, 32, grid, masks, with_blocks=True), n=1)
  )
  for seed in range(3):  # new keys, one trace: the shapes never change
    context, targets, blocks = map(np.asarray, sample(jax.random.PRNGKey(seed)))
    assert context.shape == (32, nc) and targets.shape == (32, 4, nt) and blocks.shape == (32, 4, n)
    for b in range(32):
      assert len(set(context[b])) == nc and context[b].min() >= 0 and context[b].max() < n
      excluded = np.flatnonzero(blocks[b].any(axis=0))
      assert not set(context[b]) & set(excluded)  # the context sees no target block's patch
      for m in range(4):
        block = np.flatnonzero(blocks[b, m])
        rows, cols = block // grid[1], block % grid[1]
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert (h, w) in shapes and h * w == len(block)  # a full rectangle of an admissible shape
        assert len(set(targets[b, m])) == nt and set(targets[b, m]) <= set(block)
  # Different keys give different masks.
  a, b = sample(jax.random.PRNGKey(0))[0], sample(jax.random.PRNGKey(1))[0]
  assert not np.array_equal(a, b)


def test_predictor_shapes_and_blocks_are_predicted_independently():
  b, nc, d, grid = 2, 5, 8, (4, 4)
  context = jax.random.normal(jax.random.PRNGKey(0), (b, nc, d))
  context_idx = jnp.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
  targets = jnp.array([[[10, 11], [12, 13], [14, 15]], [[0, 1], [2, 3], [4, 15]]])
  point = IJEPAPredictor(encoder_dim=d, dim=16, depth=2, num_heads=2)
  variables = point.init(jax.random.PRNGKey(1), context, context_idx, targets, grid, train=False)
  out = point.apply(variables, context, context_idx, targets, grid, train=False)
  assert out["prediction"].shape == (b, 3, 2, d)
  # Block 0's prediction depends on the context and its own positions, not on the other blocks.
  moved = targets.at[:, 2].set(jnp.array([[6, 7], [8, 9]]))
  again = point.apply(variables, context, context_idx, moved, grid, train=False)
  np.testing.assert_allclose(again["prediction"][:, :2], out["prediction"][:, :2], rtol=1e-6, atol=1e-6)
  assert not np.allclose(again["prediction"][:, 2], out["prediction"][:, 2])
  mixture = IJEPAPredictor(encoder_dim=d, dim=16, depth=1, num_heads=2, num_components=3)
  variables = mixture.init(jax.random.PRNGKey(1), context, context_idx, targets, grid, train=False)
  out = mixture.apply(variables, context, context_idx, targets, grid, train=False)
  assert out["logits"].shape == (b, 3, 2, 3)
  assert out["means"].shape == out["var"].shape == (b, 3, 2, 3, d)
  assert np.all(np.asarray(out["var"]) > 0)


def _outputs(rng, k=2, d=4):
  keys = jax.random.split(rng, 6)
  shape = (3, 2, 5)
  return {
    "masked_target": jax.random.normal(keys[0], shape + (d,)),
    "masked_prediction": jax.random.normal(keys[1], shape + (d,)) * 2.0,
    "masked_logits": jax.random.normal(keys[2], shape + (k,)),
    "masked_means": jax.random.normal(keys[3], shape + (k, d)),
    "masked_var": jnp.exp(jax.random.normal(keys[4], shape + (k, d))),
    "context_tokens": jax.random.normal(keys[5], (3, 7, d)),
    "z_1": jax.random.normal(keys[5], (3, d)),
    "z_2": jax.random.normal(keys[4], (3, d)),
  }


def _set(section, changes):
  for key, value in changes.items():
    section[key] = value
  return section


def test_losses_against_numpy():
  loss_fn = get_objective("ijepa").loss_fn
  out = _outputs(jax.random.PRNGKey(0))
  diff = np.asarray(out["masked_prediction"] - out["masked_target"], np.float64)
  l2, _ = loss_fn(out, jax.random.PRNGKey(1), _set(config_lib.base_config("ijepa").ijepa, {"predictor_loss": "l2"}))
  np.testing.assert_allclose(l2, np.mean(diff**2), rtol=1e-5)
  huber, _ = loss_fn(
    out, jax.random.PRNGKey(1), _set(config_lib.base_config("ijepa").ijepa, {"predictor_loss": "smooth_l1"})
  )
  np.testing.assert_allclose(huber, np.mean(np.where(np.abs(diff) < 1, 0.5 * diff**2, np.abs(diff) - 0.5)), rtol=1e-5)
  mdn, metrics = loss_fn(
    out, jax.random.PRNGKey(1), _set(config_lib.base_config("ijepa").ijepa, {"predictor_loss": "mdn"})
  )
  t = np.asarray(out["masked_target"], np.float64)[..., None, :]
  m, v = np.asarray(out["masked_means"], np.float64), np.asarray(out["masked_var"], np.float64)
  logits = np.asarray(out["masked_logits"], np.float64)
  log_w = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
  log_n = -0.5 * np.sum((t - m) ** 2 / v + np.log(2 * np.pi * v), -1)
  expected = -np.mean(np.log(np.sum(np.exp(log_w + log_n), -1)))
  np.testing.assert_allclose(mdn, expected, rtol=1e-5)
  assert "marginal" not in metrics
  with_marginal, metrics = loss_fn(
    out,
    jax.random.PRNGKey(1),
    _set(config_lib.base_config("ijepa").ijepa, {"predictor_loss": "mdn", "marginal_weight": 2.0}),
  )
  np.testing.assert_allclose(with_marginal, mdn + 2.0 * metrics["marginal"], rtol=1e-5)


def ijepa_config(**overrides):
  """A tiny I-JEPA run: the one-block ViT on 32 x 32 synthetic images (8 x 8 patches), a 1-block predictor."""
  return tiny_config(
    method="ijepa",
    **{
      "model.encoder": "vit_smoke",
      "model.width_multiplier": 1.0,
      "dataset.synthetic_image_size": 32,
      "ijepa.predictor_dim": 16,
      "ijepa.predictor_depth": 1,
      "ijepa.predictor_heads": 2,
      "ijepa.num_components": 2,
      "optim.grad_clip_norm": 1.0,
      **overrides,
    },
  )  # as configs/ijepa_fashion_mnist.py (the mixture's NLL gradients)


def _steps(config, devices, num_steps, max_traces=None):
  mesh = gdata.data_mesh(devices)
  train_input = build_train_input(config)
  objective, hparams, model = build_method(config)
  if max_traces is not None:
    objective = dataclasses.replace(objective, loss_fn=chex.assert_max_traces(objective.loss_fn, n=max_traces))
  tx, _ = make_optimizer(config, train_input.steps_per_epoch, 10)
  state = create_train_state(
    jax.random.PRNGKey(0),
    model,
    tx,
    train_input.image_shape,
    gdata.replicated_sharding(mesh),
    with_target=objective.uses_target(hparams),
  )
  step = make_train_step(model, objective, hparams, tx, train_input.augment, jax.random.PRNGKey(1), mesh, 10)
  batches = train_input.batches(0)
  metrics = []
  for _ in range(num_steps):
    state, m = step(state, gdata.make_global_batch(next(batches), mesh))
    metrics.append(jax.device_get(m))
  return jax.device_get(state), metrics


@pytest.mark.parametrize("loss", ["l2", "mdn"])
def test_ijepa_step_compiles_once_and_8_devices_match_1(loss):
  config = ijepa_config(**{"ijepa.predictor_loss": loss, "ijepa.marginal_weight": 1.0 if loss == "mdn" else 0.0})
  chex.clear_trace_counter()
  state_8, metrics_8 = _steps(config, jax.devices(), 3, max_traces=1)  # three steps, new masks each, one trace
  assert all(np.isfinite(m["loss"]) for m in metrics_8) and metrics_8[0]["grad_norm"] > 0
  assert len({float(m["loss"]) for m in metrics_8}) == 3
  state_1, metrics_1 = _steps(config, jax.devices()[:1], 3)
  np.testing.assert_allclose([m["loss"] for m in metrics_8], [m["loss"] for m in metrics_1], rtol=1e-4)
  chex.assert_trees_all_close(state_8.params, state_1.params, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(state_8.target_params, state_1.target_params, rtol=1e-4, atol=1e-5)
  # The target follows the online parameters by EMA: it moved, but not as far.
  assert not all(
    np.array_equal(a, b)
    for a, b in zip(jax.tree_util.tree_leaves(state_8.target_params), jax.tree_util.tree_leaves(state_8.params))
  )


def test_ijepa_kill_and_resume_is_bitwise(tmp_path):
  config = ijepa_config(**{"ijepa.predictor_loss": "mdn", "ijepa.marginal_weight": 1.0})
  full = train_and_evaluate(config, str(tmp_path / "full"))
  train_and_evaluate(config, str(tmp_path / "resumed"), stop_after_steps=2)
  second = train_and_evaluate(config, str(tmp_path / "resumed"))
  assert second["start_step"] == 2 and second["final_step"] == 4
  a, b = jax.device_get(full["state"]), jax.device_get(second["state"])
  for field in ("params", "target_params", "opt_state"):
    jax.tree_util.tree_map(np.testing.assert_array_equal, getattr(a, field), getattr(b, field))


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("model.encoder", "resnet10", r"config\.model\.encoder='resnet10' is invalid: I-JEPA needs a mean-pooled ViT"),
    ("model.encoder", "vit_smoke_cls", r"config\.model\.encoder='vit_smoke_cls' is invalid"),
    ("ijepa.predictor_loss", "l1", r"config\.ijepa\.predictor_loss='l1'"),
    ("ijepa.predictor_heads", 3, r"config\.ijepa\.predictor_heads=3 is invalid: must be >= 1 and divide"),
    ("ijepa.target_scale", (0.3, 0.2), r"config\.ijepa mask settings are invalid: target_scale=\(0\.3, 0\.2\)"),
    ("model.projector", True, r"config\.model\.projector=True is invalid: I-JEPA has no projector"),
  ],
)
def test_bad_ijepa_settings_are_named(field, value, message):
  with pytest.raises(ValueError, match=message):
    config_lib.validate_config(ijepa_config(**{field: value}), 8)
