"""setup.sh, the README's install command, run against stand-in commands that
record what they were asked to do (no package is installed, nothing is fetched,
the repository's own .venv is never touched: GJAX_VENV points into tmp_path)."""

import os
import shutil
import subprocess

import pytest

from tests.test_hardening import REPO

FAKES = {
  "apt-get": 'echo "apt-get $*" >> "$LOG"',
  "sudo": 'echo "sudo $*" >> "$LOG"; "$@"',
}

# A Python 3.12 stand-in: answers the version check, logs the rest; "-m venv DIR"
# makes DIR/bin/python, a stand-in that logs as "venv-python".
FAKE_PYTHON312 = r"""
if [ "$1" = "-c" ]; then exit 0; fi
echo "python3.12 $*" >> "$LOG"
if [ "$1 $2" = "-m venv" ]; then
  for last in "$@"; do :; done
  mkdir -p "$last/bin"
  printf '#!/bin/sh\nif [ "$1" = "-c" ]; then exit 0; fi\necho "venv-python $*" >> "$LOG"\n' > "$last/bin/python"
  chmod +x "$last/bin/python"
fi
"""
FAILING_SHIM = 'echo "pyenv: python3.12: command not found" >&2; exit 127'


def write_script(path, body):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(f"#!/bin/sh\n{body}\n")
  path.chmod(0o755)


def run_setup(
  tmp_path,
  uid: int,
  data_present: bool,
  with_sudo: bool = True,
  python312: str | None = FAKE_PYTHON312,
  pyenv_python: bool = False,
  extra_env=None,
):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  fakes = dict(FAKES, id=f"echo {uid}")
  if not with_sudo:
    del fakes["sudo"]
  if python312 is not None:
    fakes["python3.12"] = python312
  for name, body in fakes.items():
    write_script(bin_dir / name, body)
  pyenv_root = tmp_path / "pyenv"
  pyenv_root.mkdir(exist_ok=True)
  if pyenv_python:
    write_script(
      pyenv_root / "versions" / "3.12.1" / "bin" / "python3.12",
      FAKE_PYTHON312.replace('echo "python3.12', 'echo "pyenv-python3.12'),
    )
  data = tmp_path / "fashion"
  data.mkdir(exist_ok=True)
  if data_present:
    (data / "train-images-idx3-ubyte.gz").write_bytes(b"")
  log = tmp_path / "log"
  log.write_text("")
  # Only the stand-ins and a few file tools are on PATH: a real sudo, apt-get or Python is never reached.
  for tool in ("dirname", "mkdir", "chmod"):
    if not (bin_dir / tool).exists():
      os.symlink(shutil.which(tool), bin_dir / tool)
  env = {
    "PATH": str(bin_dir),
    "LOG": str(log),
    "GJAX_FASHION_MNIST_DIR": str(data),
    "HOME": str(tmp_path),
    "PYENV_ROOT": str(pyenv_root),
    "GJAX_VENV": str(tmp_path / "venv"),
    **(extra_env or {}),
  }
  result = subprocess.run(
    ["/bin/bash", os.path.join(REPO, "setup.sh")], env=env, capture_output=True, text=True, timeout=60
  )
  return result, log.read_text().splitlines()


@pytest.mark.parametrize(
  "uid, expected",
  [
    (0, ["apt-get update", "apt-get install -y dataset-fashion-mnist"]),
    (
      1000,
      [
        "sudo apt-get update",
        "apt-get update",
        "sudo apt-get install -y dataset-fashion-mnist",
        "apt-get install -y dataset-fashion-mnist",
      ],
    ),
  ],
)
def test_setup_installs_the_data_package_as_root_or_with_sudo_then_the_environment(tmp_path, uid, expected):
  result, calls = run_setup(tmp_path, uid, data_present=False)
  assert result.returncode == 0, result.stderr
  assert calls == expected + [
    f"python3.12 -m venv --clear {tmp_path / 'venv'}",
    "venv-python -m pip install -r requirements.txt",
  ]


def test_setup_reuses_its_environment_and_skips_the_data_package_when_present(tmp_path):
  run_setup(tmp_path, 0, data_present=True)
  result, calls = run_setup(tmp_path, 0, data_present=True)
  assert result.returncode == 0 and calls == ["venv-python -m pip install -r requirements.txt"]
  assert "Fashion-MNIST found in" in result.stdout and "using the Python 3.12 environment" in result.stdout


def test_setup_stops_without_root_or_sudo(tmp_path):
  result, calls = run_setup(tmp_path, 1000, data_present=False, with_sudo=False)
  assert result.returncode == 1 and calls == []
  assert "needs root or sudo" in result.stderr and "GJAX_FASHION_MNIST_DIR" in result.stderr


def test_setup_finds_pyenvs_python_312_behind_a_failing_shim(tmp_path):
  """pyenv's shim for python3.12 is on PATH but fails when 3.12 is not selected: the version itself is used."""
  result, calls = run_setup(tmp_path, 0, data_present=True, python312=FAILING_SHIM, pyenv_python=True)
  assert result.returncode == 0, result.stderr
  assert calls[0].startswith("pyenv-python3.12 -m venv --clear") and calls[1:] == [
    "venv-python -m pip install -r requirements.txt"
  ]


def test_setup_names_what_to_install_without_python_312(tmp_path):
  result, calls = run_setup(tmp_path, 0, data_present=True, python312=None)
  assert result.returncode == 1 and calls == []
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "no Python 3.12 found" in lines[0] and "pyenv install 3.12" in lines[0]
  result, _ = run_setup(tmp_path, 0, data_present=True, extra_env={"PYTHON": "/no/such/python"})
  assert result.returncode == 1 and "PYTHON=/no/such/python is not a working Python 3.12" in result.stderr
