"""Mixtures: density, responsibilities, conditional mixture, sampling, EM."""

import jax
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import log_softmax, logsumexp, softmax

import gjax.math as gm
from tests.helpers import grad_check, random_spd, x64

COV_TYPES = ["full", "diag", "isotropic"]


def make_mixture(rng, k, d, covariance_type):
  logits = rng.normal(size=k)
  means = 2 * rng.normal(size=(k, d))
  if covariance_type == "full":
    covs = np.stack([random_spd(rng, d) for _ in range(k)])
    return logits, means, np.linalg.cholesky(covs), covs
  if covariance_type == "diag":
    var = rng.uniform(0.3, 2.0, size=(k, d))
    return logits, means, var, np.stack([np.diag(v) for v in var])
  var = rng.uniform(0.3, 2.0, size=k)
  return logits, means, var, np.stack([v * np.eye(d) for v in var])


def scipy_mixture_log_prob(x, logits, means, covs):
  comps = [stats.multivariate_normal(means[i], covs[i]).logpdf(x) for i in range(len(logits))]
  return logsumexp(np.stack(comps, -1) + log_softmax(logits), axis=-1)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_log_prob_and_responsibilities_match_scipy(covariance_type):
  rng = np.random.default_rng(0)
  logits, means, cov, dense = make_mixture(rng, 4, 3, covariance_type)
  x = rng.normal(size=(9, 3))
  with x64():
    np.testing.assert_allclose(
      gm.mixture_log_prob(x, logits, means, cov, covariance_type),
      scipy_mixture_log_prob(x, logits, means, dense),
      rtol=1e-10,
    )
    comps = np.stack([stats.multivariate_normal(means[i], dense[i]).logpdf(x) for i in range(4)], -1)
    np.testing.assert_allclose(
      gm.mixture_responsibilities(x, logits, means, cov, covariance_type),
      softmax(comps + log_softmax(logits), axis=-1),
      rtol=1e-9,
    )


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_conditional_mixture_equals_joint_over_marginal(covariance_type):
  rng = np.random.default_rng(1)
  d, d_c = 5, 2
  logits, means, cov, dense = make_mixture(rng, 3, d, covariance_type)
  u = rng.normal(size=(11, d))
  with x64():
    cond = gm.mixture_conditional(u[:, :d_c], logits, means, cov, d_c, covariance_type)
    marginal = scipy_mixture_log_prob(u[:, :d_c], logits, means[:, :d_c], dense[:, :d_c, :d_c])
    np.testing.assert_allclose(cond.context_log_prob, marginal, rtol=1e-10)
    np.testing.assert_allclose(
      gm.mixture_conditional_log_prob(u[:, d_c:], cond, covariance_type),
      scipy_mixture_log_prob(u, logits, means, dense) - marginal,
      rtol=1e-9,
    )
    # Per-component means and covariances are the Schur conditionals.
    for k in range(3):
      ref = gm.gaussian_conditional(u[:, :d_c], means[k], dense[k], d_c)
      np.testing.assert_allclose(cond.means[:, k], ref.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.exp(cond.logits).sum(-1), 1.0, rtol=1e-12)


def test_conditional_mixture_integrates_to_one():
  rng = np.random.default_rng(2)
  logits, means, cov, _ = make_mixture(rng, 3, 2, "full")
  with x64():
    cond = gm.mixture_conditional(np.array([[0.3]]), logits, means, cov, 1)
    density = lambda t: float(np.exp(gm.mixture_conditional_log_prob(np.array([[t]]), cond)[0]))  # noqa: E731
    total, _ = integrate.quad(density, -40, 40, limit=400, points=list(np.asarray(cond.means[0, :, 0])))
  assert abs(total - 1.0) < 1e-7


def test_sampling_matches_density():
  rng = np.random.default_rng(3)
  logits, means, cov, dense = make_mixture(rng, 3, 2, "full")
  samples = np.asarray(gm.mixture_sample(jax.random.PRNGKey(0), logits, means, cov, "full", (200_000,)))
  weights = softmax(logits)
  np.testing.assert_allclose(samples.mean(0), weights @ means, atol=0.03)
  second = sum(w * (c + np.outer(m, m)) for w, m, c in zip(weights, means, dense))
  np.testing.assert_allclose(samples.T @ samples / len(samples), second, rtol=0.03, atol=0.05)
  for covariance_type in ("diag", "isotropic"):
    lg, mu, cv, dn = make_mixture(rng, 2, 3, covariance_type)
    s = np.asarray(gm.mixture_sample(jax.random.PRNGKey(1), lg, mu, cv, covariance_type, 100_000))
    np.testing.assert_allclose(s.mean(0), softmax(lg) @ mu, atol=0.05)


def test_conditional_sampling_shape_and_weights():
  rng = np.random.default_rng(4)
  logits, means, cov, _ = make_mixture(rng, 3, 4, "full")
  cond = gm.mixture_conditional(np.zeros((5, 2)), logits, means, cov, 2)
  samples = gm.mixture_sample(jax.random.PRNGKey(0), cond.logits, cond.means, cond.cov, "full", (1000,))
  assert samples.shape == (1000, 5, 2)
  assert np.all(np.isfinite(samples))


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_em_step_matches_numpy_and_increases_likelihood(covariance_type):
  rng = np.random.default_rng(5)
  centres = np.array([[-3.0, 0.0], [3.0, 1.0], [0.0, 4.0]])
  x = np.concatenate([c + 0.5 * rng.normal(size=(200, 2)) for c in centres])
  logits, means, cov, dense = make_mixture(rng, 3, 2, covariance_type)
  floor = 1e-3
  with x64():
    params, ll0 = gm.em_step(x, logits, means, cov, covariance_type, cov_floor=floor)
    # Plain numpy EM step.
    comp = np.stack([stats.multivariate_normal(means[k], dense[k]).logpdf(x) for k in range(3)], -1) + log_softmax(
      logits
    )
    resp = softmax(comp, axis=-1)
    nk = resp.sum(0)
    mu = resp.T @ x / nk[:, None]
    np.testing.assert_allclose(ll0, logsumexp(comp, -1).mean(), rtol=1e-10)
    np.testing.assert_allclose(params.means, mu, rtol=1e-9)
    np.testing.assert_allclose(softmax(np.asarray(params.logits)), nk / len(x), rtol=1e-9)
    for k in range(3):
      r = x - mu[k]
      s = (resp[:, k, None] * r).T @ r / nk[k]
      got = {
        "full": lambda: params.cov[k] @ params.cov[k].T,
        "diag": lambda: np.diag(params.cov[k]),
        "isotropic": lambda: params.cov[k] * np.eye(2),
      }[covariance_type]()
      want = {
        "full": s + floor * np.eye(2),
        "diag": np.diag(np.diag(s) + floor),
        "isotropic": (np.trace(s) / 2 + floor) * np.eye(2),
      }[covariance_type]
      np.testing.assert_allclose(got, want, rtol=1e-8)
    lls = [ll0]
    for _ in range(5):
      params, ll = gm.em_step(x, *params, covariance_type, cov_floor=floor)
      lls.append(ll)
  assert np.all(np.diff(lls) > -1e-9), lls


def test_em_empty_component_keeps_parameters():
  x = np.random.default_rng(6).normal(size=(50, 2)).astype(np.float32)
  logits = np.zeros(2, np.float32)
  means = np.array([[0.0, 0.0], [1e3, 1e3]], np.float32)
  cov = np.stack([np.eye(2), np.eye(2)]).astype(np.float32)
  params, _ = gm.em_step(x, logits, means, cov)
  np.testing.assert_array_equal(params.means[1], means[1])
  np.testing.assert_array_equal(params.cov[1], cov[1])
  assert np.all(np.isfinite(params.logits)) and np.all(np.isfinite(params.cov))


def test_float32_large_batch_jit():
  rng = np.random.default_rng(7)
  logits, means, cov, _ = make_mixture(rng, 16, 64, "full")
  x = rng.normal(size=(2048, 64)).astype(np.float32)
  f32 = [a.astype(np.float32) for a in (logits, means, cov)]
  got = jax.jit(gm.mixture_log_prob)(x, *f32)
  with x64():
    ref = gm.mixture_log_prob(x.astype(np.float64), logits, means, cov)
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  cond = jax.jit(gm.mixture_conditional, static_argnums=(4,))(x[:, :32], *f32, 32)
  assert cond.means.shape == (2048, 16, 32) and np.all(np.isfinite(cond.logits))


def test_vmap_over_batch():
  rng = np.random.default_rng(8)
  logits, means, cov, _ = make_mixture(rng, 3, 4, "full")
  x = rng.normal(size=(6, 4)).astype(np.float32)
  f32 = [a.astype(np.float32) for a in (logits, means, cov)]
  np.testing.assert_allclose(
    jax.vmap(gm.mixture_log_prob, (0, None, None, None))(x, *f32), gm.mixture_log_prob(x, *f32), rtol=1e-6
  )


def test_gradients_second_order():
  rng = np.random.default_rng(9)
  logits, means, cov, _ = make_mixture(rng, 2, 3, "full")
  x = rng.normal(size=(3, 3))
  grad_check(lambda a, b, c, m: gm.mixture_log_prob(a, b, c, m), (x, logits, means, cov))
  grad_check(lambda m, v: gm.mixture_log_prob(x, logits, m, v, "diag"), (means, rng.uniform(0.5, 1.5, (2, 3))))
  grad_check(lambda v: gm.mixture_log_prob(x, logits, means, v, "isotropic"), (np.array([0.8, 1.2]),))
  grad_check(lambda z, m: gm.mixture_conditional(z, logits, m, cov, 1).means, (x[:, :1], means))
  grad_check(lambda z: gm.mixture_conditional(z, logits, means, cov, 1).logits, (x[:, :1],))
  grad_check(lambda a: gm.em_step(a, logits, means, cov, "full")[0].means, (x,), order=1)


def test_bad_input_errors():
  logits, means, cov = np.zeros(2), np.zeros((2, 3)), np.stack([np.eye(3)] * 2)
  with pytest.raises(ValueError, match="covariance_type"):
    gm.mixture_log_prob(np.zeros((1, 3)), logits, means, cov, "spherical")
  with pytest.raises(ValueError, match=r"needs cov of shape \(2, 3\)"):
    gm.mixture_log_prob(np.zeros((1, 3)), logits, means, cov, "diag")
  with pytest.raises(ValueError, match="disagree on K"):
    gm.mixture_log_prob(np.zeros((1, 3)), np.zeros(3), means, cov)
  with pytest.raises(ValueError, match="x has 2 features"):
    gm.mixture_log_prob(np.zeros((1, 2)), logits, means, cov)
  with pytest.raises(ValueError, match="0 < split"):
    gm.mixture_conditional(np.zeros((1, 3)), logits, means, cov, 3)
  with pytest.raises(ValueError, match="variances"):
    gm.mixture_log_prob(np.zeros((1, 3)), logits, means, np.array([1.0, -1.0]), "isotropic")
  with pytest.raises(ValueError, match=r"\[\.\.\., K, d\]"):
    gm.mixture_log_prob(np.zeros((1, 3)), logits, np.zeros(3), cov)
  with pytest.raises(ValueError, match=r"\[K, d\]"):
    gm.mixture_conditional(np.zeros((4, 1)), np.zeros((4, 2)), np.zeros((4, 2, 3)), cov, 1)
  with pytest.raises(ValueError, match="cov_floor"):
    gm.em_step(np.zeros((4, 3)), logits, means, cov, cov_floor=-1.0)
