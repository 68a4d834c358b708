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
  weighted = np.stack([np.bincount(train_y[t], weights=np.exp(sims[i, t] / 0.1), minlength=3) for i, t in enumerate(top)])
  np.testing.assert_array_equal(knn_predict(train_x, train_y, test_x, k=7, chunk=16)[votes.max(1) > np.sort(votes, 1)[:, -2]],
                                votes.argmax(1)[votes.max(1) > np.sort(votes, 1)[:, -2]])
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
  config = tiny_config(**{"num_train_steps": 2, "eval.evaluators.knn.weighted_k": 50, "eval.evaluators.linear_probe.epochs": 3})
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
    assert results[f"knn30_{feature}"] == knn_accuracy(host[0][feature], train_y, host[1][feature], test_y, k=30,
                                                        mesh=mesh)
    assert results[f"knn50w_{feature}"] == knn_accuracy(host[0][feature], train_y, host[1][feature], test_y, k=50,
                                                         weighted=True, mesh=mesh)
    probe = train_linear_probe(host[0][feature], train_y, host[1][feature], test_y, epochs=3, seed=config.seed,
                               batch_size=min(256, len(train_y) - len(train_y) % mesh.devices.size), mesh=mesh)
    assert abs(results[f"linear_top1_{feature}"] - probe["top1"]) <= 1 / len(test_y), (feature, probe)
  # The posterior diagnostics, in eval_results.json and in train.jsonl.
  from gjax.train.metrics import read_metrics
  for row in (results, json.loads((tmp_path / "eval_results.json").read_text())):
    assert 0 <= row["test_active_units"] <= 32 and 0 <= row["test_z_dead_channels"] <= 32
    assert -1 <= row["test_mu_cosine"] <= 1 and -1 <= row["test_z_cosine"] <= 1 and row["test_mu_spread_ratio"] >= 0
  logged = read_metrics(str(tmp_path / "train.jsonl"))[-1]
  for key in ("active_units", "mu_spread_ratio", "mu_cosine", "z_cosine", "z_dead_channels",
              "directional_kernel", "directional_log_det"):
    assert np.isfinite(logged[key]), key
  np.testing.assert_allclose(logged["directional_kernel"] + logged["directional_log_det"], logged["directional"],
                             rtol=1e-4)
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

  fields = {"num_train_steps": 4, "checkpoint_every_steps": 2, "eval.run_only": ("knn",),
            "eval.num_train_examples": 256}
  train_and_evaluate(tiny_config(**fields), str(tmp_path))
  # An unwritable destination is refused before anything is computed.
  (tmp_path / "a_file").write_text("")
  monkeypatch.setattr(evaluate_module, "eval_splits", lambda *a: pytest.fail("computed before checking"))
  with pytest.raises(ValueError, match=r"config.eval.results_path=.*a_file/results.json.*existing directory"):
    evaluate(tiny_config(**fields, **{"eval.results_path": str(tmp_path / "a_file" / "results.json")}),
             str(tmp_path))
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

  config = tiny_config(**{"num_train_steps": 4, "eval.every_epochs": 0.5 * 16 / 2048 * 4,
                          "eval.num_train_examples": 256, "eval.evaluators.knn.weighted_k": 20})
  import gjax.eval

  gjax.eval.train_and_evaluate(config, str(tmp_path))  # the trainer with the configured online evaluators
  rows = read_metrics(str(tmp_path / "eval.jsonl"))
  assert [r["step"] for r in rows] == [2, 4]
  assert all(0.0 <= r["knn30_z"] <= 1.0 and 0.0 <= r["knn20w_mu"] <= 1.0 for r in rows)


def test_eval_py_prints_usage():
  out = subprocess.run([sys.executable, "eval.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert "--workdir" in out.stdout and "--config" in out.stdout and "k-NN" in out.stdout


def test_one_class_protocol_on_two_classes(tmp_path):
  from gjax.eval.one_class import run_one_class

  from gjax.eval import evaluator_settings

  config = tiny_config(**{"num_train_steps": 2})
  config.eval.evaluators = evaluator_settings("knn", "one_class")
  config.eval.evaluators.one_class.samples, config.eval.evaluators.one_class.views = 2, 2
  config.eval.online_evaluators = ("knn",)
  out = run_one_class(config, str(tmp_path), {"vje.nu": [3.0]}, classes=[0, 1])
  assert len(out["rows"]) == 2 and len(out["summary"]) == 1
  for row in out["rows"]:
    from gjax.eval.one_class import SCORES, TRAIN_DIAGNOSTICS
    for score in SCORES:
      assert 0.0 <= row[f"auroc_{score}"] <= 1.0
    # The diagnostics at the end of training and on the test split, and the row's wall time.
    assert all(f"train_{k}" in row for k in TRAIN_DIAGNOSTICS)
    assert 0 <= row["test_active_units"] <= 32 and -1 <= row["test_mu_cosine"] <= 1
    assert 0 < row["train_seconds"] <= row["wall_seconds"]
  summary = out["summary"][0]
  np.testing.assert_allclose(summary["mean_auroc_joint"], np.mean([r["auroc_joint"] for r in out["rows"]]))
  assert "mean_auroc_entropy" in (tmp_path / "summary.md").read_text()
  # Resumable: a second call reruns nothing and returns the same table.
  again = run_one_class(config, str(tmp_path), {"vje.nu": [3.0]}, classes=[0, 1])
  assert again["rows"] == out["rows"]
  # The same scores through eval.py's registry on one class's run (the evaluator, not the study, computes them).
  import json as json_lib

  import ml_collections

  run_dir = [d for d in tmp_path.glob("*") if d.is_dir() and (d / "result.json").exists()][0]
  one = ml_collections.ConfigDict(json_lib.loads((run_dir / "config.json").read_text()))
  with one.unlocked():
    one.eval.run_only = ("one_class",)
  results = evaluate(one, str(run_dir))
  stored = json_lib.loads((run_dir / "result.json").read_text())
  for score in ("joint", "gde_z", "variance_sum"):
    assert results[f"auroc_{score}"] == pytest.approx(stored[f"auroc_{score}"], abs=1e-6), score
  with pytest.raises(ValueError, match=r"config\.dataset\.train_classes=\(\) .*exactly one class"):
    evaluate(config, str(run_dir))


def test_knn_sharded_over_8_devices_matches_1_device():
  import jax

  from gjax.data import data_mesh

  rng = np.random.default_rng(7)
  train_x, train_y = rng.normal(size=(500, 16)).astype(np.float32), rng.integers(0, 5, 500)
  test_x = rng.normal(size=(203, 16)).astype(np.float32)  # not a multiple of 8: padded, then dropped
  for weighted in (False, True):
    sharded = knn_predict(train_x, train_y, test_x, k=20, weighted=weighted, chunk=64, mesh=data_mesh())
    single = knn_predict(train_x, train_y, test_x, k=20, weighted=weighted, chunk=64,
                         mesh=data_mesh(jax.devices()[:1]))
    assert sharded.shape == (203,)
    np.testing.assert_array_equal(sharded, single)


def test_a_stopped_one_class_training_is_not_scored(tmp_path, monkeypatch):
  """SIGTERM during a class's training: no row is written and the sweep ends (resumable)."""
  import importlib

  from gjax.eval import one_class

  evaluate_module = importlib.import_module("gjax.eval.evaluate")  # the module (gjax.eval.evaluate is also the function)

  monkeypatch.setattr(evaluate_module, "train_and_evaluate",
                      lambda config, workdir: {"preempted": "SIGTERM", "final_step": 3})
  config = tiny_config(**{"num_train_steps": 2})
  with pytest.raises(SystemExit, match="stopped by SIGTERM at step 3; rerun the same command to resume"):
    one_class.run_one_class(config, str(tmp_path), {"vje.nu": [3.0]}, classes=[0, 1])
  assert not list(tmp_path.rglob("result.json"))


def test_one_class_report_tables_come_from_the_rows(tmp_path):
  from gjax.eval import one_class_report
  from gjax.eval.one_class import SCORES, TRAIN_DIAGNOSTICS

  rng = np.random.default_rng(0)
  expected = {}
  for setting, beta in (("base", 1.0), ("beta_half", 0.5)):
    for c in (0, 3):
      d = tmp_path / "study" / setting / f"dataset.train_classes=_{c},_"
      d.mkdir(parents=True)
      config = tiny_config(**{"vje.beta": beta, "dataset.train_classes": (c,)})
      (d / "config.json").write_text(config.to_json())
      result = {f"auroc_{s}": float(rng.uniform(0.4, 0.9)) for s in SCORES}
      result.update({f"train_{k}": 1.0 for k in TRAIN_DIAGNOSTICS}, test_active_units=float(c), wall_seconds=60.0)
      (d / "result.json").write_text(json.dumps(result))
      (d / "train.jsonl").write_text("".join(json.dumps({"step": s, "active_units": 1.0, "kl": 2.0}) + "\n"
                                             for s in (1, 2)))
      expected.setdefault(setting, []).append(result)
  (tmp_path / "ref.md").write_text("| class | auroc_ocsvm | auroc_gde | auroc_knn5 |\n|---|---|---|---|\n"
                                   "| 0 | 0.8 | 0.9 | 0.95 |\n| 3 | 0.7 | 0.8 | 0.85 |\n")
  summary = one_class_report.write_report(str(tmp_path / "study"), str(tmp_path / "out"), str(tmp_path / "ref.md"))
  by_setting = {s["setting"]: s for s in summary}
  for setting, results in expected.items():
    s = by_setting[setting]
    assert s["classes"] == "0,3" and s["wall_minutes"] == pytest.approx(2.0)
    assert s["test_active_units"] == pytest.approx(1.5)
    for score in SCORES:
      assert s[score] == pytest.approx(100 * np.mean([r[f"auroc_{score}"] for r in results]))
    assert s["paper_ordering"] == (s["joint"] > s["variance_sum"] > s["entropy"])
  table = (tmp_path / "out" / "posterior_study.md").read_text()
  assert "| beta_half | 0.5 | mean |" in table and "| 85 | 90 |" in table  # raw-pixel GDE / 5-NN means
  summary_section = table.split("## Summary")[1].split("## AUROC of every score")[0]
  assert f"| base | 2 | {round(by_setting['base']['joint'], 1):.4g} |" in summary_section
  for png in ("per_class_auroc_best.png", "diagnostics_over_training_best.png", "heatmap_beta_nu_joint_study.png"):
    assert (tmp_path / "out" / png).stat().st_size > 1000
  with pytest.raises(FileNotFoundError, match="no finished one-class rows"):
    one_class_report.read_study(str(tmp_path / "out"))

  # Rows of an earlier report (another machine's runs, no directories here) join
  # the new ones; a (setting, class) the new root holds is taken from the root.
  earlier = [json.loads(line) for line in (tmp_path / "out" / "posterior_study.jsonl").read_text().splitlines()]
  assert len(earlier) == 4 and all("dir" not in row for row in earlier)
  old = [{**{k: v for k, v in row.items() if k != "num_train_steps"}, "setting": "old"} for row in earlier[:2]]
  stale = {**earlier[0], "auroc_joint": 0.0}  # same setting and class as a row of the root
  (tmp_path / "previous.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old + [stale]))
  merged = {s["setting"]: s for s in one_class_report.write_report(
      str(tmp_path / "study"), str(tmp_path / "out2"), previous_rows=str(tmp_path / "previous.jsonl"))}
  assert set(merged) == {"base", "beta_half", "old"} and merged["old"]["num_train_steps"] == -1
  assert merged["old"]["joint"] == pytest.approx(100 * np.mean([r["auroc_joint"] for r in old]))
  assert merged["base"]["joint"] == pytest.approx(by_setting["base"]["joint"])
  assert "--previous_rows" in (tmp_path / "out2" / "posterior_study.md").read_text()
  (tmp_path / "bad.jsonl").write_text(json.dumps({"setting": "x", "class": 0}) + "\n")
  with pytest.raises(ValueError, match="lacks"):
    one_class_report.read_previous_rows(str(tmp_path / "bad.jsonl"), [])


def test_summary_labels_tell_apart_the_grid_points_of_one_setting():
  from gjax.eval.one_class_report import SETTING_FIELDS, setting_labels

  base = {f: 0 for f in SETTING_FIELDS}
  summary = [{**base, "setting": "beta_more", "vje.beta": 0.75}, {**base, "setting": "beta_more", "vje.beta": 1.25},
             {**base, "setting": "base", "vje.beta": 1.0}]
  assert setting_labels(summary) == ["beta_more (beta=0.75)", "beta_more (beta=1.25)", "base"]
