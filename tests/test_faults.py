"""Faults, round three (issue 31): a full disk's torn log line, a lock that
survives PID namespaces, SIGHUP, an interrupted eval.py, damaged checksum
side-files, unparseable or foreign files in a workdir, a loader's float images,
an unreadable data directory. Each test is named after its case."""

import json
import logging
import os
import shutil

import pytest

from gjax.train import train_and_evaluate
from tests.test_hardening import checkpoint_steps, tiny


def _tear_last_line(path):
  """Cuts ``path`` in the middle of its last line, as ENOSPC during a write does."""
  text = path.read_text()
  last = text.rstrip("\n").rsplit("\n", 1)[-1]
  path.write_text(text[:len(text.rstrip("\n")) - len(last) // 2])


def test_case01_a_torn_last_line_of_train_jsonl_is_dropped_with_a_warning(tmp_path, caplog):
  config = tiny(num_train_steps=4, log_every_steps=1, checkpoint_every_steps=2, keep_checkpoints=3)
  train_and_evaluate(config, str(tmp_path))
  shutil.rmtree(tmp_path / "checkpoints" / "4")  # the disk filled up after step 2's checkpoint
  _tear_last_line(tmp_path / "train.jsonl")
  (tmp_path / "eval.jsonl").write_text('{"step": 2, "knn_top1": 0.5}\n{"step": 4, "knn_to')
  with pytest.raises(json.JSONDecodeError):
    json.loads((tmp_path / "train.jsonl").read_text().splitlines()[-1])  # the damage is real
  with caplog.at_level(logging.WARNING, logger="gjax.train"):
    resumed = train_and_evaluate(config, str(tmp_path))
  assert resumed["start_step"] == 2 and resumed["final_step"] == 4
  for name in ("train.jsonl", "eval.jsonl"):
    assert f"{tmp_path / name}: its last line is torn" in caplog.text and "dropped" in caplog.text
  assert [json.loads(line)["step"] for line in (tmp_path / "train.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
  assert (tmp_path / "eval.jsonl").read_text() == '{"step": 2, "knn_top1": 0.5}\n'
