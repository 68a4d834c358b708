"""float32 safety, jit/vmap coverage and property-based tests for gjax.math."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gjax.math as gm
from tests.helpers import random_spd, x64

NUS = [0.25, 1.0, 3.0, 1e3, 1e6, math.inf]


def _finite(tree):
  return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("nu", NUS)
def test_vje_loss_float32_zero_norm_floor_variance_d2048(nu):
  d, b = 2048, 4
  key = jax.random.PRNGKey(0)
  z = jax.random.normal(key, (b, d)).at[0].set(0.0)  # a zero-norm embedding
  mu = jax.random.normal(jax.random.PRNGKey(1), (b, d)).at[1].set(0.0)
  var = gm.softplus_variance(jnp.full((b, d), -1e4))  # exactly at the 1e-6 floor
  np.testing.assert_allclose(var, 1e-6, rtol=1e-6)
  noise = jnp.zeros((b, d)).at[2].set(1.0)  # row 1: s = 0 exactly (zero-norm sample)

  def loss(z1, z2, m1, v1, m2, v2):
    return gm.vje_symmetric_loss(z1, z2, m1, v1, m2, v2, noise, noise, nu=nu, beta=1.0)

  value, parts = jax.jit(loss)(z, z[::-1], mu, var, mu[::-1], var)
  assert _finite((value, parts)), (value, parts)
  grads = jax.jit(jax.grad(lambda *a: loss(*a)[0], argnums=(2, 3, 4, 5)))(z, z[::-1], mu, var, mu[::-1], var)
  assert _finite(grads)


@pytest.mark.parametrize("nu", NUS)
def test_student_t_terms_float32_extremes(nu):
  d = 2048
  zero = jnp.zeros((2, d))
  big = jnp.full((2, d), 1e3)
  floor = jnp.full((2, d), 1e-6)
  for z, s in ((zero, zero), (zero, big), (big, zero)):
    for fn in (
      lambda a, b, v: gm.student_t_directional_nll(a, b, v, nu),
      lambda a, b, v: gm.student_t_radial_nll(a, b, nu),
      lambda a, b, v: gm.multivariate_student_t_nll(a, b, v, nu),
    ):
      value, grads = jax.value_and_grad(lambda a, b, v: jnp.sum(fn(a, b, v)), argnums=(0, 1, 2))(z, s, floor)
      assert _finite((value, grads))


def test_normalize_and_safe_norm_at_zero():
  zero = jnp.zeros(4)
  assert float(gm.safe_norm(zero)) == 0.0
  assert np.all(np.asarray(jax.grad(lambda x: gm.safe_norm(x))(zero)) == 0.0)
  np.testing.assert_array_equal(gm.normalize(zero), zero)
  assert _finite(jax.jacobian(gm.normalize)(zero))
  np.testing.assert_allclose(gm.safe_norm(jnp.array([3.0, 4.0])), 5.0)


def test_kl_and_gaussians_float32_floor():
  var = jnp.full((3, 2048), 1e-6)
  mu = jnp.zeros((3, 2048))
  assert _finite(jax.value_and_grad(lambda v: jnp.sum(gm.kl_diag_gaussian_standard_normal(mu, v)))(var))
  assert _finite(jax.value_and_grad(lambda v: jnp.sum(gm.diag_gaussian_log_prob(mu, mu, v)))(var))


def _cases():
  rng = np.random.default_rng(0)
  f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
  pos = lambda *s: rng.uniform(0.5, 2.0, size=s).astype(np.float32)  # noqa: E731
  low = np.linalg.cholesky(random_spd(rng, 4)).astype(np.float32)
  lows = np.stack([low, low * 1.5])
  return {
    "gaussian_log_prob": (lambda x: gm.gaussian_log_prob(x, jnp.zeros(4), low), f(3, 5, 4)),
    "diag_gaussian_log_prob": (lambda x: gm.diag_gaussian_log_prob(x, jnp.zeros(4), jnp.ones(4)), f(3, 5, 4)),
    "isotropic_gaussian_log_prob": (lambda x: gm.isotropic_gaussian_log_prob(x, jnp.zeros(4), 2.0), f(3, 5, 4)),
    "gaussian_conditional": (
      lambda x: gm.gaussian_conditional(x[:, :2], jnp.zeros(4), low @ low.T, 2).mean,
      f(3, 5, 4),
    ),
    "mixture_log_prob": (lambda x: gm.mixture_log_prob(x, jnp.zeros(2), jnp.zeros((2, 4)), lows), f(3, 5, 4)),
    "mixture_conditional": (
      lambda x: gm.mixture_conditional(x[:, :2], jnp.zeros(2), jnp.ones((2, 4)), lows, 2).means,
      f(3, 5, 4),
    ),
    "em_step": (
      lambda x: gm.em_step(x, jnp.zeros(2), jnp.stack([jnp.zeros(4), jnp.ones(4)]), lows)[0].means,
      f(3, 5, 4),
    ),
    "student_t_directional_nll": (lambda x: gm.student_t_directional_nll(x, x[::-1], jnp.ones(4), 3.0), f(3, 5, 4)),
    "student_t_radial_nll": (lambda x: gm.student_t_radial_nll(x, x[::-1], 3.0), f(3, 5, 4)),
    "multivariate_student_t_log_prob": (
      lambda x: gm.multivariate_student_t_log_prob(x, jnp.zeros(4), low, 2.0),
      f(3, 5, 4),
    ),
    "kl_diag_gaussian_standard_normal": (lambda x: gm.kl_diag_gaussian_standard_normal(x, jnp.ones(4)), f(3, 5, 4)),
    "kl_diag_gaussians": (lambda x: gm.kl_diag_gaussians(x, jnp.ones(4), x[::-1], 2 * jnp.ones(4)), f(3, 5, 4)),
    "vje_symmetric_loss": (
      lambda x: gm.vje_symmetric_loss(x, x[::-1], x, jnp.ones_like(x), x[::-1], jnp.ones_like(x), x, x, nu=3.0)[0],
      f(3, 5, 4),
    ),
    "info_nce": (lambda x: gm.info_nce(x, x[::-1], 0.1), f(3, 5, 4)),
    "gmje_degenerate_info_nce": (lambda x: gm.gmje_degenerate_info_nce(x, x[::-1], 0.1), f(3, 5, 4)),
    "empirical_gaussian_nll": (lambda x: gm.empirical_gaussian_nll(x).nll, f(3, 9, 4)),
    "empirical_half_log_det": (lambda x: gm.empirical_half_log_det(x), f(3, 9, 4)),
    "epps_pulley": (lambda x: gm.epps_pulley(x), f(3, 9, 4)),
    "sliced_epps_pulley": (lambda x: gm.sliced_epps_pulley(jax.random.PRNGKey(0), x, 8), f(3, 9, 4)),
    "scale_tril_from_params": (lambda x: gm.scale_tril_from_params(x[:4]), f(3, 5, 4)),
    "softplus_variance": (gm.softplus_variance, pos(3, 5, 4)),
  }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_every_function_runs_under_jit_and_vmap(name):
  fn, batch = _cases()[name]
  eager = jnp.stack([fn(x) for x in batch])
  np.testing.assert_allclose(jax.jit(jax.vmap(fn))(batch), eager, rtol=2e-5, atol=2e-5)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 6), data=st.data())
def test_property_chain_rule_any_split(d, data):
  context = data.draw(st.lists(st.integers(0, d - 1), min_size=1, max_size=d - 1, unique=True))
  seed = data.draw(st.integers(0, 2**16))
  rng = np.random.default_rng(seed)
  cov, mean, u = random_spd(rng, d), rng.normal(size=d), rng.normal(size=(3, d))
  target = [i for i in range(d) if i not in context]
  with x64():
    cond = gm.gaussian_conditional(u[:, context], mean, cov, context)
    m_c, c_cc = gm.gaussian_marginal(mean, cov, context)
    chain = np.asarray(
      gm.gaussian_log_prob_from_cov(u[:, context], m_c, c_cc)
      + gm.gaussian_log_prob(u[:, target], cond.mean, cond.scale_tril)
    )
    joint = np.asarray(gm.gaussian_log_prob_from_cov(u, mean, cov))
  assert cond.mean.shape == (3, len(target)) and cond.cov.shape == (len(target),) * 2
  np.testing.assert_allclose(chain, joint, rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
  b=st.integers(1, 5),
  d=st.integers(1, 8),
  seed=st.integers(0, 2**16),
  a=st.floats(0.01, 100),
  c=st.floats(0.01, 100),
  nu=st.sampled_from([0.5, 3.0, math.inf]),
)
def test_property_symmetries(b, d, seed, a, c, nu):
  rng = np.random.default_rng(seed)
  z, s = rng.normal(size=(2, b, d))
  var = rng.uniform(0.1, 3, size=(b, d))
  with x64():
    dir_ = np.asarray(gm.student_t_directional_nll(z, s, var, nu))
    assert dir_.shape == (b,)
    # Directional term: invariant to positive rescaling of either embedding.
    np.testing.assert_allclose(gm.student_t_directional_nll(a * z, c * s, var, nu), dir_, rtol=1e-9)
    # Radial term: symmetric in its arguments and zero for equal norms.
    np.testing.assert_allclose(gm.student_t_radial_nll(z, s, nu), gm.student_t_radial_nll(s, z, nu), rtol=1e-12)
    np.testing.assert_allclose(gm.student_t_radial_nll(z, -z, nu), 0.0, atol=1e-12)
    # KL(q || q) = 0 and KL >= 0.
    np.testing.assert_allclose(gm.kl_diag_gaussians(z, var, z, var), 0.0, atol=1e-12)
    assert np.all(np.asarray(gm.kl_diag_gaussians(z, var, s, var[::-1])) >= -1e-12)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 12), seed=st.integers(0, 2**16), tau=st.floats(0.05, 2.0))
def test_property_info_nce_permutation_invariant(n, seed, tau):
  rng = np.random.default_rng(seed)
  zc, zt = rng.normal(size=(2, n, 5))
  perm = rng.permutation(n)
  with x64():
    base = float(gm.info_nce(zc, zt, tau))
    np.testing.assert_allclose(gm.info_nce(zc[perm], zt[perm], tau), base, rtol=1e-10)
    np.testing.assert_allclose(gm.gmje_degenerate_info_nce(zc, zt, tau), base, rtol=1e-10)
  assert base >= 0
