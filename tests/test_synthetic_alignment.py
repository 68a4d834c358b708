"""Synthetic multi-modal alignment: data sets, predictive densities, metrics."""

import numpy as np
import pytest
from scipy import stats

from gjax.data.multimodal import (
  BRANCHES,
  NOISE_STD,
  branch_values,
  make_multimodal,
  sample_true_conditional,
  true_conditional_log_prob,
)
from studies.synthetic_alignment import study as sa


@pytest.mark.parametrize("name", sorted(BRANCHES))
def test_data_sets_are_deterministic_with_the_stated_noise(name):
  a, b, c = make_multimodal(name, 4000, 0), make_multimodal(name, 4000, 0), make_multimodal(name, 4000, 1)
  np.testing.assert_array_equal(a.y, b.y)
  assert not np.array_equal(a.y, c.y)
  resid = a.y - branch_values(name, a.x)[np.arange(4000), a.branch]
  assert abs(resid.std() - NOISE_STD) < 0.003 and abs(resid.mean()) < 0.005
  counts = np.bincount(a.branch) / 4000
  np.testing.assert_allclose(counts, 1 / len(BRANCHES[name]), atol=0.03)
  assert a.pairs.shape == (4000, 2) and a.pairs.dtype == np.float32
  # The true conditional is a density in y: it integrates to 1 at any context.
  y = np.linspace(-3, 3, 6001)
  for x0 in (-0.7, 0.0, 0.4):
    p = np.exp(true_conditional_log_prob(name, np.full_like(y, x0), y))
    np.testing.assert_allclose(p.sum() * (y[1] - y[0]), 1.0, atol=1e-4)
  draws = sample_true_conditional(name, np.array([0.3]), 20000, np.random.default_rng(0))[0]
  assert abs(draws.mean() - branch_values(name, [0.3]).mean()) < 0.02


def test_unknown_data_set_and_bad_sizes_are_rejected():
  with pytest.raises(ValueError, match="unknown multimodal data set 'D'"):
    make_multimodal("D", 10, 0)
  with pytest.raises(ValueError, match="num_examples must be >= 1"):
    make_multimodal("A", 0, 0)


def test_energy_distance_is_scipys_squared():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=300), rng.normal(0.5, 2.0, size=200)
  np.testing.assert_allclose(sa.energy_distance_1d(a, b), stats.energy_distance(a, b) ** 2, rtol=1e-10)


def test_predictive_samples_follow_its_density():
  pred = sa.Predictive(np.log([[0.2, 0.8]]), np.array([[-1.0, 2.0]]), np.array([[0.25, 0.04]]))
  draws = pred.sample(50000, np.random.default_rng(0))[0]
  grid = np.linspace(-4, 4, 8001)
  cdf = np.cumsum(np.exp(sa.Predictive(*(np.repeat(a, len(grid), 0) for a in pred)).log_prob(grid))) * 1e-3
  assert stats.kstest(draws, lambda t: np.interp(t, grid, cdf)).pvalue > 1e-3


@pytest.mark.parametrize(
  "method,kwargs",
  [
    ("jepa", {"steps": 200}),
    ("rbf", {}),
    ("gmje_em_k3", {}),
    ("gmje_gng", {"epochs": 2}),
    ("gmje_mdn", {"steps": 300}),
  ],
)
def test_every_predictive_conditional_integrates_to_one(method, kwargs):
  data = make_multimodal("C", 600, 0)
  if method == "gmje_em_k3":
    predict = sa.fit_gmje_em(data.x, data.y, 0, 3, steps=100)
  else:
    predict = getattr(sa, f"fit_{method}")(data.x, data.y, 0, **kwargs)
  y = np.linspace(-4, 4, 8001)
  for x0 in (-0.5, 0.2):
    p = np.exp(predict(np.full_like(y, x0)).log_prob(y))
    np.testing.assert_allclose(p.sum() * (y[1] - y[0]), 1.0, atol=2e-3)


def test_mdn_routes_each_branch_to_a_component_and_unimodal_baselines_cannot():
  data, test = make_multimodal("A", 1500, 0), make_multimodal("A", 500, 1)
  contexts = np.linspace(-0.9, 0.9, 19)
  mdn = sa.fit_gmje_mdn(data.x, data.y, 0, steps=2000)
  jepa = sa.fit_jepa(data.x, data.y, 0, steps=500)
  m_mdn = sa.predictive_metrics("A", mdn, test, contexts, np.random.default_rng(0))
  m_jepa = sa.predictive_metrics("A", jepa, test, contexts, np.random.default_rng(0))
  assert m_mdn["coverage"] > 0.9 and m_jepa["coverage"] < 0.4
  assert m_mdn["test_nll"] < m_jepa["test_nll"] - 1.0
  pred = mdn(contexts)
  weights = np.exp(pred.logits - sa._logsumexp(pred.logits))
  np.testing.assert_allclose(np.sort(weights, axis=1).mean(0), 1 / 3, atol=0.1)
  assert np.all(np.abs(np.sqrt(pred.var).mean() - NOISE_STD) < 0.03)
