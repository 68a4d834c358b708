"""InfoNCE, its degenerate-GMJE derivation, and the sliced Epps-Pulley statistic."""

import math

import jax
import numpy as np
import pytest
from scipy import integrate
from scipy.special import log_softmax

import gjax.math as gm
from tests.helpers import grad_check, x64


def numpy_info_nce(zc, zt, tau):
  zc = zc / np.linalg.norm(zc, axis=-1, keepdims=True)
  zt = zt / np.linalg.norm(zt, axis=-1, keepdims=True)
  return -np.mean(np.diag(log_softmax(zc @ zt.T / tau, axis=-1)))


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5, 1.0])
def test_info_nce_matches_numpy_and_degenerate_gmje_equals_it(tau):
  rng = np.random.default_rng(0)
  zc, zt = rng.normal(size=(2, 64, 32)).astype(np.float32)
  ref = numpy_info_nce(zc.astype(np.float64), zt.astype(np.float64), tau)
  got = gm.info_nce(zc, zt, tau)
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  # The design doc's identity, in float32, to 1e-5.
  assert abs(float(gm.gmje_degenerate_info_nce(zc, zt, tau)) - float(got)) < 1e-5


def test_gmje_degenerate_equals_info_nce_in_float64_exactly():
  rng = np.random.default_rng(1)
  zc, zt = rng.normal(size=(2, 16, 8))
  with x64():
    np.testing.assert_allclose(gm.gmje_degenerate_info_nce(zc, zt, 0.2), gm.info_nce(zc, zt, 0.2), rtol=1e-12)


def test_info_nce_extremes():
  z = np.eye(8, dtype=np.float32)
  assert float(gm.info_nce(z, z, 0.01)) < 1e-6  # perfectly aligned, orthogonal negatives
  same = np.ones((8, 4), np.float32)
  np.testing.assert_allclose(gm.info_nce(same, same, 0.1), math.log(8), rtol=1e-6)  # collapsed


def closed_form_epps_pulley(x):
  """N ∫ |φ_N(t) - e^{-t²/2}|² e^{-t²/2} dt over the whole line, in closed form."""
  n = len(x)
  diff = x[:, None] - x[None, :]
  term_pairs = math.sqrt(2 * math.pi) * np.exp(-0.5 * diff**2).sum() / n**2
  term_cross = 2 * math.sqrt(math.pi) * np.exp(-0.25 * x**2).sum() / n
  return n * (term_pairs - term_cross + math.sqrt(2 * math.pi / 3))


def test_epps_pulley_against_closed_form_and_quadrature():
  rng = np.random.default_rng(2)
  cols = np.stack([rng.normal(size=50), 0.5 * rng.normal(size=50) + 1.0, rng.standard_t(2, size=50)], -1)
  with x64():
    fine = gm.epps_pulley(cols, t_max=12.0, num_knots=2001)
    default = gm.epps_pulley(cols)
  for j in range(3):
    ref = closed_form_epps_pulley(cols[:, j])
    np.testing.assert_allclose(fine[j], ref, rtol=1e-8)
    x = cols[:, j]
    integrand = lambda t: (np.mean(np.cos(t * x)) - np.exp(-t * t / 2)) ** 2 + np.mean(np.sin(t * x)) ** 2  # noqa: E731
    quad = len(x) * integrate.quad(lambda t: integrand(t) * np.exp(-t * t / 2), -12, 12, limit=400)[0]
    np.testing.assert_allclose(fine[j], quad, rtol=1e-7)
    # LeJEPA's 17 knots on [-5, 5] are a coarse approximation (within 5% on
    # smooth samples, 13% on the heavy-tailed t(2) column here).
    np.testing.assert_allclose(default[j], ref, rtol=0.05 if j < 2 else 0.2)
  # Gaussian samples score far lower than shifted/scaled or heavy-tailed ones.
  assert fine[0] < fine[1] and fine[0] < fine[2]


def test_sliced_statistic_separates_gaussian_from_collapsed():
  key = jax.random.PRNGKey(0)
  gauss = jax.random.normal(jax.random.PRNGKey(1), (512, 64))
  collapsed = gauss.at[:, 8:].set(0.0)  # dimensional collapse
  shrunk = 0.1 * gauss
  s_gauss = float(gm.sliced_epps_pulley(key, gauss, 128))
  assert s_gauss < 2.0  # E[T] under the null is O(1)
  assert float(gm.sliced_epps_pulley(key, collapsed, 128)) > 10 * s_gauss
  assert float(gm.sliced_epps_pulley(key, shrunk, 128)) > 10 * s_gauss
  dirs = gm.random_unit_directions(key, 64, 16)
  np.testing.assert_allclose(np.linalg.norm(dirs, axis=0), 1.0, rtol=1e-6)


def test_gradients_second_order():
  rng = np.random.default_rng(3)
  zc, zt = rng.normal(size=(2, 4, 3))
  grad_check(lambda a, b: gm.info_nce(a, b, 0.5), (zc, zt))
  grad_check(lambda a, b: gm.gmje_degenerate_info_nce(a, b, 0.5), (zc, zt))
  grad_check(lambda x: gm.epps_pulley(x, num_knots=9), (rng.normal(size=(6, 2)),))
  key = jax.random.PRNGKey(0)
  grad_check(lambda z: gm.sliced_epps_pulley(key, z, 4, num_knots=9), (rng.normal(size=(6, 3)),))


def test_bad_input_errors():
  z = np.ones((4, 3), np.float32)
  with pytest.raises(ValueError, match="same shape"):
    gm.info_nce(z, z[:3], 0.1)
  with pytest.raises(ValueError, match="temperature"):
    gm.gmje_degenerate_info_nce(z, z, 0.0)
  with pytest.raises(ValueError, match="num_knots"):
    gm.epps_pulley(z, num_knots=2)
  with pytest.raises(ValueError, match="num_slices"):
    gm.sliced_epps_pulley(jax.random.PRNGKey(0), z, 0)
  with pytest.raises(ValueError, match="2 dimensions"):
    gm.sliced_epps_pulley(jax.random.PRNGKey(0), z[0], 2)


def test_effective_rank_against_numpy_and_limits():
  rng = np.random.default_rng(6)
  z = rng.normal(size=(200, 5)) @ np.diag([3.0, 1.0, 1.0, 0.5, 0.1])
  s = np.linalg.svd(z - z.mean(0), compute_uv=False)
  p = s / s.sum()
  with x64():
    np.testing.assert_allclose(gm.effective_rank(z), np.exp(-(p * np.log(p)).sum()), rtol=1e-10)
    line = np.outer(rng.normal(size=100), rng.normal(size=4))
    np.testing.assert_allclose(gm.effective_rank(line), 1.0, rtol=1e-6)
    a = rng.normal(size=(64, 8))
    iso = np.linalg.qr(a - a.mean(0))[0]  # centred, orthonormal columns: equal singular values
    np.testing.assert_allclose(gm.effective_rank(iso), 8.0, rtol=1e-10)
  assert np.isfinite(gm.effective_rank(np.zeros((10, 3), np.float32)))
