"""The comparison table and plot from finished run directories."""

import json

import pytest

from studies.compare import report as compare


def _fake_run(root, method, results, std):
  d = root / method
  d.mkdir(parents=True)
  (d / "eval_results.json").write_text(json.dumps(results))
  (d / "summary.json").write_text(json.dumps({"wall_seconds": 600.0}))
  (d / "train.jsonl").write_text(
    json.dumps(
      {
        "step": 10,
        "loss": 1.0,
        "z_std_mean": std,
        "z_std_min": std / 2,
        "z_effective_rank": 3.0,
        "images_per_second": 100.0,
      }
    )
    + "\n"
  )
  key = "knn30_h" if "knn30_h" in results else "knn30_z"
  (d / "eval.jsonl").write_text(
    "".join(json.dumps({"step": s, "epoch": s / 5, key: 0.5 + s / 100}) + "\n" for s in (5, 10))
  )


def test_table_plot_and_collapse_flag(tmp_path):
  _fake_run(tmp_path, "vje", {"knn30_z": 0.8, "knn200w_z": 0.7, "linear_top1_z": 0.85, "knn30_mu": 0.75}, 0.3)
  _fake_run(tmp_path, "jepa", {"knn30_h": 0.4, "knn30_z": 0.1, "linear_top1_h": 0.5}, 1e-5)
  out = tmp_path / "out"
  compare.main(["--root", str(tmp_path), "--out", str(out), "--methods", "vje,jepa"])
  table = (out / "results.md").read_text()
  assert "| vje | 80.0 | 70.0 | 85.0 | 80.0 | 85.0 | 75.0 |" in table
  assert "| jepa | 40.0 | - | 50.0 | 10.0 |" in table and table.rstrip().endswith("| yes |")
  assert (out / "knn_over_training.png").stat().st_size > 0
  assert (out / "effective_rank_over_training.png").stat().st_size > 5000
  with pytest.raises(SystemExit):
    compare.main(["--root", str(tmp_path), "--out", str(out), "--methods", "vje,simclr"])


def test_rows_of_an_earlier_report_join_new_runs(tmp_path):
  _fake_run(tmp_path / "old", "vje", {"knn30_z": 0.8, "knn200w_z": 0.7, "linear_top1_z": 0.85}, 0.3)
  first = tmp_path / "first"
  compare.main(["--root", str(tmp_path / "old"), "--out", str(first), "--methods", "vje"])
  _fake_run(tmp_path / "new", "byol", {"knn30_h": 0.6, "knn30_z": 0.5, "linear_top1_h": 0.65}, 0.5)
  out = tmp_path / "out"
  compare.main(
    [
      "--root",
      str(tmp_path / "new"),
      "--out",
      str(out),
      "--methods",
      "vje,byol",
      "--previous_rows",
      str(first / "results.jsonl"),
    ]
  )
  rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
  assert [r["method"] for r in rows] == ["vje", "byol"] and rows[0]["knn30_z"] == 0.8
  assert "| byol | 60.0 |" in (out / "results.md").read_text()
  with pytest.raises(SystemExit):
    compare.main(
      [
        "--root",
        str(tmp_path / "new"),
        "--out",
        str(out),
        "--methods",
        "vje,moco",
        "--previous_rows",
        str(first / "results.jsonl"),
      ]
    )


def test_seed_repeats_summarised_with_their_spread(tmp_path):
  _fake_run(tmp_path, "jepa", {"knn30_h": 0.70, "linear_top1_h": 0.60}, 0.3)
  _fake_run(tmp_path, "jepa_seed1", {"knn30_h": 0.76, "linear_top1_h": 0.62}, 0.3)
  _fake_run(tmp_path, "vje", {"knn30_z": 0.8}, 0.3)
  out = tmp_path / "out"
  compare.main(["--root", str(tmp_path), "--out", str(out), "--methods", "jepa,vje,jepa_seed1"])
  table = (out / "results.md").read_text()
  assert "| jepa | 2 | 73.0 (70.0-76.0) | 61.0 (60.0-62.0) | 3.0 (3.0-3.0) |" in table
  assert "| vje | " not in table.split("Across seeds")[1]  # a row without repeats is not summarised
  summary = compare.seed_summary([json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()])
  assert [e["method"] for e in summary] == ["jepa"] and summary[0]["knn30_h"]["mean"] == pytest.approx(0.73)
  with pytest.raises(SystemExit):  # a repeat without its seed-0 row
    compare.main(["--root", str(tmp_path), "--out", str(out), "--methods", "vje,jepa_seed1"])
  plain = tmp_path / "plain"
  compare.main(["--root", str(tmp_path), "--out", str(plain), "--methods", "jepa,vje"])
  assert "Across seeds" not in (plain / "results.md").read_text()
