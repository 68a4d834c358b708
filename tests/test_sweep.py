"""The sweep runner: grids, overrides, resumability, the results table."""

import json
import math

import pytest

from gjax.train import base_config
from studies.sweep import apply_overrides, grid_points, parse_grid, point_name, run_sweep


def test_parse_grid_values():
  grid = parse_grid(["vje.nu=0.5,3,inf", "vje.use_kl=True,False", "dataset.train_classes=(1,),(2,3)"])
  assert grid["vje.nu"] == [0.5, 3, math.inf]
  assert grid["vje.use_kl"] == [True, False]
  assert grid["dataset.train_classes"] == [(1,), (2, 3)]
  for bad in (["vje.nu"], ["=1,2"], ["vje.nu=1", "vje.nu=2"]):
    with pytest.raises(ValueError):
      parse_grid(bad)


def test_apply_overrides_checks_fields_and_types():
  config = base_config()
  new = apply_overrides(config, {"vje.nu": 3, "vje.beta": 0.5})
  assert new.vje.nu == 3.0 and isinstance(new.vje.nu, float) and config.vje.beta == 1.0
  with pytest.raises(ValueError, match="unknown config field 'vje.nuu'"):
    apply_overrides(config, {"vje.nuu": 1.0})
  with pytest.raises(ValueError, match="unknown config field 'vj.nu'"):
    apply_overrides(config, {"vj.nu": 1.0})


def test_run_sweep_resumes_and_writes_a_table(tmp_path):
  calls = []

  def fake_run(config, workdir):
    calls.append((config.vje.beta, config.vje.nu))
    if len(calls) == 3:
      raise RuntimeError("preempted")
    return {"score": config.vje.beta * 10 + config.vje.nu}

  grid = {"vje.beta": [0.5, 1.0], "vje.nu": [1.0, math.inf]}
  with pytest.raises(RuntimeError, match="preempted"):
    run_sweep(base_config(), grid, str(tmp_path), fake_run)
  assert len(calls) == 3
  rows = run_sweep(base_config(), grid, str(tmp_path), fake_run)
  assert len(calls) == 5  # the two finished points were not rerun
  assert [r["score"] for r in rows] == [6.0, math.inf, 11.0, math.inf]
  assert len(grid_points(grid)) == 4 and point_name({"vje.nu": math.inf}) == "vje.nu=inf"
  table = (tmp_path / "results.md").read_text()
  assert table.count("\n") == 2 + 4 and "| vje.beta | vje.nu | score |" in table
  lines = (tmp_path / "results.jsonl").read_text().splitlines()
  assert json.loads(lines[0])["score"] == 6.0


def test_bad_grid_fails_before_running_anything(tmp_path):
  def never(config, workdir):
    raise AssertionError("must not run")

  with pytest.raises(ValueError, match="unknown config field"):
    run_sweep(base_config(), {"vje.beta": [1.0], "bogus.field": [1]}, str(tmp_path), never)
  with pytest.raises(ValueError, match="empty"):
    run_sweep(base_config(), {}, str(tmp_path), never)
