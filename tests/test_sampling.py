"""Sample-quality metrics (MMD, k-NN precision/recall) and sampling from a trained density."""

import json

import numpy as np
import pytest

from gjax.eval import sampling
from studies.compare import sampling as sampling_study


def test_mmd_matches_a_direct_double_sum():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(30, 3)), rng.normal(0.5, 1.0, size=(20, 3))
  k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * 1.5**2))
  xx = sum(k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j) / (30 * 29)
  yy = sum(k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j) / (20 * 19)
  xy = sum(k(a, b) for a in x for b in y) / (30 * 20)
  np.testing.assert_allclose(sampling.mmd_rbf(x, y, 1.5), xx + yy - 2 * xy, rtol=1e-10)
  same = sampling.mmd_rbf(rng.normal(size=(500, 3)), rng.normal(size=(500, 3)), 1.0)
  shifted = sampling.mmd_rbf(rng.normal(size=(500, 3)), rng.normal(1.0, 1.0, size=(500, 3)), 1.0)
  assert abs(same) < 0.01 < shifted
  with pytest.raises(ValueError, match="dimension 3 and 2"):
    sampling.mmd_rbf(x, y[:, :2], 1.0)


def test_precision_recall_see_mode_dropping():
  rng = np.random.default_rng(1)
  real = np.concatenate([rng.normal(-5, 0.5, size=(300, 2)), rng.normal(5, 0.5, size=(300, 2))])
  one_mode = rng.normal(-5, 0.5, size=(600, 2))
  precision, recall = sampling.knn_precision_recall(real, one_mode)
  assert precision > 0.9 and 0.4 < recall < 0.6
  p_same, r_same = sampling.knn_precision_recall(real, real)
  assert p_same == r_same == 1.0
  p_far, _ = sampling.knn_precision_recall(real, rng.normal(0, 0.5, size=(200, 2)))
  assert p_far < 0.05


def test_fitted_gaussian_sampler_has_the_training_moments():
  rng = np.random.default_rng(2)
  train = rng.normal(size=(4000, 2)) @ np.array([[2.0, 0.0], [1.0, 0.5]]) + 3.0
  draws = sampling.fitted_gaussian_sampler(train)(rng, 20000)
  np.testing.assert_allclose(draws.mean(0), train.mean(0), atol=0.05)
  np.testing.assert_allclose(np.cov(draws.T), np.cov(train.T), atol=0.08)


def test_embeddings_and_density_of_a_trained_gmje(tmp_path):
  from gjax.eval import evaluator_settings, train_and_evaluate
  from tests.test_train import tiny_method_config

  config = tiny_method_config(
    **{"method": "gmje", "gmje.num_components": 2, "gmje.covariance_type": "diag", "num_train_steps": 1}
  )
  with config.unlocked():  # the sampling comparison online, as the over-training plot needs
    config.eval.evaluators = evaluator_settings("sampling")
    config.eval.evaluators.sampling.update(num_examples=40, gmm_components=2)
    config.eval.online_evaluators, config.eval.every_epochs = ("sampling",), 1.0
  train_and_evaluate(config, str(tmp_path))
  logged = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
  assert len(logged) == 1 and np.isfinite(logged[0]["sampling_learned_density_heldout_nll_per_dim"])
  joint, density, train_images = sampling_study.run_embeddings(config, str(tmp_path), 24, 0)
  assert train_images.shape[0] == 24 and train_images.dtype == np.uint8
  assert joint["train"].shape == joint["test"].shape == (24, 64) and np.all(np.isfinite(joint["test"]))
  assert density["density_means"].shape == (2, 64)
  # Training-mode embeddings: whole batches of the training batch size (16) only.
  assert joint["test_train_mode"].shape == (16, 64) and not np.allclose(joint["test_train_mode"], joint["test"][:16])
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    sampling_study.run_embeddings(config, str(tmp_path / "empty"), 8, 0)
  config_path = tmp_path / "tiny_config.py"
  config_path.write_text(
    f"import ml_collections, json\n"
    f"def get_config(variant=''):\n"
    f"  return ml_collections.ConfigDict(json.loads({config.to_json()!r}))\n"
  )
  out = tmp_path / "sampling.md"
  sampling_study.main(
    [
      "--run",
      f"tiny={config_path},{tmp_path}",
      "--run",
      f"own={tmp_path}",
      "--out",
      str(out),
      "--num_examples",
      "40",
      "--gmm_components",
      "2",
    ]
  )
  table = out.read_text()
  assert "| dispersion | held-out NLL (nats/dim) |" in table
  for sampler in (
    "Gaussian fitted afterwards",
    "2-component GMM fitted afterwards",
    "learned density",
    "learned density vs train-mode embeddings",
    "real train embeddings (floor)",
  ):
    assert f"| tiny | {sampler} |" in table and f"| own | {sampler} |" in table, sampler
  assert (tmp_path / "sampling_nearest_tiny.png").stat().st_size > 1000
  components = (tmp_path / "sampling_components.md").read_text().splitlines()
  assert len(components) == 2 + 2 * 2 and components[2].startswith("| tiny | 0 |")  # 2 runs x K = 2
  assert (tmp_path / "sampling_over_training.png").stat().st_size > 5000  # from the online rows of eval.jsonl
  # An earlier table's rows are kept for runs not embedded again (older rows lack the newer columns).
  previous = tmp_path / "previous.jsonl"
  previous.write_text(
    json.dumps(
      {"run": "old", "method": "gje", "sampler": "learned density", "mmd2": 0.5, "precision": 0.25, "recall": 0.125}
    )
    + "\n"
    + json.dumps({"run": "own", "method": "gje", "sampler": "stale", "mmd2": 0.0, "precision": 0.0, "recall": 0.0})
    + "\n"
  )
  sampling_study.main(
    [
      "--run",
      f"own={tmp_path}",
      "--out",
      str(tmp_path / "again.md"),
      "--num_examples",
      "40",
      "--gmm_components",
      "2",
      "--previous_rows",
      str(previous),
    ]
  )
  again = (tmp_path / "again.md").read_text().splitlines()
  assert again[2] == "| old | learned density | 0.5000 | 0.250 | 0.125 | - | - |" and "stale" not in "".join(again)
  # The same rows through eval.py's registry: the sampling evaluator on the run.
  from gjax.eval import evaluate

  with config.unlocked():
    config.eval.online_evaluators, config.eval.every_epochs = (), 0.0
  results = evaluate(config, str(tmp_path))
  rows = {
    r["sampler"]: r
    for r in map(json.loads, (tmp_path / "sampling.jsonl").read_text().splitlines())
    if r["run"] == "own"
  }
  for sampler, slug in (
    ("learned density", "learned_density"),
    ("2-component GMM fitted afterwards", "2_component_gmm_fitted_afterwards"),
  ):
    for metric in ("recall", "heldout_nll_per_dim", "mmd2"):
      assert results[f"sampling_{slug}_{metric}"] == pytest.approx(rows[sampler][metric], rel=1e-5), (slug, metric)


def test_fitted_densities_nll_against_scipy_and_each_other():
  from scipy import stats

  rng = np.random.default_rng(3)
  train = rng.normal(size=(4000, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]])
  test = rng.normal(size=(50, 3))
  expected = -stats.multivariate_normal(train.mean(0), np.cov(train.T) + 1e-4 * np.eye(3)).logpdf(test)
  np.testing.assert_allclose(sampling.fitted_gaussian_nll(train)(test), expected, rtol=1e-4)
  # One component: EM's maximum-likelihood Gaussian (covariance with 1/n, not 1/(n-1)).
  _, one_component_nll = sampling.fitted_mixture(train, 1, seed=0)
  np.testing.assert_allclose(one_component_nll(test), expected, rtol=2e-3)
  # Two well-separated clusters: the 2-component mixture's held-out NLL is far lower than one Gaussian's.
  two = np.concatenate([rng.normal(-5, 0.3, size=(500, 2)), rng.normal(5, 0.3, size=(500, 2))])
  held_out = np.concatenate([rng.normal(-5, 0.3, size=(100, 2)), rng.normal(5, 0.3, size=(100, 2))])
  sampler, nll = sampling.fitted_mixture(two, 2, seed=0)
  assert nll(held_out).mean() < sampling.fitted_gaussian_nll(two)(held_out).mean() - 2.0
  draws = sampler(np.random.default_rng(0), 2000)
  assert abs((draws[:, 0] > 0).mean() - 0.5) < 0.05 and np.abs(np.abs(draws).mean(0) - 5).max() < 0.2
  with pytest.raises(ValueError, match="needs >= 1 components"):
    sampling.fitted_mixture(two, 0, seed=0)
  quality = sampling.sample_quality(two, 0.5 * two, sampling.median_distance(two))
  assert quality["dispersion"] == pytest.approx(0.25)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "isotropic"])
def test_component_rows_find_the_collapsed_component(covariance_type):
  """Known answer: 70 % of the rows sit in a component with 3 of 4 directions at
  variance 1e-6, 30 % in a unit-variance one far away."""
  import jax.numpy as jnp

  rng = np.random.default_rng(0)
  d, n = 4, 4000
  tight_var = np.array([1e-6, 1e-6, 1e-6, 1.0]) if covariance_type != "isotropic" else np.full(d, 1e-6)
  tight = rng.normal(size=(int(0.7 * n), d)) * np.sqrt(tight_var)
  broad = rng.normal(size=(n - len(tight), d)) + 10.0
  real = np.concatenate([tight, broad])
  variances = np.stack([tight_var, np.ones(d)])
  cov = {
    "full": np.stack([np.diag(np.sqrt(v)) for v in variances]),  # Cholesky factors
    "diag": variances,
    "isotropic": variances[:, 0],
  }[covariance_type]
  density = {
    "density_logits": jnp.log(jnp.array([0.7, 0.3])),
    "density_means": jnp.array([np.zeros(d), np.full(d, 10.0)]),
    "density_cov": jnp.asarray(cov, jnp.float32),
  }
  rows = sampling_study.component_rows("r", density, covariance_type, real)
  assert [r["component"] for r in rows] == [0, 1]
  np.testing.assert_allclose([r["weight"] for r in rows], [0.7, 0.3], rtol=1e-5)
  np.testing.assert_allclose([r["test_mass"] for r in rows], [0.7, 0.3], atol=1e-6)
  np.testing.assert_allclose(rows[1]["mean_norm"], 20.0, rtol=1e-6)
  np.testing.assert_allclose([rows[0]["eig_min"], rows[1]["eig_max"]], [1e-6, 1.0], rtol=1e-4)
  # The threshold is 1e-3 x the mean variance of `real` (about 21 here): 0.021.
  assert rows[0]["degenerate_directions"] == (3 if covariance_type != "isotropic" else 4)
  assert rows[1]["degenerate_directions"] == 0 and rows[0]["dim"] == d
  # The table lists used components and counts the others.
  unused = dict(rows[1], component=2, weight=1e-5, test_mass=0.0)
  table = sampling_study.components_table(rows + [unused]).splitlines()
  assert len(table) == 2 + 3 and table[2].startswith("| r | 0 | 0.700 | 0.700 | 0.00 |")
  assert table[-1].startswith("| r | 1 unused (weight and test mass < 0.001) |")
