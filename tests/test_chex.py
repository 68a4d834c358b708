"""chex where it serves: the core VJE / GJE math under every execution mode
(``chex.variants``: traced by jit, op by op, on a device), gradients that stay
finite at the paper's floors, and "the train step compiles once"
(``chex.assert_max_traces``) through the real trainer."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gjax.math as gm
from gjax.train import plan, train_and_evaluate
from tests.test_hardening import tiny
from tests.test_math_kl_vje import numpy_vje_eq38, vje_inputs


class MathVariantsTest(chex.TestCase):
  """The same numbers whether a function is jitted, run eagerly or placed on a device."""

  @chex.variants(with_jit=True, without_jit=True, with_device=True)
  def test_vje_loss_matches_numpy_eq38_in_every_mode(self):
    args = [a.astype(np.float32) for a in vje_inputs(3)]
    loss_fn = self.variant(lambda *a: gm.vje_symmetric_loss(*a, nu=3.0, beta=1.0))
    loss, parts = loss_fn(*args)
    ref, ref_dir, ref_rad, ref_kl = numpy_vje_eq38(*vje_inputs(3), nu=3.0, beta=1.0)
    chex.assert_shape(loss, ())
    chex.assert_tree_all_finite(parts)
    np.testing.assert_allclose(loss, ref, rtol=2e-5)
    chex.assert_trees_all_close(
      {k: parts[k] for k in ("directional", "radial", "kl")},
      {"directional": ref_dir, "radial": ref_rad, "kl": ref_kl},
      rtol=2e-5,
    )

  @chex.variants(with_jit=True, without_jit=True, with_device=True)
  def test_gaussian_conditional_is_the_schur_complement_in_every_mode(self):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    cov = (a @ a.T / 5 + 0.5 * np.eye(5)).astype(np.float32)
    x_c = rng.normal(size=(2,)).astype(np.float32)
    mean = np.zeros(5, np.float32)
    conditional = self.variant(lambda x, m, c: gm.gaussian_conditional(x, m, c, 2)[:2])
    cond_mean, cond_cov = conditional(x_c, mean, cov)
    s_cc, s_ct, s_tt = cov[:2, :2], cov[:2, 2:], cov[2:, 2:]
    chex.assert_trees_all_close(
      (cond_mean, cond_cov),
      (s_ct.T @ np.linalg.solve(s_cc, x_c), s_tt - s_ct.T @ np.linalg.solve(s_cc, s_ct)),
      rtol=1e-4,
      atol=1e-5,
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_gradients_are_finite_at_the_floors(self):
    """Zero-norm embeddings and variances at the paper's 1e-6 floor (float32)."""
    b, d = 4, 8
    z = jnp.zeros((b, d))
    mu = jnp.zeros((b, d))
    var = jnp.full((b, d), 1e-6)

    def total(z_1, mu_1, var_1):
      return gm.vje_symmetric_loss(z_1, z_1, mu_1, var_1, mu_1, var_1, mu_1, mu_1, nu=0.5)[0]

    grads = self.variant(jax.grad(total, argnums=(0, 1, 2)))(z, mu, var)
    chex.assert_tree_all_finite(grads)
    chex.assert_trees_all_equal_shapes(grads, (z, mu, var))


@pytest.mark.parametrize("method", ["vje", "byol"])
def test_the_train_step_traces_once_over_a_run_and_its_resume(tmp_path, monkeypatch, method):
  """``chex.assert_max_traces``: the objective (hence the whole step) is traced
  once per process however many steps run; a retrace (a dtype, weak type or
  sharding that changes after the first step, e.g. the momentum target's τ)
  would fail here."""
  original = plan.build_method
  traced = []

  def build_method(config):
    objective, hparams, model = original(config)
    counted = chex.assert_max_traces(objective.loss_fn, n=1)

    def loss_fn(outputs, rng, hparams):
      traced.append(1)
      return counted(outputs, rng, hparams)

    return dataclasses.replace(objective, loss_fn=loss_fn), hparams, model

  monkeypatch.setattr(plan, "build_method", build_method)
  config = tiny(num_train_steps=6, log_every_steps=2, checkpoint_every_steps=3, method=method)
  first = train_and_evaluate(config, str(tmp_path), stop_after_steps=3)
  assert len(traced) == 1 and first["final_step"] == 3
  chex.clear_trace_counter()
  resumed = train_and_evaluate(config, str(tmp_path))  # a new step function, traced once again
  assert len(traced) == 2 and resumed["final_step"] == 6
  chex.assert_tree_all_finite(jax.device_get(resumed["state"].params))
  chex.assert_tree_all_finite(jax.device_get(resumed["state"].target_params))
  assert math.isfinite(resumed["metrics"]["loss"])
