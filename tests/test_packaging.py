"""gjax is an installable package: ``pip install .`` gives a working ``import gjax`` outside the checkout."""

import os
import shutil
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_wheel_installs_and_imports_outside_the_checkout(tmp_path):
  # The build with this environment's setuptools (no download): what `pip install .` builds, from a copy
  # (setuptools writes build/ and *.egg-info next to the sources).
  source = tmp_path / "source"
  shutil.copytree(os.path.join(REPO, "gjax"), source / "gjax", ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(os.path.join(REPO, name), source / name)
  subprocess.run(
    [
      sys.executable,
      "-m",
      "pip",
      "wheel",
      "--no-deps",
      "--no-build-isolation",
      "-q",
      str(source),
      "-w",
      str(tmp_path / "dist"),
    ],
    check=True,
    cwd=tmp_path,
    capture_output=True,
    timeout=300,
  )
  (wheel,) = (tmp_path / "dist").glob("gjax-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  packaged = {os.path.dirname(n) for n in names if n.endswith(".py")}
  on_disk = {
    os.path.relpath(root, REPO)
    for root, _, files in os.walk(os.path.join(REPO, "gjax"))
    if any(f.endswith(".py") for f in files)
  }
  assert packaged == on_disk, f"sub-packages not in the wheel: {sorted(on_disk - packaged)}"
  metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
  for dependency in ("jax", "flax", "optax", "orbax-checkpoint", "chex", "ml-collections", "tensorflow-datasets"):
    assert f"Requires-Dist: {dependency}" in metadata, dependency
  subprocess.run(
    [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"), str(wheel)],
    check=True,
    capture_output=True,
    timeout=300,
  )
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  probe = (
    "import gjax, gjax.train, gjax.eval, gjax.objectives; "
    "print(gjax.__file__); print(len(gjax.objectives.registered_methods()))"
  )
  env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), JAX_PLATFORMS="cpu")
  result = subprocess.run(
    [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-2000:]
  path, methods = result.stdout.split()[-2:]
  assert path.startswith(str(tmp_path / "site")), path  # the installed copy, not the checkout
  assert int(methods) >= 10
