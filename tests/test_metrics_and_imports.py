"""Metric files (JSON lines and TensorBoard events read back by TensorFlow's own
reader) and gjax without TensorFlow: training and evaluation on the in-memory
data sets with ``tensorflow`` and ``tensorflow_datasets`` made unimportable."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gjax.train.metrics import MetricWriter, read_metrics
from tests.test_hardening import REPO, TINY

# Hides the named top-level modules from every finder (as if not installed), then runs a script given as argv.
BLOCKER = textwrap.dedent("""
    import importlib.abc, os, runpy, sys
    sys.path.insert(0, os.getcwd())
    BLOCKED = ("tensorflow", "tensorflow_datasets")
    class Hide(importlib.abc.MetaPathFinder):  # as if not installed: find_spec finds nothing
      def __init__(self, finder):
        self.finder = finder
      def __getattr__(self, name):
        return getattr(self.finder, name)
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
          return None
        return self.finder.find_spec(name, path, target)
    sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
    script, sys.argv = sys.argv[1], sys.argv[1:]
    try:
      runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
      if e.code not in (0, None):
        raise
    assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    print("NO-TENSORFLOW-OK")
""")


def test_metric_writer_events_read_back_by_tensorflow(tmp_path):
  writer = MetricWriter(str(tmp_path), "train")
  rows = [(2, {"loss": 1.5, "kl": 0.25}), (4, {"loss": float("nan"), "kl": 0.125})]
  for step, scalars in rows:
    writer.write_scalars(step, scalars)
  writer.close()
  assert read_metrics(str(tmp_path / "train.jsonl")) == [
    {"step": 2, "loss": 1.5, "kl": 0.25},
    {"step": 4, "loss": "nan", "kl": 0.125},
  ]

  import tensorflow as tf  # the independent reader: checks the record framing and CRCs

  (name,) = os.listdir(tmp_path / "tensorboard" / "train")
  assert name.startswith("events.out.tfevents.")
  events = list(tf.compat.v1.train.summary_iterator(str(tmp_path / "tensorboard" / "train" / name)))
  assert events[0].file_version == "brain.Event:2"
  read = [(e.step, {v.tag: v.simple_value for v in e.summary.value}) for e in events[1:]]
  assert [step for step, _ in read] == [2, 4]
  assert read[0][1] == {"loss": 1.5, "kl": 0.25}
  assert np.isnan(read[1][1]["loss"]) and read[1][1]["kl"] == 0.125


def test_a_disabled_writer_writes_nothing(tmp_path):
  writer = MetricWriter(str(tmp_path / "run"), "train", enabled=False)
  writer.write_scalars(1, {"loss": 1.0})
  writer.close()
  assert not (tmp_path / "run").exists()


def _run_without_tensorflow(script_and_args, tmp_path):
  blocker = tmp_path / "blocker.py"
  blocker.write_text(BLOCKER)
  return subprocess.run(
    [sys.executable, str(blocker), *script_and_args], cwd=REPO, capture_output=True, text=True, timeout=600
  )


def test_train_and_eval_run_without_tensorflow_or_tfds(tmp_path):
  flags = [
    f"--config.{k}={v}"
    for k, v in {
      **TINY,
      "num_train_steps": 2,
      "log_every_steps": 1,
      "checkpoint_every_steps": 2,
      "eval.num_train_examples": 256,
      "eval.run_only": "('knn',)",
    }.items()
  ]
  common = ["--config", "configs/vje_fashion_mnist.py:smoke", "--workdir", str(tmp_path / "run"), *flags]
  trained = _run_without_tensorflow(["train.py", *common], tmp_path)
  assert trained.returncode == 0 and "NO-TENSORFLOW-OK" in trained.stdout, trained.stderr[-3000:]
  assert len(read_metrics(str(tmp_path / "run" / "train.jsonl"))) == 2
  assert os.listdir(tmp_path / "run" / "tensorboard" / "train")
  evaluated = _run_without_tensorflow(["eval.py", *common], tmp_path)
  assert evaluated.returncode == 0 and "NO-TENSORFLOW-OK" in evaluated.stdout, evaluated.stderr[-3000:]
  assert "knn30_z" in json.loads((tmp_path / "run" / "eval_results.json").read_text())


def test_a_tfds_data_set_without_tensorflow_names_what_to_install(tmp_path):
  script = tmp_path / "use_tfds.py"
  script.write_text(
    textwrap.dedent("""
      from gjax.train import base_config
      from gjax.train.input_pipeline import build_train_input
      c = base_config()
      c.dataset.name = "cifar10"
      try:
        build_train_input(c)
      except ImportError as e:
        print("MESSAGE:", e)
  """)
  )
  result = _run_without_tensorflow([str(script)], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "MESSAGE: the TFDS data sets need tensorflow and tensorflow-datasets" in result.stdout
  assert "pip install -r requirements.txt" in result.stdout and "fashion_mnist" in result.stdout


@pytest.mark.parametrize("module", ["gjax", "gjax.train", "gjax.eval", "gjax.data", "gjax.objectives"])
def test_importing_gjax_does_not_import_tensorflow(module):
  code = (
    f"import sys, {module}; "
    "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')))"
  )
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]


PRIVATE_JAX = ("jax._src", "jax.interpreters", "jax.lib", "jaxlib")


def test_no_private_jax_api_is_used():
  """gjax runs on jax 0.12 and is meant to follow jax's releases and the
  accelerator images' versions: only public APIs, which releases keep, are
  used (no jax._src, jax.interpreters, jax.lib or jaxlib imports or attribute
  accesses)."""
  import ast
  import glob

  offenders = []
  files = [
    f
    for pattern in ("gjax/**/*.py", "benchmarks/*.py", "*.py")
    for f in glob.glob(os.path.join(REPO, pattern), recursive=True)
  ]
  assert len(files) > 30
  for path in files:
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
      elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "jax":
        names = [f"jax.{node.attr}"]
      for name in names:
        if any(name == p or name.startswith(p + ".") for p in PRIVATE_JAX):
          offenders.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {name}")
  assert not offenders, offenders
