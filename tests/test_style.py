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


def test_the_slowest_first_list_names_tests_that_exist():
  """tests/conftest.py's SLOWEST_FIRST orders the suite; a renamed test would silently drop out of it."""
  import ast

  from tests.conftest import SLOWEST_FIRST

  for entry in SLOWEST_FIRST:
    path, name = entry.split("::")
    with open(os.path.join(REPO, path)) as f:
      names = {node.name for node in ast.walk(ast.parse(f.read())) if isinstance(node, ast.FunctionDef)}
    assert name in names, entry
