"""KL divergences and the VJE symmetric objective (Eq. 9/34, 37-38)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import gjax.math as gm
from tests.helpers import grad_check, x64


def kl_1d_by_quadrature(mq, vq, mp, vp):
  q, p = stats.norm(mq, math.sqrt(vq)), stats.norm(mp, math.sqrt(vp))
  f = lambda x: q.pdf(x) * (q.logpdf(x) - p.logpdf(x))  # noqa: E731
  return integrate.quad(f, mq - 15 * math.sqrt(vq), mq + 15 * math.sqrt(vq), limit=200)[0]


def test_kl_against_numerical_integration():
  rng = np.random.default_rng(0)
  mq, mp = rng.normal(size=3), rng.normal(size=3)
  vq, vp = rng.uniform(0.2, 3, 3), rng.uniform(0.2, 3, 3)
  with x64():
    got = gm.kl_diag_gaussians(mq, vq, mp, vp)
    got_std = gm.kl_diag_gaussian_standard_normal(mq, vq)
  np.testing.assert_allclose(got, sum(kl_1d_by_quadrature(*a) for a in zip(mq, vq, mp, vp)), rtol=1e-8)
  np.testing.assert_allclose(got_std, sum(kl_1d_by_quadrature(m, v, 0.0, 1.0) for m, v in zip(mq, vq)), rtol=1e-8)


def test_kl_zero_iff_equal():
  mean, var = np.array([0.3, -1.0]), np.array([0.5, 2.0])
  with x64():
    assert float(gm.kl_diag_gaussians(mean, var, mean, var)) == pytest.approx(0.0, abs=1e-14)
    assert float(gm.kl_diag_gaussian_standard_normal(np.zeros(4), np.ones(4))) == 0.0


def numpy_vje_eq38(z1, z2, mu1, var1, mu2, var2, e1, e2, nu, beta, eps=1e-6):
  """Eq. 38 / Algorithm 4 written out in plain numpy."""

  def normalize(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)

  def nll_dir(z, s, var):
    d = z.shape[-1]
    q = ((normalize(s) - normalize(z)) ** 2 / var).sum(-1)
    return 0.5 * (nu + d) * np.log(1 + q / nu) + 0.5 * np.log(var).sum(-1)

  def nll_rad(z, s):
    dr = np.linalg.norm(z, axis=-1) - np.linalg.norm(s, axis=-1)
    return 0.5 * (nu + 1) * np.log(1 + dr**2 / nu)

  def kld(mu, var):
    return 0.5 * (var + mu**2 - 1 - np.log(var)).sum(-1)

  s1, s2 = mu1 + np.sqrt(var1) * e1, mu2 + np.sqrt(var2) * e2
  l_dir = 0.5 * (nll_dir(z2, s1, var1) + nll_dir(z1, s2, var2))
  l_rad = 0.5 * (nll_rad(z2, s1) + nll_rad(z1, s2))
  l_kl = 0.5 * (kld(mu1, var1) + kld(mu2, var2))
  return (l_dir + l_rad + beta * l_kl).mean(), l_dir.mean(), l_rad.mean(), l_kl.mean()


def vje_inputs(seed=0, b=8, d=16):
  rng = np.random.default_rng(seed)
  z1, z2 = rng.normal(size=(2, b, d))
  mu1, mu2 = rng.normal(size=(2, b, d))
  var1, var2 = rng.uniform(0.05, 2, size=(2, b, d))
  e1, e2 = rng.normal(size=(2, b, d))
  return z1, z2, mu1, var1, mu2, var2, e1, e2


@pytest.mark.parametrize("nu,beta", [(3.0, 1.0), (0.5, 0.0), (20.0, 1.5)])
def test_vje_loss_equals_numpy_eq38(nu, beta):
  args = vje_inputs()
  with x64():
    loss, parts = gm.vje_symmetric_loss(*args, nu=nu, beta=beta)
  ref, ref_dir, ref_rad, ref_kl = numpy_vje_eq38(*args, nu=nu, beta=beta)
  np.testing.assert_allclose(loss, ref, rtol=1e-12)
  np.testing.assert_allclose(
    [parts["directional"], parts["radial"], parts["kl"]], [ref_dir, ref_rad, ref_kl], rtol=1e-12
  )
  # float32 agrees to float32 precision.
  args32 = [a.astype(np.float32) for a in args]
  np.testing.assert_allclose(gm.vje_symmetric_loss(*args32, nu=nu, beta=beta)[0], ref, rtol=2e-5)


def test_vje_toggles_select_terms():
  args = vje_inputs(1)
  with x64():
    full, parts = gm.vje_symmetric_loss(*args, nu=3.0, beta=2.0)
    only_dir, _ = gm.vje_symmetric_loss(*args, nu=3.0, beta=2.0, use_radial=False, use_kl=False)
    no_kl, _ = gm.vje_symmetric_loss(*args, nu=3.0, beta=2.0, use_kl=False)
    only_kl, _ = gm.vje_symmetric_loss(*args, nu=3.0, beta=2.0, use_directional=False, use_radial=False)
    parts = {k: np.asarray(v) for k, v in parts.items()}
  np.testing.assert_allclose(full, parts["directional"] + parts["radial"] + 2.0 * parts["kl"], rtol=1e-12)
  np.testing.assert_allclose(only_dir, parts["directional"], rtol=1e-12)
  np.testing.assert_allclose(no_kl, parts["nll"], rtol=1e-12)
  np.testing.assert_allclose(only_kl, 2.0 * parts["kl"], rtol=1e-12)


def test_vje_target_gradient_is_exactly_zero():
  z1, z2, mu1, var1, mu2, var2, e1, e2 = [jnp.asarray(a, jnp.float32) for a in vje_inputs(2)]

  def loss_of(z1_, z2_):
    return gm.vje_symmetric_loss(z1_, z2_, mu1, var1, mu2, var2, e1, e2, nu=3.0, beta=1.0)[0]

  g1, g2 = jax.grad(loss_of, argnums=(0, 1))(z1, z2)
  assert np.all(np.asarray(g1) == 0.0) and np.all(np.asarray(g2) == 0.0)

  # ...while the posterior parameters do receive gradient through the likelihood.
  def nll_of(mu):
    return gm.vje_symmetric_loss(z1, z2, mu, var1, mu2, var2, e1, e2, nu=3.0, use_kl=False)[0]

  assert np.abs(np.asarray(jax.grad(nll_of)(mu1))).max() > 0


def test_vje_gradients_second_order():
  z1, z2, mu1, var1, mu2, var2, e1, e2 = vje_inputs(3, b=2, d=3)
  grad_check(
    lambda m1, v1, m2, v2: gm.vje_symmetric_loss(z1, z2, m1, v1, m2, v2, e1, e2, nu=3.0, beta=1.0)[0],
    (mu1, var1, mu2, var2),
  )
  grad_check(
    lambda m1, v1: gm.vje_symmetric_loss(z1, z2, m1, v1, mu2, var2, e1, e2, nu=math.inf, beta=0.5)[0], (mu1, var1)
  )
  grad_check(gm.kl_diag_gaussian_standard_normal, (mu1, var1))
  grad_check(gm.kl_diag_gaussians, (mu1, var1, mu2, var2))


def test_vje_bad_input_errors():
  args = [a.astype(np.float32) for a in vje_inputs(4)]
  with pytest.raises(ValueError, match="beta must be >= 0"):
    gm.vje_symmetric_loss(*args, nu=3.0, beta=-0.1)
  with pytest.raises(ValueError, match="nu must be > 0"):
    gm.vje_symmetric_loss(*args, nu=0.0)
  with pytest.raises(ValueError, match="at least one"):
    gm.vje_symmetric_loss(*args, nu=3.0, use_directional=False, use_radial=False, use_kl=False)
  bad = list(args)
  bad[2] = bad[2][:4]
  with pytest.raises(ValueError, match="mu_1 has shape"):
    gm.vje_symmetric_loss(*bad, nu=3.0)
  with pytest.raises(ValueError, match="last dimensions must match"):
    gm.kl_diag_gaussian_standard_normal(np.zeros(3), np.ones(4))
  with pytest.raises(ValueError, match="var_p must be > 0"):
    gm.kl_diag_gaussians(np.zeros(2), np.ones(2), np.zeros(2), np.zeros(2))
