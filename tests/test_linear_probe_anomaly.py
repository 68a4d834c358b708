"""Linear probe (VJE Section 5.2) and one-class anomaly scores/AUROC (Section 5.3)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gjax.data import data_mesh
from gjax.eval.anomaly import auroc, entropy_score, joint_nll_score, variance_sum_score, vje_anomaly_scores
from gjax.eval.linear_probe import fit_linear_probe, linear_probe_topk, train_linear_probe


def gaussian_clusters(n_per_class, num_classes, dim, separation, seed):
  rng = np.random.default_rng(seed)
  centres = separation * rng.normal(size=(num_classes, dim))
  labels = np.repeat(np.arange(num_classes), n_per_class)
  feats = centres[labels] + rng.normal(size=(len(labels), dim))
  perm = rng.permutation(len(labels))
  return feats[perm].astype(np.float32), labels[perm]


# ----------------------------------------------------------------- linear probe


def test_probe_separates_far_apart_clusters():
  x, y = gaussian_clusters(150, 4, 16, 5.0, 0)
  result = train_linear_probe(x[:400], y[:400], x[400:], y[400:], epochs=8, batch_size=64, learning_rate=0.1)
  assert result["top1"] >= 0.99 and result["train_top1"] >= 0.99
  assert result["top5"] >= result["top1"] and result["top5"] == 1.0  # 4 classes <= 5
  assert np.isfinite(result["final_loss"]) and result["final_loss"] < 0.1


def test_probe_is_at_chance_on_random_labels():
  rng = np.random.default_rng(1)
  train_x, test_x = rng.normal(size=(512, 8)), rng.normal(size=(2000, 8))
  train_y, test_y = rng.integers(0, 10, 512), rng.integers(0, 10, 2000)
  result = train_linear_probe(
    train_x, train_y, test_x, test_y, num_classes=10, epochs=4, batch_size=128, learning_rate=0.05
  )
  assert abs(result["top1"] - 0.1) < 0.04
  assert abs(result["top5"] - 0.5) < 0.06
  assert result["top5"] >= result["top1"]


def test_probe_on_eight_devices_matches_one_device():
  assert len(jax.devices()) == 8
  x, y = gaussian_clusters(80, 5, 12, 1.0, 2)  # overlapping clusters: accuracy below 1
  kwargs = dict(epochs=5, batch_size=64, learning_rate=0.2, weight_decay=1e-4, seed=3)
  probe_8 = fit_linear_probe(x[:320], y[:320], mesh=data_mesh(), **kwargs)
  probe_1 = fit_linear_probe(x[:320], y[:320], mesh=data_mesh(jax.devices()[:1]), **kwargs)
  np.testing.assert_allclose(probe_8.weights, probe_1.weights, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(probe_8.bias, probe_1.bias, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(probe_8.final_loss, probe_1.final_loss, rtol=1e-5)
  assert linear_probe_topk(probe_8, x[320:], y[320:]) == linear_probe_topk(probe_1, x[320:], y[320:])
  # Same seed -> same probe; another seed -> another initialisation/shuffle.
  again = fit_linear_probe(x[:320], y[:320], mesh=data_mesh(), **kwargs)
  np.testing.assert_array_equal(again.weights, probe_8.weights)
  other = fit_linear_probe(x[:320], y[:320], mesh=data_mesh(), **{**kwargs, "seed": 4})
  assert not np.allclose(other.weights, probe_8.weights, atol=1e-5)


def test_probe_standardises_with_train_statistics():
  x, y = gaussian_clusters(40, 2, 4, 3.0, 5)
  x = x * np.array([1.0, 10.0, 0.1, 1.0], np.float32) + 100.0
  x[:, 3] = 7.0  # constant column: centred, not scaled
  probe = fit_linear_probe(x, y, epochs=1, batch_size=16)
  np.testing.assert_allclose(probe.mean, x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(probe.std[:3], x[:, :3].std(0), rtol=1e-4)
  assert probe.std[3] == 1.0
  raw = fit_linear_probe(x, y, epochs=1, batch_size=16, standardize=False)
  assert np.all(raw.mean == 0) and np.all(raw.std == 1)


def test_probe_input_errors():
  x, y = gaussian_clusters(16, 2, 4, 3.0, 6)
  bad = x.copy()
  bad[[1, 5], 0] = np.nan
  bad[7, 2] = np.inf
  with pytest.raises(ValueError, match="non-finite values in 3 of 32 rows"):
    train_linear_probe(bad, y, x, y, epochs=1, batch_size=8)
  bad_test = x.copy()
  bad_test[[3, 4], 1] = -np.inf
  with pytest.raises(ValueError, match="test_x has non-finite values in 2 of 32 rows"):
    train_linear_probe(x, y, bad_test, y, epochs=1, batch_size=8)
  with pytest.raises(ValueError, match="31 labels but train_x has 32 rows"):
    train_linear_probe(x, y[:31], x, y, epochs=1, batch_size=8)
  with pytest.raises(ValueError, match="30 labels but test_x has 32 rows"):
    train_linear_probe(x, y, x, y[:30], epochs=1, batch_size=8)
  with pytest.raises(ValueError, match=r"batch_size=12 .* 8 devices"):
    train_linear_probe(x, y, x, y, epochs=1, batch_size=12)
  with pytest.raises(ValueError, match="batch_size=40 exceeds the 32 training"):
    train_linear_probe(x, y, x, y, epochs=1, batch_size=40)
  with pytest.raises(ValueError, match="feature sizes differ"):
    train_linear_probe(x, y, x[:, :3], y, epochs=1, batch_size=8)
  with pytest.raises(ValueError, match="class index 1 >= num_classes=1"):
    fit_linear_probe(x, y, num_classes=1, epochs=1, batch_size=8)


# ----------------------------------------------------------------------- AUROC


def test_auroc_matches_sklearn_with_ties():
  rng = np.random.default_rng(0)
  labels = rng.random(500) < 0.3
  scores = np.round(rng.normal(size=500) + 0.8 * labels, 1)  # many ties
  assert len(np.unique(scores)) < 100
  assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
  ints = labels.astype(int)
  assert auroc(scores, ints) == pytest.approx(roc_auc_score(ints, scores), abs=1e-12)


def test_auroc_extremes():
  labels = np.array([0, 0, 0, 1, 1])
  assert auroc([0.1, 0.2, 0.3, 0.9, 1.5], labels) == 1.0
  assert auroc([0.9, 1.2, 0.7, 0.1, 0.2], labels) == 0.0
  assert auroc(np.full(5, 3.0), labels) == 0.5


def test_auroc_errors():
  with pytest.raises(ValueError, match="both classes; got 0 anomalies and 3 normal"):
    auroc([0.1, 0.2, 0.3], [False, False, False])
  with pytest.raises(ValueError, match="both classes; got 3 anomalies and 0 normal"):
    auroc([0.1, 0.2, 0.3], [1, 1, 1])
  with pytest.raises(ValueError, match="3 entries but is_anomaly has 2"):
    auroc([0.1, 0.2, 0.3], [0, 1])
  with pytest.raises(ValueError, match="1-D"):
    auroc(np.zeros((2, 2)), np.zeros((2, 2)))
  with pytest.raises(ValueError, match="2 non-finite entries of 4"):
    auroc([0.1, np.nan, np.inf, 0.3], [0, 1, 0, 1])
  with pytest.raises(ValueError, match="boolean or 0/1"):
    auroc([0.1, 0.2, 0.3], [0, 1, 2])


# ------------------------------------------------------------ anomaly scores


def numpy_eq39(z, s, var, nu):
  """Eq. 39 in float64 numpy: directional (Eq. 24) + radial (Eq. 29, λ = 1)."""
  z, s, var = (np.asarray(a, np.float64) for a in (z, s, var))
  dim = z.shape[-1]
  z_norm = np.linalg.norm(z, axis=-1, keepdims=True)
  s_norm = np.linalg.norm(s, axis=-1, keepdims=True)
  z_hat, s_hat = z / np.maximum(z_norm, 1e-6), s / np.maximum(s_norm, 1e-6)
  q = np.sum((s_hat - z_hat) ** 2 / var, axis=-1)
  dr2 = (z_norm[..., 0] - s_norm[..., 0]) ** 2
  if math.isinf(nu):
    directional, radial = 0.5 * q, 0.5 * dr2
  else:
    directional = 0.5 * (nu + dim) * np.log1p(q / nu)
    radial = 0.5 * (nu + 1) * np.log1p(dr2 / nu)
  return directional + 0.5 * np.sum(np.log(var), axis=-1) + radial


def posterior_batch(seed, n=6, dim=5):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3.0, size=(n, 1))
  mu = z + 0.3 * rng.normal(size=(n, dim))
  var = rng.uniform(0.05, 1.0, size=(n, dim))
  return z.astype(np.float32), mu.astype(np.float32), var.astype(np.float32)


@pytest.mark.parametrize("nu", [0.5, 3.0, math.inf])
def test_joint_score_at_posterior_mean_is_eq39(nu):
  z, mu, var = posterior_batch(0)
  got = joint_nll_score(z, mu, var, nu)
  assert got.shape == (6,)
  np.testing.assert_allclose(got, numpy_eq39(z, mu, var, nu), rtol=2e-5, atol=1e-4)
  # jit-able with nu static; batched over extra leading axes.
  jitted = jax.jit(joint_nll_score, static_argnames=("nu",))(z, mu, var, nu=nu)
  np.testing.assert_allclose(jitted, got, rtol=1e-6)
  stacked = joint_nll_score(np.stack([z, z]), np.stack([mu, mu]), np.stack([var, var]), nu)
  np.testing.assert_allclose(stacked, np.stack([got, got]), rtol=1e-6)


def test_joint_score_cross_view_uses_z_obs():
  z, mu, var = posterior_batch(1)
  z_other = z + 0.5
  got = joint_nll_score(z, mu, var, 0.5, z_obs=z_other)
  np.testing.assert_allclose(got, numpy_eq39(z_other, mu, var, 0.5), rtol=2e-5, atol=1e-4)
  assert not np.allclose(got, joint_nll_score(z, mu, var, 0.5))


@pytest.mark.parametrize("nu", [0.5, math.inf])
def test_joint_score_monte_carlo(nu):
  z, mu, var = posterior_batch(2)
  key = jax.random.key(7)
  for m in (1, 16):
    got = joint_nll_score(z, mu, var, nu, num_samples=m, rng=key)
    assert got.shape == (6,) and np.all(np.isfinite(got))
    noise = np.asarray(jax.random.normal(key, (m,) + mu.shape, jnp.float32), np.float64)
    samples = mu + np.sqrt(var.astype(np.float64)) * noise
    expected = numpy_eq39(z[None], samples, var[None], nu).mean(axis=0)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-4)
  # Convergence of the MC average: large M against an independent numpy estimate.
  got = joint_nll_score(z, mu, var, nu, num_samples=4000, rng=jax.random.key(8))
  rng = np.random.default_rng(9)
  samples = mu + np.sqrt(var.astype(np.float64)) * rng.normal(size=(20000,) + mu.shape)
  per_sample = numpy_eq39(z[None], samples, var[None], nu)
  reference = per_sample.mean(axis=0)
  std_error = per_sample.std(axis=0) * (1 / np.sqrt(4000) + 1 / np.sqrt(20000))
  assert np.all(np.abs(np.asarray(got) - reference) < 5 * std_error + 1e-4)
  # The expectation differs from the point estimate at the mean.
  assert np.any(np.abs(np.asarray(got) - joint_nll_score(z, mu, var, nu)) > 10 * std_error)


def test_variance_and_entropy_scores_closed_form():
  _, _, var = posterior_batch(3)
  np.testing.assert_allclose(variance_sum_score(var), var.astype(np.float64).sum(-1), rtol=1e-6)
  entropy = 0.5 * np.sum(np.log(2 * np.pi * np.e * var.astype(np.float64)), axis=-1)
  np.testing.assert_allclose(entropy_score(var), entropy, rtol=1e-5, atol=1e-5)
  # Against scipy's multivariate normal entropy for one row.
  import scipy.stats

  ref = scipy.stats.multivariate_normal(np.zeros(5), np.diag(var[0].astype(np.float64))).entropy()
  np.testing.assert_allclose(entropy_score(var)[0], ref, rtol=1e-5)
  z, mu, var64 = posterior_batch(3)
  scores = vje_anomaly_scores(z, mu, var64, 0.5)
  assert set(scores) == {
    "joint",
    "joint_kernel",
    "joint_log_det",
    "joint_radial",
    "neg_elbo",
    "variance_sum",
    "entropy",
  }
  # The parts against plain numpy (Eq. 24, 29, 9), and the ELBO = joint + KL.
  z, mu, v = (np.asarray(a, np.float64) for a in (z, mu, var64))
  unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
  q = np.sum((unit(mu) - unit(z)) ** 2 / v, -1)
  d = z.shape[-1]
  np.testing.assert_allclose(scores["joint_kernel"], 0.5 * (0.5 + d) * np.log1p(q / 0.5), rtol=1e-4)
  np.testing.assert_allclose(scores["joint_log_det"], 0.5 * np.log(v).sum(-1), rtol=1e-5, atol=1e-5)
  dr = np.linalg.norm(z, axis=-1) - np.linalg.norm(mu, axis=-1)
  np.testing.assert_allclose(scores["joint_radial"], 0.5 * 1.5 * np.log1p(dr**2 / 0.5), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(
    scores["joint"], scores["joint_kernel"] + scores["joint_log_det"] + scores["joint_radial"], rtol=1e-5, atol=1e-5
  )
  kl = 0.5 * np.sum(v + mu**2 - 1 - np.log(v), -1)
  np.testing.assert_allclose(scores["neg_elbo"], np.asarray(scores["joint"]) + kl, rtol=1e-4, atol=1e-4)
  assert jax.jit(entropy_score)(var).shape == (6,)


def test_scores_finite_in_float32_at_zero_norm_and_floor_variance():
  z, mu, var = posterior_batch(4)
  z[0] = 0.0
  mu[1] = 0.0
  var[:] = 1e-6
  z, mu, var = (jnp.asarray(a, jnp.float32) for a in (z, mu, var))
  for nu in (0.5, 3.0, math.inf):
    for m in (0, 4):
      score = joint_nll_score(z, mu, var, nu, num_samples=m, rng=jax.random.key(0))
      assert score.dtype == jnp.float32 and np.all(np.isfinite(score)), (nu, m, score)
  assert np.all(np.isfinite(entropy_score(var))) and np.all(np.isfinite(variance_sum_score(var)))


def test_score_errors():
  z, mu, var = posterior_batch(5)
  with pytest.raises(ValueError, match="needs a PRNG key"):
    joint_nll_score(z, mu, var, 0.5, num_samples=3)
  with pytest.raises(ValueError, match="num_samples must be an integer >= 0"):
    joint_nll_score(z, mu, var, 0.5, num_samples=-1)
  with pytest.raises(ValueError, match="mu has shape"):
    joint_nll_score(z, mu[:3], var, 0.5)
  with pytest.raises(ValueError, match="z_obs has shape"):
    joint_nll_score(z, mu, var, 0.5, z_obs=z[:, :2])
  with pytest.raises(ValueError, match="var must be > 0"):
    joint_nll_score(z, mu, -var, 0.5)
  with pytest.raises(ValueError, match="nu must be > 0"):
    joint_nll_score(z, mu, var, 0.0)
  with pytest.raises(ValueError, match="var must be > 0"):
    entropy_score(np.zeros((2, 3)))


def test_gaussian_density_score_matches_scipy_and_separates():
  from scipy import stats

  from gjax.eval.anomaly import auroc, gaussian_density_score

  rng = np.random.default_rng(11)
  train = rng.normal(size=(400, 5)) @ np.diag([2.0, 1.0, 1.0, 0.5, 0.5])
  normal_test = rng.normal(size=(100, 5)) @ np.diag([2.0, 1.0, 1.0, 0.5, 0.5])
  outliers = rng.normal(size=(100, 5)) + 4.0
  test = np.concatenate([normal_test, outliers]).astype(np.float32)
  scores = np.asarray(gaussian_density_score(train, test, ridge=1e-3))
  cov = np.cov(train, rowvar=False, bias=True)
  cov += 1e-3 * np.trace(cov) / 5 * np.eye(5)
  ref = -stats.multivariate_normal(train.mean(0), cov).logpdf(test)
  np.testing.assert_allclose(scores, ref, rtol=1e-4)
  assert auroc(scores, np.arange(200) >= 100) > 0.99
  with pytest.raises(ValueError, match="ridge"):
    gaussian_density_score(train, test, ridge=0.0)
