"""Baselines: each loss against a plain-numpy version of its published formula,
the VJE paper's Appendix B limits, and a few training steps on 8 fake devices."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gjax.math as gm
from gjax.objectives import get_objective
from gjax.train import train_and_evaluate
from gjax.train.config import method_settings
from tests.test_train import tiny_config, tiny_method_config


def _outputs(seed=0, b=16, d=5):
  rng = np.random.default_rng(seed)
  z1, z2, p1, p2 = (rng.normal(size=(b, d)).astype(np.float32) for _ in range(4))
  return {"z_1": z1, "z_2": z2, "p_1": p1, "p_2": p2}


def _cos(a, b):
  return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _loss(method, out, hp=None, rng=jax.random.PRNGKey(0)):
  hp = hp if hp is not None else method_settings(method)
  return get_objective(method).loss_fn({k: jnp.asarray(v) for k, v in out.items()}, rng, hp)


def test_jepa_simsiam_vicreg_simclr_match_numpy():
  o = {k: v.astype(np.float64) for k, v in _outputs().items()}
  hp = method_settings("jepa")
  hp.scale = 0.5
  jepa = 0.5 * (np.mean(np.sum((o["z_2"] - o["p_1"]) ** 2, -1)) + np.mean(np.sum((o["z_1"] - o["p_2"]) ** 2, -1))) / 1.0
  np.testing.assert_allclose(_loss("jepa", _outputs(), hp)[0], jepa, rtol=1e-5)
  simsiam = -0.5 * np.mean(_cos(o["p_1"], o["z_2"])) - 0.5 * np.mean(_cos(o["p_2"], o["z_1"]))
  np.testing.assert_allclose(_loss("simsiam", _outputs())[0], simsiam, rtol=1e-5)

  def var_cov(z):
    std = np.sqrt(z.var(0) + 1e-4)
    c = np.cov(z.T)
    return np.mean(np.maximum(0, 1 - std)), (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / z.shape[1]

  (v1, c1), (v2, c2) = var_cov(o["z_1"]), var_cov(o["z_2"])
  vicreg = 25 * np.mean((o["z_1"] - o["z_2"]) ** 2) + 25 * (v1 + v2) + (c1 + c2)
  loss, metrics = _loss("vicreg", _outputs())
  np.testing.assert_allclose(loss, vicreg, rtol=1e-5)

  z = np.concatenate([o["z_1"], o["z_2"]])
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n, tau, rows = 16, 0.2, []
  for a in range(2 * n):
    positive = (a + n) % (2 * n)
    logits = np.array([z[a] @ z[k] / tau for k in range(2 * n) if k != a])
    others = [k for k in range(2 * n) if k != a]
    rows.append(-(logits[others.index(positive)] - np.log(np.sum(np.exp(logits)))))
  np.testing.assert_allclose(_loss("simclr", _outputs())[0], np.mean(rows), rtol=1e-5)


def test_sigreg_is_alignment_plus_sliced_epps_pulley():
  o = _outputs(b=64)
  rng = jax.random.PRNGKey(3)
  hp = method_settings("sigreg")
  hp.marginal_weight = 0.3
  loss, metrics = _loss("sigreg", o, hp, rng)
  alignment = np.mean(np.sum((o["z_1"].astype(np.float64) - o["z_2"]) ** 2, -1))
  ep = float(gm.sliced_epps_pulley(rng, jnp.concatenate([o["z_1"], o["z_2"]]), hp.num_slices))
  np.testing.assert_allclose(loss, alignment + 0.3 * ep, rtol=1e-5)


def test_moco_objective_is_info_nce_with_the_queue():
  rng = np.random.default_rng(4)
  queue = rng.normal(size=(10, 5)).astype(np.float32)
  queue /= np.linalg.norm(queue, axis=1, keepdims=True)
  bank = gm.bank_insert(gm.bank_init(10, 5), jnp.asarray(queue))
  o = _outputs(b=4)
  out = {
    **{k: o[k] for k in ("z_1", "z_2")},
    "bank_particles": bank.particles,
    "bank_log_weights": bank.log_weights,
    "bank_filled": bank.filled,
  }
  hp = method_settings("moco")
  hp.symmetric = False
  q = o["z_1"] / np.linalg.norm(o["z_1"], axis=1, keepdims=True)
  k = o["z_2"] / np.linalg.norm(o["z_2"], axis=1, keepdims=True)
  logits = np.concatenate([np.sum(q * k, -1, keepdims=True), q @ queue.T], -1) / hp.temperature
  ref = np.mean(np.log(np.sum(np.exp(logits), -1)) - logits[:, 0])
  np.testing.assert_allclose(_loss("moco", out, hp)[0], ref, rtol=1e-5)


def test_appendix_b_squared_error_limit():
  """Isotropic Gaussian likelihood N(z_j; s_i, λI), s_i = μ_i + σε with σ → 0, β = 0:
  the one-directional NLL minus its constant is ||z_j - μ_i||² / (2λ), the JEPA loss."""
  o = _outputs(b=8, d=6)
  lam, d = 0.7, 6
  nll = []
  for i, j in ((1, 2), (2, 1)):
    s = gm.reparameterize_diag(o[f"p_{i}"], jnp.full((8, d), 1e-12), jax.random.normal(jax.random.PRNGKey(i), (8, d)))
    nll.append(
      -jnp.mean(gm.isotropic_gaussian_log_prob(o[f"z_{j}"], s, jnp.full((8,), lam)))
      - 0.5 * d * math.log(2 * math.pi * lam)
    )
  hp = method_settings("jepa")
  hp.scale = lam
  np.testing.assert_allclose(0.5 * sum(nll), _loss("jepa", o, hp)[0], rtol=1e-5)


def test_appendix_b_directional_limit_is_simsiam():
  """Directional NLL with ν → ∞, unit variance, at the posterior mean, no KL or
  radial term: ½||μ̂ - ẑ||² = 1 - cos; both directions give SimSiam's loss + 1."""
  o = _outputs(b=8, d=6)
  ones = jnp.ones((8, 6))
  directional = 0.5 * sum(
    jnp.mean(gm.student_t_directional_nll(o[f"z_{j}"], o[f"p_{i}"], ones, math.inf)) for i, j in ((1, 2), (2, 1))
  )
  np.testing.assert_allclose(directional - 1.0, _loss("simsiam", o)[0], rtol=1e-5, atol=1e-6)
  # And a large finite ν approaches it.
  near = 0.5 * sum(
    jnp.mean(gm.student_t_directional_nll(o[f"z_{j}"], o[f"p_{i}"], ones, 1e7)) for i, j in ((1, 2), (2, 1))
  )
  np.testing.assert_allclose(near, directional, rtol=1e-5)


BASELINE_OVERRIDES = {
  "jepa": {"jepa.predictor_hidden": 16},
  "simsiam": {
    "model.projector": True,
    "model.projector_hidden": 32,
    "model.projector_dim": 32,
    "model.projector_norm": "batch",
    "model.projector_norm_last": True,
    "simsiam.predictor_hidden": 16,
  },
  "vicreg": {
    "model.projector": True,
    "model.projector_layers": 3,
    "model.projector_hidden": 32,
    "model.projector_dim": 32,
    "model.projector_norm": "batch",
  },
  "simclr": {
    "model.projector": True,
    "model.projector_hidden": 32,
    "model.projector_dim": 16,
    "model.projector_norm": "batch",
  },
  "moco": {"moco.bank_size": 32},
  "sigreg": {"sigreg.num_slices": 16},
}


@pytest.mark.parametrize("method", sorted(BASELINE_OVERRIDES))
def test_baseline_trains_on_8_devices(tmp_path, method):
  assert jax.device_count() == 8
  config = tiny_method_config(**{"method": method, "num_train_steps": 2, **BASELINE_OVERRIDES[method]})
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary["final_step"] == 2 and np.isfinite(summary["metrics"]["loss"])
  assert summary["metrics"]["grad_norm"] > 0


def test_bad_baseline_config(tmp_path):
  with pytest.raises(ValueError, match=r"config\.moco\.bank_size=8"):
    train_and_evaluate(tiny_config(**{"method": "moco", "moco.bank_size": 8}), str(tmp_path))
  with pytest.raises(ValueError, match=r"config\.model\.projector_norm='group'"):
    train_and_evaluate(tiny_config(**{"method": "simclr", "model.projector_norm": "group"}), str(tmp_path))
