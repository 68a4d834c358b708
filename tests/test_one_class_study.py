"""The one-class study (studies/one_class): the protocol over classes and a
grid, its resumability, and the report made from its rows."""

import json

import numpy as np
import pytest

from gjax.eval import evaluate
from gjax.eval.one_class import SCORES
from studies.one_class import report
from studies.one_class.report import SETTING_FIELDS, setting_labels
from studies.one_class.study import TRAIN_DIAGNOSTICS, run_one_class
from tests.test_train import tiny_config


def test_one_class_protocol_on_two_classes(tmp_path):
  from gjax.eval import evaluator_settings

  config = tiny_config(**{"num_train_steps": 2})
  config.eval.evaluators = evaluator_settings("knn", "one_class")
  config.eval.evaluators.one_class.samples, config.eval.evaluators.one_class.views = 2, 2
  config.eval.online_evaluators = ("knn",)
  out = run_one_class(config, str(tmp_path), {"vje.nu": [3.0]}, classes=[0, 1])
  assert len(out["rows"]) == 2 and len(out["summary"]) == 1
  for row in out["rows"]:
    for score in SCORES:
      assert 0.0 <= row[f"auroc_{score}"] <= 1.0
    # The diagnostics at the end of training and on the test split, and the row's wall time.
    assert all(f"train_{k}" in row for k in TRAIN_DIAGNOSTICS)
    assert 0 <= row["test_active_units"] <= 32 and -1 <= row["test_mu_cosine"] <= 1
    assert 0 < row["train_seconds"] <= row["wall_seconds"]
  summary = out["summary"][0]
  np.testing.assert_allclose(summary["mean_auroc_joint"], np.mean([r["auroc_joint"] for r in out["rows"]]))
  assert "mean_auroc_entropy" in (tmp_path / "summary.md").read_text()
  # The tables again from the committed rows alone (results.jsonl): byte for byte what the run wrote.
  from studies.one_class.study import write_tables

  write_tables(str(tmp_path / "results.jsonl"), str(tmp_path / "again"))
  for table in ("results.md", "summary.md"):
    assert (tmp_path / "again" / table).read_text() == (tmp_path / table).read_text(), table
  assert (tmp_path / "again" / "per_class_auroc_all.png").stat().st_size > 1000  # one grid point: "all"
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


def test_a_stopped_one_class_training_is_not_scored(tmp_path, monkeypatch):
  """SIGTERM during a class's training: no row is written and the sweep ends (resumable)."""
  import importlib

  # The module (gjax.eval.evaluate is also the function).
  evaluate_module = importlib.import_module("gjax.eval.evaluate")

  monkeypatch.setattr(
    evaluate_module, "train_and_evaluate", lambda config, workdir: {"preempted": "SIGTERM", "final_step": 3}
  )
  config = tiny_config(**{"num_train_steps": 2})
  with pytest.raises(SystemExit, match="stopped by SIGTERM at step 3; rerun the same command to resume"):
    run_one_class(config, str(tmp_path), {"vje.nu": [3.0]}, classes=[0, 1])
  assert not list(tmp_path.rglob("result.json"))


def test_one_class_report_tables_come_from_the_rows(tmp_path):

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
      (d / "train.jsonl").write_text(
        "".join(json.dumps({"step": s, "active_units": 1.0, "kl": 2.0}) + "\n" for s in (1, 2))
      )
      expected.setdefault(setting, []).append(result)
  (tmp_path / "ref.md").write_text(
    "| class | auroc_ocsvm | auroc_gde | auroc_knn5 |\n|---|---|---|---|\n"
    "| 0 | 0.8 | 0.9 | 0.95 |\n| 3 | 0.7 | 0.8 | 0.85 |\n"
  )
  summary = report.write_report(str(tmp_path / "study"), str(tmp_path / "out"), str(tmp_path / "ref.md"))
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
    report.read_study(str(tmp_path / "out"))

  # Rows of an earlier report (another machine's runs, no directories here) join
  # the new ones; a (setting, class) the new root holds is taken from the root.
  earlier = [json.loads(line) for line in (tmp_path / "out" / "posterior_study.jsonl").read_text().splitlines()]
  assert len(earlier) == 4 and all("dir" not in row for row in earlier)
  old = [{**{k: v for k, v in row.items() if k != "num_train_steps"}, "setting": "old"} for row in earlier[:2]]
  stale = {**earlier[0], "auroc_joint": 0.0}  # same setting and class as a row of the root
  (tmp_path / "previous.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old + [stale]))
  merged = {
    s["setting"]: s
    for s in report.write_report(
      str(tmp_path / "study"), str(tmp_path / "out2"), previous_rows=str(tmp_path / "previous.jsonl")
    )
  }
  assert set(merged) == {"base", "beta_half", "old"} and merged["old"]["num_train_steps"] == -1
  assert merged["old"]["joint"] == pytest.approx(100 * np.mean([r["auroc_joint"] for r in old]))
  assert merged["base"]["joint"] == pytest.approx(by_setting["base"]["joint"])
  assert "--previous_rows" in (tmp_path / "out2" / "posterior_study.md").read_text()
  (tmp_path / "bad.jsonl").write_text(json.dumps({"setting": "x", "class": 0}) + "\n")
  with pytest.raises(ValueError, match="lacks"):
    report.read_previous_rows(str(tmp_path / "bad.jsonl"), [])


def test_summary_labels_tell_apart_the_grid_points_of_one_setting():

  base = {f: 0 for f in SETTING_FIELDS}
  summary = [
    {**base, "setting": "beta_more", "vje.beta": 0.75},
    {**base, "setting": "beta_more", "vje.beta": 1.25},
    {**base, "setting": "base", "vje.beta": 1.0},
  ]
  assert setting_labels(summary) == ["beta_more (beta=0.75)", "beta_more (beta=1.25)", "base"]
