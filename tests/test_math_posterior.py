"""Posterior and collapse diagnostics, the directional NLL's two parts, the KL
conventions and free bits (issue: VJE's probabilistic semantics)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gjax.math as gm
from tests.helpers import grad_check, x64
from tests.test_math_kl_vje import numpy_vje_eq38, vje_inputs


class DiagnosticsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_input_independent_posterior_has_no_active_unit(self):
    rng = np.random.default_rng(0)
    mu = np.tile(rng.normal(size=(1, 6)), (50, 1)).astype(np.float32)  # the same posterior for every input
    var = np.full((50, 6), 0.3, np.float32)
    z = rng.normal(size=(50, 6)).astype(np.float32)
    out = self.variant(gm.posterior_diagnostics)(mu, var, z)
    assert float(out["active_units"]) == 0.0
    assert float(out["mu_spread_ratio"]) == pytest.approx(0.0, abs=1e-6)
    assert float(out["mu_cosine"]) == pytest.approx(1.0, abs=1e-6)
    assert float(out["z_dead_channels"]) == 0.0

  @chex.variants(with_jit=True, without_jit=True)
  def test_known_counts(self):
    rng = np.random.default_rng(1)
    # Units 0-2 vary with variance ~1 (active), 3 with variance 1e-4 (not), 4-5 constant.
    mu = np.zeros((400, 6), np.float32)
    mu[:, :3] = rng.normal(size=(400, 3))
    mu[:, 3] = 0.01 * rng.normal(size=400)
    assert float(self.variant(gm.active_units)(mu)) == 3.0
    assert float(self.variant(functools.partial(gm.active_units, threshold=2.0))(mu)) == 0.0
    # Two dead channels: one constant, one 1e-4 of the others' spread.
    z = rng.normal(size=(400, 5)).astype(np.float32)
    z[:, 1] = 3.0
    z[:, 4] *= 1e-4
    assert float(self.variant(gm.dead_channels)(z)) == 2.0

  def test_pairwise_cosine_against_the_explicit_matrix(self):
    x = np.random.default_rng(2).normal(size=(7, 4))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    gram = unit @ unit.T
    ref = (gram.sum() - np.trace(gram)) / (7 * 6)
    with x64():
      np.testing.assert_allclose(gm.mean_pairwise_cosine(x), ref, rtol=1e-12)
    # Antipodal pair: -1; a zero row counts as the zero direction (finite).
    assert float(gm.mean_pairwise_cosine(np.array([[1.0, 0.0], [-1.0, 0.0]]))) == pytest.approx(-1.0)
    assert np.isfinite(float(gm.mean_pairwise_cosine(np.zeros((3, 2), np.float32))))

  def test_spread_ratio_closed_form(self):
    rng = np.random.default_rng(3)
    mu = rng.normal(size=(1000, 3)) * np.array([1.0, 2.0, 3.0])
    var = np.full((1000, 3), 4.0)
    expected = np.mean(mu.std(axis=0)) / 2.0
    with x64():
      np.testing.assert_allclose(gm.mu_spread_to_posterior_std(mu, var), expected, rtol=1e-12)

  def test_bad_inputs_name_the_value(self):
    with pytest.raises(ValueError, match="mu must have 2 dimensions"):
      gm.active_units(np.zeros(3))
    with pytest.raises(ValueError, match="at least 2 rows"):
      gm.mean_pairwise_cosine(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="threshold must be >= 0"):
      gm.active_units(np.zeros((2, 3)), -1.0)
    with pytest.raises(ValueError, match="var has shape"):
      gm.mu_spread_to_posterior_std(np.zeros((4, 3)), np.ones((5, 3)))


def test_directional_parts_sum_to_the_nll_and_split_as_eq24():
  z, s = np.random.default_rng(4).normal(size=(2, 5, 8))
  var = np.random.default_rng(5).uniform(0.1, 2.0, size=(5, 8))
  with x64():
    kernel, log_det = gm.student_t_directional_parts(z, s, var, 3.0)
    np.testing.assert_allclose(kernel + log_det, gm.student_t_directional_nll(z, s, var, 3.0), rtol=1e-12)
  np.testing.assert_allclose(log_det, 0.5 * np.log(var).sum(-1), rtol=1e-12)
  unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
  q = ((unit(s) - unit(z)) ** 2 / var).sum(-1)
  np.testing.assert_allclose(kernel, 0.5 * (3.0 + 8) * np.log1p(q / 3.0), rtol=1e-12)
  grad_check(lambda s_, v_: gm.student_t_directional_parts(z[:2, :3], s_, v_, 3.0)[0], (s[:2, :3], var[:2, :3]))


@pytest.mark.parametrize("beta", [0.5, 1.25])
def test_kl_conventions(beta):
  """'mean' is Eq. 38 / Algorithm 4 (β · ½ ΣKL), 'sum' is Eq. 9-10 (β · ΣKL)."""
  args = vje_inputs(6)
  with x64():
    mean_loss, parts = gm.vje_symmetric_loss(*args, nu=3.0, beta=beta)
    sum_loss, sum_parts = gm.vje_symmetric_loss(*args, nu=3.0, beta=beta, kl_convention="sum")
    doubled, _ = gm.vje_symmetric_loss(*args, nu=3.0, beta=2 * beta)
  ref, ref_dir, ref_rad, ref_kl = numpy_vje_eq38(*args, nu=3.0, beta=beta)
  np.testing.assert_allclose(mean_loss, ref, rtol=1e-12)
  np.testing.assert_allclose(sum_loss, ref_dir + ref_rad + beta * 2 * ref_kl, rtol=1e-12)
  np.testing.assert_allclose(sum_loss, doubled, rtol=1e-12)
  np.testing.assert_allclose(parts["directional_kernel"] + parts["directional_log_det"], ref_dir, rtol=1e-12)
  assert float(sum_parts["kl"]) == pytest.approx(float(parts["kl"]))  # the logged KL is the plain one
  with pytest.raises(ValueError, match="kl_convention must be one of"):
    gm.vje_symmetric_loss(*args, nu=3.0, kl_convention="half")


def test_free_bits_floor_each_dimension():
  rng = np.random.default_rng(7)
  mu = rng.normal(size=(32, 4)) * np.array([0.01, 0.01, 2.0, 3.0])
  var = np.full((32, 4), 1.0)
  per_dim = (0.5 * (var + mu**2 - 1 - np.log(var))).mean(0)  # dims 0-1 nearly free, 2-3 large
  with x64():
    np.testing.assert_allclose(gm.free_bits_kl(mu, var, 0.0), per_dim.sum(), rtol=1e-12)
    np.testing.assert_allclose(gm.free_bits_kl(mu, var, 0.5), np.maximum(per_dim, 0.5).sum(), rtol=1e-12)
    # No gradient from a dimension under the floor; unchanged above it.
    grad = jax.grad(lambda m: gm.free_bits_kl(m, var, 0.5))(jnp.asarray(mu))
  assert np.all(np.asarray(grad)[:, :2] == 0.0)
  np.testing.assert_allclose(np.asarray(grad)[:, 2:], mu[:, 2:] / 32, rtol=1e-12)
  grad_check(lambda m, v: gm.free_bits_kl(m, v, 0.0), (mu[:3], var[:3] * 0.7))
  with pytest.raises(ValueError, match="free_bits must be >= 0"):
    gm.free_bits_kl(mu, var, -0.1)
  args = vje_inputs(8)
  with x64():
    off, _ = gm.vje_symmetric_loss(*args, nu=3.0)
    floored, parts = gm.vje_symmetric_loss(*args, nu=3.0, free_bits=50.0)  # every dim under the floor
  assert float(floored) > float(off)
  np.testing.assert_allclose(parts["kl_loss"], 50.0 * args[0].shape[-1], rtol=1e-12)
