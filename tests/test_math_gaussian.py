"""Gaussian densities, Schur conditionals, marginals, sampling, trace trap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import gjax.math as gm
from tests.helpers import grad_check, random_spd, x64


@pytest.mark.parametrize("d", [1, 3, 8])
def test_full_diag_isotropic_log_prob_match_scipy(d):
  rng = np.random.default_rng(d)
  cov = random_spd(rng, d)
  mean = rng.normal(size=d)
  x = rng.normal(size=(6, d))
  with x64():
    ref = stats.multivariate_normal(mean, cov).logpdf(x)
    np.testing.assert_allclose(gm.gaussian_log_prob(x, mean, np.linalg.cholesky(cov)), ref, rtol=1e-10)
    np.testing.assert_allclose(gm.gaussian_log_prob_from_cov(x, mean, cov), ref, rtol=1e-10)
    var = rng.uniform(0.2, 2.0, size=d)
    np.testing.assert_allclose(
      gm.diag_gaussian_log_prob(x, mean, var), stats.multivariate_normal(mean, np.diag(var)).logpdf(x), rtol=1e-10
    )
    np.testing.assert_allclose(
      gm.isotropic_gaussian_log_prob(x, mean, np.full(6, 0.7)),
      stats.multivariate_normal(mean, 0.7 * np.eye(d)).logpdf(x),
      rtol=1e-10,
    )


def test_batched_scale_trils_broadcast():
  rng = np.random.default_rng(0)
  covs = np.stack([random_spd(rng, 4) for _ in range(5)])
  means = rng.normal(size=(5, 4))
  x = rng.normal(size=(5, 4))
  with x64():
    got = gm.gaussian_log_prob(x, means, np.linalg.cholesky(covs))
  ref = [stats.multivariate_normal(means[i], covs[i]).logpdf(x[i]) for i in range(5)]
  np.testing.assert_allclose(got, ref, rtol=1e-10)


@pytest.mark.parametrize("split", [2, 1, 4, [4, 0], [1, 3, 2]])
def test_schur_conditional_matches_closed_form_and_chain_rule(split):
  rng = np.random.default_rng(1)
  d = 5
  cov = random_spd(rng, d)
  mean = rng.normal(size=d)
  u = rng.normal(size=(7, d))
  ctx = np.arange(split) if isinstance(split, int) else np.asarray(split)
  tgt = np.setdiff1d(np.arange(d), ctx)
  with x64():
    cond = gm.gaussian_conditional(u[:, ctx], mean, cov, split)
    # Closed form with an explicit inverse (reference only).
    s_cc, s_tc, s_tt = cov[np.ix_(ctx, ctx)], cov[np.ix_(tgt, ctx)], cov[np.ix_(tgt, tgt)]
    gain = s_tc @ np.linalg.inv(s_cc)
    ref_mean = mean[tgt] + (u[:, ctx] - mean[ctx]) @ gain.T
    ref_cov = s_tt - gain @ s_tc.T
    np.testing.assert_allclose(cond.mean, ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cond.cov, ref_cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cond.scale_tril @ cond.scale_tril.T, ref_cov, rtol=1e-10, atol=1e-12)
    # log p(u) = log p(z_c) + log p(z_t | z_c)
    m_c, c_cc = gm.gaussian_marginal(mean, cov, ctx.tolist() if not isinstance(split, int) else split)
    joint = gm.gaussian_log_prob_from_cov(u, mean, cov)
    chain = gm.gaussian_log_prob_from_cov(u[:, ctx], m_c, c_cc) + gm.gaussian_log_prob(
      u[:, tgt], cond.mean, cond.scale_tril
    )
    np.testing.assert_allclose(chain, joint, rtol=1e-10)


def test_chain_rule_float32():
  rng = np.random.default_rng(2)
  d = 16
  cov = random_spd(rng, d).astype(np.float32)
  mean = rng.normal(size=d).astype(np.float32)
  u = rng.normal(size=(64, d)).astype(np.float32)
  cond = gm.gaussian_conditional(u[:, :6], mean, cov, 6)
  m_c, c_cc = gm.gaussian_marginal(mean, cov, 6)
  chain = gm.gaussian_log_prob_from_cov(u[:, :6], m_c, c_cc) + gm.gaussian_log_prob(
    u[:, 6:], cond.mean, cond.scale_tril
  )
  np.testing.assert_allclose(chain, gm.gaussian_log_prob_from_cov(u, mean, cov), rtol=2e-5, atol=2e-4)


def test_sampling_moments():
  rng = np.random.default_rng(3)
  cov = random_spd(rng, 3).astype(np.float32)
  mean = np.array([1.0, -2.0, 0.5], np.float32)
  samples = gm.gaussian_sample(jax.random.PRNGKey(0), mean, np.linalg.cholesky(cov), (200_000,))
  assert samples.shape == (200_000, 3)
  np.testing.assert_allclose(samples.mean(0), mean, atol=0.02)
  np.testing.assert_allclose(np.cov(np.asarray(samples).T), cov, atol=0.03)
  var = np.array([0.5, 2.0, 1.0], np.float32)
  diag = gm.diag_gaussian_sample(jax.random.PRNGKey(1), mean, var, 100_000)
  np.testing.assert_allclose(diag.var(0), var, rtol=0.03)
  np.testing.assert_allclose(gm.reparameterize_diag(mean, var, np.ones(3, np.float32)), mean + np.sqrt(var))


def test_scale_tril_from_params_is_valid_cholesky():
  raw = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4)) * 3
  low = gm.scale_tril_from_params(raw, min_diag=1e-3)
  assert np.all(np.triu(np.asarray(low), 1) == 0)
  assert np.all(np.diagonal(np.asarray(low), axis1=-2, axis2=-1) >= 1e-3)
  raw_neg = jnp.full((3, 3), -1e4)
  assert np.all(np.isfinite(gm.scale_tril_from_params(raw_neg)))


def test_trace_trap_mahalanobis_equals_dimension_float32():
  for n, dim, scale in [(512, 16, 1.0), (256, 32, 1e-3), (4096, 64, 50.0)]:
    u = (
      scale * jax.random.normal(jax.random.PRNGKey(n), (n, dim)) @ jax.random.normal(jax.random.PRNGKey(1), (dim, dim))
    )
    out = gm.empirical_gaussian_nll(u)
    assert abs(float(out.mahalanobis) - dim) < 1e-4 * dim, (n, dim, float(out.mahalanobis))
    np.testing.assert_allclose(out.nll, 0.5 * dim * np.log(2 * np.pi) + out.half_log_det + 0.5 * dim, rtol=1e-5)


def test_trace_trap_gradient_only_shrinks():
  # The loss is ½log|Σ̂| + const: its gradient w.r.t. a global scale is d/scale > 0,
  # so gradient descent shrinks the embeddings (the trap).
  u = jax.random.normal(jax.random.PRNGKey(0), (256, 8))
  with x64():
    u64 = np.asarray(u, np.float64)
    g = jax.grad(lambda a: gm.empirical_gaussian_nll(a * u64).nll)(1.0)
  np.testing.assert_allclose(g, 8.0, rtol=1e-8)


def test_trace_trap_ridge_and_singular_error():
  u = jax.random.normal(jax.random.PRNGKey(0), (8, 16))
  with pytest.raises(ValueError, match="singular"):
    gm.empirical_gaussian_nll(u)
  out = gm.empirical_gaussian_nll(u, ridge=1e-2)
  assert np.isfinite(out.nll) and out.mahalanobis < 16
  with pytest.raises(ValueError, match="ridge"):
    gm.empirical_gaussian_nll(u, ridge=-1.0)


def test_empirical_half_log_det_matches_numpy_slogdet():
  rng = np.random.default_rng(11)
  for n, dim, ridge in [(50, 4, 0.0), (20, 6, 1e-3), (5, 8, 0.5)]:
    u = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim))
    cov = np.cov(u, rowvar=False, bias=True) + ridge * np.eye(dim)
    with x64():
      got = gm.empirical_half_log_det(u, ridge=ridge)
    np.testing.assert_allclose(got, 0.5 * np.linalg.slogdet(cov)[1], rtol=1e-9, atol=1e-9)
  # The same ½log|Σ̂| as the trap's term, and its scale gradient d/da ½log|a²Σ̂| = dim/a.
  u = rng.normal(size=(64, 5))
  np.testing.assert_allclose(gm.empirical_half_log_det(u), gm.empirical_gaussian_nll(u).half_log_det, rtol=1e-6)
  with x64():
    g = jax.grad(lambda a: gm.empirical_half_log_det(a * u))(2.0)
  np.testing.assert_allclose(g, 5 / 2.0, rtol=1e-9)
  grad_check(lambda v: gm.empirical_half_log_det(v, ridge=0.1), (rng.normal(size=(12, 3)),))
  with pytest.raises(ValueError, match="singular"):
    gm.empirical_half_log_det(u[:4])
  with pytest.raises(ValueError, match="ridge"):
    gm.empirical_half_log_det(u, ridge=-1.0)


def test_weighted_empirical_half_log_det_matches_numpy_aweights():
  rng = np.random.default_rng(12)
  for n, dim, ridge in [(60, 4, 0.0), (30, 5, 1e-3)]:
    u = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) + 3.0
    w = rng.uniform(size=n) * (rng.uniform(size=n) > 0.3)  # some rows weigh nothing
    cov = np.cov(u, rowvar=False, bias=True, aweights=w) + ridge * np.eye(dim)
    with x64():
      got = gm.empirical_half_log_det(u, ridge=ridge, weights=w)
      equal = gm.empirical_half_log_det(u, ridge=ridge, weights=np.full(n, 7.0))
      plain = gm.empirical_half_log_det(u, ridge=ridge)
    np.testing.assert_allclose(got, 0.5 * np.linalg.slogdet(cov)[1], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(equal, plain, rtol=1e-12)  # equal weights: the unweighted moments
  grad_check(
    lambda v: gm.empirical_half_log_det(v, ridge=0.1, weights=jnp.linspace(0.1, 1.0, 12)), (rng.normal(size=(12, 3)),)
  )
  # A component no row belongs to (float32 responsibilities underflow to 0): the ridge alone, finite gradient.
  u32 = jnp.asarray(rng.normal(size=(12, 3)), jnp.float32)
  value, grad = jax.value_and_grad(lambda v: gm.empirical_half_log_det(v, ridge=1e-6, weights=jnp.zeros(12)))(u32)
  np.testing.assert_allclose(value, 1.5 * np.log(1e-6), rtol=1e-5)
  assert np.all(np.asarray(grad) == 0.0)
  with pytest.raises(ValueError, match="weights have 5 entries for 12 rows"):
    gm.empirical_half_log_det(rng.normal(size=(12, 3)), ridge=0.1, weights=np.ones(5))


def test_empirical_half_log_det_float32_collapsed_batch_stays_finite():
  # A batch with one dead direction (zero variance): finite with the 1e-6 floor as ridge, value and gradient.
  u = jax.random.normal(jax.random.PRNGKey(0), (256, 16)).at[:, 3].set(0.0)
  value, grad = jax.value_and_grad(lambda v: gm.empirical_half_log_det(v, ridge=1e-6))(u)
  assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
  np.testing.assert_allclose(
    value,
    0.5 * np.linalg.slogdet(np.cov(np.asarray(u, np.float64), rowvar=False, bias=True) + 1e-6 * np.eye(16))[1],
    rtol=1e-4,
  )


def test_gradients_second_order():
  rng = np.random.default_rng(4)
  d = 3
  low = np.linalg.cholesky(random_spd(rng, d))
  x, mean = rng.normal(size=(2, d)), rng.normal(size=d)
  grad_check(gm.gaussian_log_prob, (x, mean, low))
  grad_check(gm.diag_gaussian_log_prob, (x, mean, rng.uniform(0.5, 2, d)))
  grad_check(gm.isotropic_gaussian_log_prob, (x, mean, np.array([0.7, 1.3])))
  grad_check(lambda zc, m, l: gm.gaussian_conditional_from_tril(zc, m, l, 2).mean, (x[:, :2], mean, low))
  grad_check(lambda c: gm.gaussian_conditional(x[:, :1], mean, c @ c.T + np.eye(d), 1).cov, (low,))
  grad_check(lambda r: gm.scale_tril_from_params(r), (rng.normal(size=(d, d)),))
  grad_check(lambda u: gm.empirical_gaussian_nll(u).nll, (rng.normal(size=(12, 3)),))


def test_jit_and_vmap():
  rng = np.random.default_rng(5)
  low = np.linalg.cholesky(random_spd(rng, 4)).astype(np.float32)
  x = rng.normal(size=(3, 10, 4)).astype(np.float32)
  mean = np.zeros(4, np.float32)
  eager = gm.gaussian_log_prob(x, mean, low)
  np.testing.assert_allclose(jax.jit(gm.gaussian_log_prob)(x, mean, low), eager, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(gm.gaussian_log_prob, (0, None, None))(x, mean, low), eager, rtol=1e-6)
  cond = jax.jit(lambda z: gm.gaussian_conditional(z, mean, low @ low.T, 2))(x[0, :, :2])
  assert cond.mean.shape == (10, 2) and cond.scale_tril.shape == (2, 2)


def test_bad_input_errors():
  cov = np.eye(4, dtype=np.float32)
  with pytest.raises(ValueError, match="last dimensions must match"):
    gm.gaussian_log_prob(np.zeros((2, 3)), np.zeros(4), cov)
  with pytest.raises(ValueError, match="0 < split"):
    gm.gaussian_conditional(np.zeros((2, 4)), np.zeros(4), cov, 4)
  with pytest.raises(ValueError, match="0 < split"):
    gm.gaussian_conditional(np.zeros((2, 5)), np.zeros(4), cov, 5)
  with pytest.raises(ValueError, match="z_c has 3 features"):
    gm.gaussian_conditional(np.zeros((2, 3)), np.zeros(4), cov, 2)
  with pytest.raises(ValueError, match="distinct"):
    gm.gaussian_conditional(np.zeros((2, 2)), np.zeros(4), cov, [1, 1])
  with pytest.raises(ValueError, match=r"\[0, 4\)"):
    gm.gaussian_conditional(np.zeros((2, 2)), np.zeros(4), cov, [1, 7])
  with pytest.raises(ValueError, match="fewer than"):
    gm.gaussian_conditional(np.zeros((2, 4)), np.zeros(4), cov, [0, 1, 2, 3])
  with pytest.raises(ValueError, match=r"\[\.\.\., d, d\]"):
    gm.gaussian_log_prob(np.zeros(4), np.zeros(4), np.zeros(4))
  with pytest.raises(ValueError, match="var must be > 0"):
    gm.diag_gaussian_log_prob(np.zeros(2), np.zeros(2), np.array([1.0, -0.5]))
  with pytest.raises(ValueError, match="var must be > 0"):
    gm.isotropic_gaussian_log_prob(np.zeros(2), np.zeros(2), np.array(0.0))
  with pytest.raises(ValueError, match="min_diag"):
    gm.scale_tril_from_params(np.zeros((2, 2)), min_diag=0.0)
  with pytest.raises(ValueError, match="residual last dimension"):
    gm.tri_solve(np.eye(3), np.zeros(4))
  with pytest.raises(ValueError, match="feature axis"):
    gm.diag_gaussian_log_prob(np.float32(1.0), np.zeros(2), np.ones(2))
  with pytest.raises(ValueError, match="does not match dimension"):
    gm.gaussian_log_prob(np.zeros(3), np.zeros(3), np.eye(4))
  with pytest.raises(ValueError, match="at most"):
    gm.gaussian_marginal(np.zeros(2), np.eye(2), [0, 1, 0])
  with pytest.raises(ValueError, match="2 dimensions"):
    gm.empirical_gaussian_nll(np.zeros(5))
