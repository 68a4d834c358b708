"""Every committed table and figure that comes from committed rows is made
again byte for byte by the command its study's README gives (studies/remake.py)."""

import os
import shutil

from studies import remake
from tests.test_train import REPO


def test_committed_results_are_made_again_byte_for_byte(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)  # the commands name committed files from the repository root
  report = remake.remake(str(tmp_path))
  assert len(report) == sum(len(entry.files) for entry in remake.REMAKES) >= 31
  assert [(path, state) for path, state in report if state != "same"] == []


def test_a_changed_committed_file_is_reported(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  committed = tmp_path / "committed"
  committed.mkdir()
  for name in ("results.md", "training_curves.png", "knn_over_training.png"):
    if name != "results.md":
      shutil.copy(os.path.join(remake.VJE, name), committed / name)
  table = open(os.path.join(remake.SYNTHETIC, "results.md")).read()
  (committed / "results.md").write_text(table.replace("0.", "1.", 1))
  entries = tuple(entry._replace(committed=str(committed)) for entry in remake.REMAKES[-2:])
  states = dict(remake.remake(str(tmp_path / "made"), entries))
  assert states == {
    str(committed / "results.md"): "differs",
    str(committed / "training_curves.png"): "same",
    str(committed / "knn_over_training.png"): "same",
  }
