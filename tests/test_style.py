"""The code follows one style: ruff's linter and formatter with the settings in pyproject.toml."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_passes(command):
  result = subprocess.run(
    [sys.executable, "-m", "ruff", *command], cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, (
    f"ruff {' '.join(command)} failed (fix with `.venv/bin/ruff check --fix . && .venv/bin/ruff format .`):\n"
    + result.stdout[-4000:]
  )
