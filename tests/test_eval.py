"""k-NN evaluators and eval on a checkpoint of a tiny training run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gjax import data as gdata
from gjax.eval import evaluate, knn_accuracy, knn_predict
from gjax.train import train_and_evaluate
from tests.test_train import REPO, tiny_config


def clustered(n_per_class, num_classes, dim, spread, seed):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_classes, dim))
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  labels = np.repeat(np.arange(num_classes), n_per_class)
  feats = centres[labels] + spread * rng.normal(size=(len(labels), dim))
  return feats.astype(np.float32), labels


def test_knn_recovers_known_accuracy_on_separated_clusters():
  train_x, train_y = clustered(100, 5, 16, 0.05, 0)
  rng = np.random.default_rng(2)
  idx = rng.choice(len(train_x), 200)
  test_x, test_y = train_x[idx] + 0.01 * rng.normal(size=(200, 16)).astype(np.float32), train_y[idx]
  assert knn_accuracy(train_x, train_y, test_x, test_y, k=30) == 1.0
  assert knn_accuracy(train_x, train_y, test_x, test_y, k=200, weighted=True, chunk=64) == 1.0


def test_knn_with_label_noise_matches_the_noise_rate():
  # Tight clusters; 20% of the *test* labels are flipped, so accuracy must be 0.8 exactly.
  train_x, train_y = clustered(60, 4, 8, 0.01, 3)
  rng = np.random.default_rng(4)
  idx = rng.choice(len(train_x), 100, replace=False)
  test_x, test_y = train_x[idx], train_y[idx].copy()
  flip = np.arange(100) < 20
  test_y[flip] = (test_y[flip] + 1) % 4
  assert knn_accuracy(train_x, train_y, test_x, test_y, k=10) == pytest.approx(0.8)


def test_knn_matches_brute_force_numpy():
  rng = np.random.default_rng(5)
  train_x, train_y = rng.normal(size=(300, 6)).astype(np.float32), rng.integers(0, 3, 300)
  test_x = rng.normal(size=(50, 6)).astype(np.float32)
  tn = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
  sn = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
  sims = sn @ tn.T
  top = np.argsort(-sims, axis=1)[:, :7]
  votes = np.stack([np.bincount(train_y[t], minlength=3) for t in top])
  weighted = np.stack(
    [np.bincount(train_y[t], weights=np.exp(sims[i, t] / 0.1), minlength=3) for i, t in enumerate(top)]
  )
  np.testing.assert_array_equal(
    knn_predict(train_x, train_y, test_x, k=7, chunk=16)[votes.max(1) > np.sort(votes, 1)[:, -2]],
    votes.argmax(1)[votes.max(1) > np.sort(votes, 1)[:, -2]],
  )
  np.testing.assert_array_equal(knn_predict(train_x, train_y, test_x, k=7, weighted=True), weighted.argmax(1))


def test_knn_bad_input():
  x, y = np.ones((10, 4), np.float32), np.zeros(10, int)
  with pytest.raises(ValueError, match="non-finite values in 1 of 10 rows"):
    knn_predict(x, y, np.where(np.arange(40).reshape(10, 4) == 5, np.nan, 1.0))
  with pytest.raises(ValueError, match="k=11"):
    knn_predict(x, y, x, k=11)
  with pytest.raises(ValueError, match="feature sizes differ"):
    knn_predict(x, y, np.ones((3, 5)))


def test_evaluate_on_a_tiny_checkpoint(tmp_path):
  config = tiny_config(
    **{"num_train_steps": 2, "eval.evaluators.knn.weighted_k": 50, "eval.evaluators.linear_probe.epochs": 3}
  )
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    evaluate(config, str(tmp_path))
  train_and_evaluate(config, str(tmp_path))
  results = evaluate(config, str(tmp_path))
  assert results["step"] == 2
  for key in ("knn30_z", "knn50w_z", "knn30_mu", "knn50w_mu", "linear_top1_z", "linear_top5_mu"):
    assert 0.0 <= results[key] <= 1.0, key
  assert np.isfinite(results["test_var_mean"]) and results["test_var_mean"] > 0
  assert 1.0 <= results["test_z_effective_rank"] <= 32.0
  # The same numbers as the host path (every image and feature on the host,
  # the bank replicated on each device): eval.py now streams and keeps the
  # features sharded, with the same k-NN neighbours and the same probe.
  from gjax.eval.features import extract_features
  from gjax.eval.knn import knn_accuracy
  from gjax.eval.linear_probe import train_linear_probe
  from gjax.eval.splits import eval_splits
  from gjax.train import restore_run
  from gjax.train.input_pipeline import augment_config

  train_split, test_split = eval_splits(config)
  (train_x, train_y), (test_x, test_y) = train_split.head(), test_split.head()
  mesh = gdata.data_mesh()
  model, state = restore_run(config, str(tmp_path), train_x.shape[1:], mesh)
  augment = augment_config(config, train_x.shape[1:])
  host = [extract_features(model, state.variables, x, augment, mesh, config.eval.batch_size) for x in (train_x, test_x)]
  for feature in ("z", "mu"):
    assert results[f"knn30_{feature}"] == knn_accuracy(
      host[0][feature], train_y, host[1][feature], test_y, k=30, mesh=mesh
    )
    assert results[f"knn50w_{feature}"] == knn_accuracy(
      host[0][feature], train_y, host[1][feature], test_y, k=50, weighted=True, mesh=mesh
    )
    probe = train_linear_probe(
      host[0][feature],
      train_y,
      host[1][feature],
      test_y,
      epochs=3,
      seed=config.seed,
      batch_size=min(256, len(train_y) - len(train_y) % mesh.devices.size),
      mesh=mesh,
    )
    assert abs(results[f"linear_top1_{feature}"] - probe["top1"]) <= 1 / len(test_y), (feature, probe)
  # The posterior diagnostics, in eval_results.json and in train.jsonl.
  from gjax.train.metrics import read_metrics

  for row in (results, json.loads((tmp_path / "eval_results.json").read_text())):
    assert 0 <= row["test_active_units"] <= 32 and 0 <= row["test_z_dead_channels"] <= 32
    assert -1 <= row["test_mu_cosine"] <= 1 and -1 <= row["test_z_cosine"] <= 1 and row["test_mu_spread_ratio"] >= 0
  logged = read_metrics(str(tmp_path / "train.jsonl"))[-1]
  for key in (
    "active_units",
    "mu_spread_ratio",
    "mu_cosine",
    "z_cosine",
    "z_dead_channels",
    "directional_kernel",
    "directional_log_det",
  ):
    assert np.isfinite(logged[key]), key
  np.testing.assert_allclose(
    logged["directional_kernel"] + logged["directional_log_det"], logged["directional"], rtol=1e-4
  )
  with pytest.raises(ValueError, match="unknown evaluator"):
    bad = tiny_config()
    bad.eval.evaluators.unlock()
    bad.eval.evaluators.fid = {"num_samples": 10}
    evaluate(bad, str(tmp_path))
  assert os.path.exists(tmp_path / "eval_results.json")


def test_evaluate_checks_where_it_writes_first_and_leaves_the_runs_checkpoints_alone(tmp_path, monkeypatch, caplog):
  import logging
  import shutil

  evaluate_module = sys.modules["gjax.eval.evaluate"]
  from gjax.train import checkpoints

  fields = {
    "num_train_steps": 4,
    "checkpoint_every_steps": 2,
    "eval.run_only": ("knn",),
    "eval.num_train_examples": 256,
  }
  train_and_evaluate(tiny_config(**fields), str(tmp_path))
  # An unwritable destination is refused before anything is computed.
  (tmp_path / "a_file").write_text("")
  monkeypatch.setattr(evaluate_module, "eval_splits", lambda *a: pytest.fail("computed before checking"))
  with pytest.raises(ValueError, match=r"config.eval.results_path=.*a_file/results.json.*existing directory"):
    evaluate(tiny_config(**fields, **{"eval.results_path": str(tmp_path / "a_file" / "results.json")}), str(tmp_path))
  # A directory that exists but takes no new file (even as root): /proc.
  with pytest.raises(PermissionError, match=r"cannot write the evaluation results to /proc/gjax_results.json"):
    evaluate(tiny_config(**fields, **{"eval.results_path": "/proc/gjax_results.json"}), str(tmp_path))
  monkeypatch.undo()
  # A checkpoint deleted while eval reads it (the run keeps only its newest) is not called unreadable.
  original = checkpoints._restore_step

  def deleted_under_us(manager, step, state):
    if step == 4:
      shutil.rmtree(os.path.join(os.fspath(manager.directory), "4"))
      raise FileNotFoundError("checkpoint 4 vanished")
    return original(manager, step, state)

  monkeypatch.setattr(checkpoints, "_restore_step", deleted_under_us)
  out = tmp_path / "elsewhere" / "results.json"
  os.makedirs(out.parent)
  with caplog.at_level(logging.INFO):
    results = evaluate(tiny_config(**fields, **{"eval.results_path": str(out)}), str(tmp_path))
  assert results["step"] == 2
  assert "was deleted while it was being read" in caplog.text and "cannot be read" not in caplog.text
  assert not (tmp_path / "checkpoints_unreadable").exists()
  assert json.loads(out.read_text()) == results and os.listdir(out.parent) == ["results.json"]  # atomic, no .tmp
  assert caplog.text.index("eval at step 2") < caplog.text.index(f"written to {out}")  # shown before written


def test_online_knn_during_pretraining(tmp_path):
  from gjax.train.metrics import read_metrics

  config = tiny_config(
    **{
      "num_train_steps": 4,
      "eval.every_epochs": 0.5 * 16 / 2048 * 4,
      "eval.num_train_examples": 256,
      "eval.evaluators.knn.weighted_k": 20,
    }
  )
  import gjax.eval

  gjax.eval.train_and_evaluate(config, str(tmp_path))  # the trainer with the configured online evaluators
  rows = read_metrics(str(tmp_path / "eval.jsonl"))
  assert [r["step"] for r in rows] == [2, 4]
  assert all(0.0 <= r["knn30_z"] <= 1.0 and 0.0 <= r["knn20w_mu"] <= 1.0 for r in rows)


def test_eval_py_prints_usage():
  out = subprocess.run([sys.executable, "eval.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert "--workdir" in out.stdout and "--config" in out.stdout and "k-NN" in out.stdout


def test_knn_sharded_over_8_devices_matches_1_device():
  import jax

  from gjax.data import data_mesh

  rng = np.random.default_rng(7)
  train_x, train_y = rng.normal(size=(500, 16)).astype(np.float32), rng.integers(0, 5, 500)
  test_x = rng.normal(size=(203, 16)).astype(np.float32)  # not a multiple of 8: padded, then dropped
  for weighted in (False, True):
    sharded = knn_predict(train_x, train_y, test_x, k=20, weighted=weighted, chunk=64, mesh=data_mesh())
    single = knn_predict(train_x, train_y, test_x, k=20, weighted=weighted, chunk=64, mesh=data_mesh(jax.devices()[:1]))
    assert sharded.shape == (203,)
    np.testing.assert_array_equal(sharded, single)
