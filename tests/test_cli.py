"""train.py / eval.py as a user meets them: a mistake is one line without a
traceback (``--debug`` shows it), a misspelt field gets a suggestion, and a
signal before training starts ends the process at once with a message."""

import os
import signal
import subprocess
import sys
import time

from gjax.cli import _suggest, check_config_overrides, load_config
from gjax.train.config import config_fields
from tests.test_hardening import REPO, TINY, train_command

SMOKE = "configs/vje_fashion_mnist.py:smoke"


def run(args, timeout=300):
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_suggestions_for_misspelt_fields():
  known = [name for name, _ in config_fields(load_config(os.path.join(REPO, SMOKE)))]
  assert "optim.base_learning_rate" in _suggest("optim.lr", known)
  assert _suggest("optim.momentm", known)[0] == "optim.momentum"
  assert "vje.beta" in _suggest("vje.betta", known)
  assert check_config_overrides(["--config", SMOKE, "--config.vje.beta=2"]) is None
  message = check_config_overrides([f"--config={SMOKE}", "--config.optim.lr=0.1"])
  assert message.startswith("unknown config field --config.optim.lr; did you mean --config.optim.base_learning_rate")
  assert "the fields of optim: " in message


def test_a_misspelt_field_is_one_line_with_a_suggestion(tmp_path):
  out = run(["train.py", "--config", SMOKE, "--workdir", str(tmp_path), "--config.optim.lr=0.1"])
  assert out.returncode == 2
  assert (
    "train.py: error: unknown config field --config.optim.lr; did you mean --config.optim.base_learning_rate"
    in out.stderr
  )
  assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_bad_value_or_missing_data_is_one_line_and_debug_shows_the_traceback(tmp_path):
  bad = run(["eval.py", "--config", SMOKE, "--workdir", str(tmp_path), "--config.batch_size=-16"])
  assert bad.returncode == 2, bad.stderr[-2000:]
  assert "eval.py: error: config.batch_size=-16 is invalid" in bad.stderr and "Traceback" not in bad.stderr
  missing = run(
    ["train.py", "--config", SMOKE, "--workdir", str(tmp_path), "--config.dataset.data_dir=/nonexistent/fashion"]
  )
  assert missing.returncode == 2
  assert "config.dataset.data_dir='/nonexistent/fashion' is invalid: is not a directory" in missing.stderr
  assert "Traceback" not in missing.stderr
  debug = run(["eval.py", "--config", SMOKE, "--workdir", str(tmp_path), "--config.batch_size=-16", "--debug"])
  assert debug.returncode != 0 and "Traceback" in debug.stderr and "config.batch_size=-16" in debug.stderr


def test_sigterm_during_start_up_and_compilation_ends_at_once_with_a_message(tmp_path):
  workdir = tmp_path / "run"
  process = subprocess.Popen(
    train_command(workdir, num_train_steps=50), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
  )
  lines = []
  try:
    for line in process.stderr:  # wait until it compiles the first step (the main thread is in XLA)
      lines.append(line)
      if "compiling the train step" in line:
        break
    assert (workdir / "lock.json").exists()
    sent = time.time()
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[1]
    waited = time.time() - sent
  finally:
    process.kill()
  assert process.returncode == 0, "".join(lines) + rest
  assert waited < 10, waited
  assert "SIGTERM received before training started (nothing to save): exiting" in rest
  assert not (workdir / "lock.json").exists()  # released on the way out
  assert not (workdir / "train.jsonl").exists()
  # TINY is what train_command trains; the workdir resumes normally afterwards.
  assert TINY["dataset.name"] == "synthetic"


def test_a_checkpoint_that_does_not_fit_the_config_names_the_field_in_a_few_lines(tmp_path):
  from gjax.train import train_and_evaluate
  from tests.test_hardening import _corrupt, tiny

  train_and_evaluate(tiny(num_train_steps=2, checkpoint_every_steps=2), str(tmp_path))
  flags = [
    f"--config.{k}={v}"
    for k, v in {**TINY, "num_train_steps": 2, "checkpoint_every_steps": 2, "eval.run_only": "('knn',)"}.items()
  ]
  wider = run(
    ["eval.py", "--config", SMOKE, "--workdir", str(tmp_path), *flags, "--config.model.width_multiplier=0.125"]
  )
  assert wider.returncode == 2
  assert "does not fit this config" in wider.stderr and "has shape" in wider.stderr
  assert "model.width_multiplier: 0.0625 (run) vs 0.125 (given)" in wider.stderr
  assert "Event loop is closed" not in wider.stderr and "Traceback" not in wider.stderr
  assert len(wider.stderr.strip().splitlines()) <= 4, wider.stderr
  _corrupt(tmp_path / "checkpoints" / "2")
  damaged = run(["eval.py", "--config", SMOKE, "--workdir", str(tmp_path), *flags])
  assert damaged.returncode == 2 and "Traceback" not in damaged.stderr
  assert "no checkpoint in" in damaged.stderr and "move the checkpoints/ directory aside" in damaged.stderr
  assert len(damaged.stderr.strip().splitlines()) <= 6, damaged.stderr
