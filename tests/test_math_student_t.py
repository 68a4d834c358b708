"""Student-t likelihoods of VJE against scipy, closed forms and integration."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import gjax.math as gm
from tests.helpers import grad_check, random_spd, x64

NUS = [0.25, 0.5, 1.0, 3.0, 30.0]


@pytest.mark.parametrize("nu", NUS + [math.inf])
def test_multivariate_log_prob_matches_scipy(nu):
  rng = np.random.default_rng(0)
  d = 4
  cov = random_spd(rng, d)
  loc, x = rng.normal(size=d), 3 * rng.normal(size=(7, d))
  with x64():
    got = gm.multivariate_student_t_log_prob(x, loc, np.linalg.cholesky(cov), nu)
  ref = (
    stats.multivariate_normal(loc, cov).logpdf(x) if math.isinf(nu) else stats.multivariate_t(loc, cov, df=nu).logpdf(x)
  )
  np.testing.assert_allclose(got, ref, rtol=1e-10)


@pytest.mark.parametrize("nu", NUS + [math.inf])
def test_diag_nll_is_eq14_up_to_the_constant(nu):
  rng = np.random.default_rng(1)
  d = 5
  var = rng.uniform(0.2, 3, d)
  z, s = rng.normal(size=(6, d)), rng.normal(size=(6, d))
  with x64():
    nll = np.asarray(gm.multivariate_student_t_nll(z, s, var, nu))
  ref = (
    stats.multivariate_normal(s[0] * 0, np.diag(var)).logpdf(z - s)
    if math.isinf(nu)
    else stats.multivariate_t(np.zeros(d), np.diag(var), df=nu).logpdf(z - s)
  )
  np.testing.assert_allclose(gm.student_t_log_normalizer(nu, d) - nll, ref, rtol=1e-10)


@pytest.mark.parametrize("nu", NUS + [math.inf])
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_radial_kernel_is_normalised_1d_t(nu, scale):
  log_c = gm.student_t_radial_log_normalizer(nu, scale)
  with x64():

    def density(dr):
      z = np.array([[1.0 + max(dr, 0.0), 0.0]])
      s = np.array([[1.0 + max(-dr, 0.0), 0.0]])  # ||z|| - ||s|| = dr
      return float(np.exp(log_c - gm.student_t_radial_nll(z, s, nu, scale)[0]))

    ref_dist = stats.norm(scale=math.sqrt(scale)) if math.isinf(nu) else stats.t(df=nu, scale=math.sqrt(scale))
    for dr in (-2.5, 0.0, 0.7):
      np.testing.assert_allclose(density(dr), ref_dist.pdf(dr), rtol=1e-10)
  if nu >= 1:  # the heaviest tails need an infinite-range quadrature below
    total = integrate.quad(density, -np.inf, np.inf, limit=500)[0]
  else:
    total = sum(integrate.quad(density, a, b, limit=500)[0] for a, b in [(-np.inf, -1), (-1, 1), (1, np.inf)])
  assert abs(total - 1.0) < 1e-6


@pytest.mark.parametrize("nu", [0.5, 3.0, math.inf])
def test_directional_nll_matches_algorithm_1(nu):
  rng = np.random.default_rng(2)
  d = 6
  z, s = 2 * rng.normal(size=(4, d)), rng.normal(size=(4, d))
  var = rng.uniform(0.1, 2, size=(4, d))
  zh = z / np.linalg.norm(z, axis=-1, keepdims=True)
  sh = s / np.linalg.norm(s, axis=-1, keepdims=True)
  q = ((sh - zh) ** 2 / var).sum(-1)
  first = 0.5 * q if math.isinf(nu) else 0.5 * (nu + d) * np.log1p(q / nu)
  ref = first + 0.5 * np.log(var).sum(-1)
  with x64():
    np.testing.assert_allclose(gm.student_t_directional_nll(z, s, var, nu), ref, rtol=1e-12)
    # Invariant to the scale of either embedding.
    np.testing.assert_allclose(gm.student_t_directional_nll(5 * z, 0.1 * s, var, nu), ref, rtol=1e-10)


def test_radial_nll_matches_algorithm_2():
  rng = np.random.default_rng(3)
  z, s = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
  dr = np.linalg.norm(z, axis=-1) - np.linalg.norm(s, axis=-1)
  with x64():
    np.testing.assert_allclose(gm.student_t_radial_nll(z, s, 3.0), 2.0 * np.log1p(dr**2 / 3.0), rtol=1e-12)
    np.testing.assert_allclose(gm.student_t_radial_nll(z, s, math.inf), 0.5 * dr**2, rtol=1e-12)


def test_gaussian_limit_is_exact_and_continuous():
  q = np.array([0.0, 0.5, 3.0, 40.0])
  with x64():
    np.testing.assert_array_equal(gm.student_t_kernel(q, math.inf, 7), 0.5 * q)
    # nu -> inf converges to the limit (difference O(1/nu)).
    gaps = [float(jnp.max(jnp.abs(gm.student_t_kernel(q, nu, 7) - 0.5 * q))) for nu in (1e3, 1e5, 1e7)]
  assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-4
  assert gm.student_t_log_normalizer(math.inf, 3) == pytest.approx(-1.5 * math.log(2 * math.pi))
  assert gm.student_t_log_normalizer(1e12, 3) == pytest.approx(-1.5 * math.log(2 * math.pi), abs=1e-9)


def test_gradients_second_order():
  rng = np.random.default_rng(4)
  z, s = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
  var = rng.uniform(0.5, 2, size=(2, 4))
  low = np.linalg.cholesky(random_spd(rng, 4))
  for nu in (0.5, 3.0, math.inf):
    grad_check(lambda a, b, v: gm.student_t_directional_nll(a, b, v, nu), (z, s, var))
    grad_check(lambda a, b: gm.student_t_radial_nll(a, b, nu), (z, s))
    grad_check(lambda a, b, v: gm.multivariate_student_t_nll(a, b, v, nu), (z, s, var))
  grad_check(lambda a, l: gm.multivariate_student_t_log_prob(a, s, l, 2.0), (z, low))


def test_gradient_matches_eq14():
  rng = np.random.default_rng(5)
  z, s = rng.normal(size=4), rng.normal(size=4)
  var = rng.uniform(0.5, 2, 4)
  nu = 2.5
  with x64():
    g = jax.grad(lambda a: gm.multivariate_student_t_nll(a, s, var, nu))(z)
  r = (z - s) / var
  q = ((z - s) ** 2 / var).sum()
  np.testing.assert_allclose(g, (nu + 4) / (nu + q) * r, rtol=1e-12)


def test_bad_input_errors():
  z = np.ones((2, 3), np.float32)
  for bad in (0.0, -1.0, float("nan")):
    with pytest.raises(ValueError, match="nu must be > 0"):
      gm.student_t_directional_nll(z, z, z, bad)
  with pytest.raises(TypeError, match="nu must be a number"):
    gm.student_t_radial_nll(z, z, "three")
  with pytest.raises(TypeError, match="static"):
    jax.jit(lambda n: gm.student_t_kernel(jnp.ones(2), n, 2))(3.0)
  with pytest.raises(ValueError, match="var must be > 0"):
    gm.student_t_directional_nll(z, z, -z, 3.0)
  with pytest.raises(ValueError, match="last dimensions must match"):
    gm.student_t_radial_nll(z, np.ones((2, 4)), 3.0)
  with pytest.raises(ValueError, match="scale must be"):
    gm.student_t_radial_nll(z, z, 3.0, scale=0.0)
