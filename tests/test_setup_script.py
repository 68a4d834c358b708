"""setup.sh, the README's install command, run against stand-in commands that
record what they were asked to do (no package is installed, nothing is fetched)."""

import os
import shutil
import subprocess

import pytest

from tests.test_hardening import REPO

FAKES = {
    "apt-get": 'echo "apt-get $*" >> "$LOG"',
    "sudo": 'echo "sudo $*" >> "$LOG"; "$@"',
    "python": 'echo "python $*" >> "$LOG"',
}


def run_setup(tmp_path, uid: int, data_present: bool, with_sudo: bool = True):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  fakes = dict(FAKES, id=f'echo {uid}')
  if not with_sudo:
    del fakes["sudo"]
  for name, body in fakes.items():
    (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / name).chmod(0o755)
  data = tmp_path / "fashion"
  data.mkdir()
  if data_present:
    (data / "train-images-idx3-ubyte.gz").write_bytes(b"")
  log = tmp_path / "log"
  log.write_text("")
  # Only the stand-ins and dirname are on PATH: a real sudo or apt-get is never reached.
  os.symlink(shutil.which("dirname"), bin_dir / "dirname")
  env = {"PATH": str(bin_dir), "LOG": str(log), "GJAX_FASHION_MNIST_DIR": str(data)}
  result = subprocess.run(["/bin/bash", os.path.join(REPO, "setup.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
  return result, log.read_text().splitlines()


@pytest.mark.parametrize("uid, expected", [
    (0, ["apt-get update", "apt-get install -y dataset-fashion-mnist"]),
    (1000, ["sudo apt-get update", "apt-get update", "sudo apt-get install -y dataset-fashion-mnist",
            "apt-get install -y dataset-fashion-mnist"]),
])
def test_setup_installs_the_data_package_as_root_or_with_sudo_then_the_requirements(tmp_path, uid, expected):
  result, calls = run_setup(tmp_path, uid, data_present=False)
  assert result.returncode == 0, result.stderr
  assert calls == expected + ["python -m pip install -r requirements.txt"]


def test_setup_skips_the_data_package_when_present_and_stops_without_root_or_sudo(tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  result, calls = run_setup(tmp_path / "a", 1000, data_present=True)
  assert result.returncode == 0 and calls == ["python -m pip install -r requirements.txt"]
  assert "Fashion-MNIST found in" in result.stdout
  result, calls = run_setup(tmp_path / "b", 1000, data_present=False, with_sudo=False)
  assert result.returncode == 1 and calls == []
  assert "needs root or sudo" in result.stderr and "GJAX_FASHION_MNIST_DIR" in result.stderr
