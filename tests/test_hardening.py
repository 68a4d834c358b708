"""Long-run hardening: preemption signals, kill -9 and resume, unreadable
checkpoints, non-finite steps, determinism, the config schema."""

import dataclasses
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from gjax.cli import load_config
from gjax.train import base_config, checkpoints, plan, train_and_evaluate
from gjax.train import config as config_lib
from gjax.train import state as state_lib
from tests.helpers import set_fields

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny synthetic run through the real command line (train.py) and in process.
TINY = {
  "dataset.name": "synthetic",
  "dataset.synthetic_image_size": 16,
  "dataset.num_train_examples": -1,
  "model.encoder": "resnet10",  # one block per stage: the same code paths, less to compile
  "model.width_multiplier": 0.0625,
  "model.bottleneck": 16,
  "batch_size": 16,
  "optim.base_learning_rate": 0.5,
}


def tiny(method: str = "vje", **overrides):
  """The smoke recipe of ``method`` (the composed config), made tiny."""
  spec = os.path.join(REPO, f"configs/fashion_mnist.py:method={method},variant=smoke")
  return set_fields(load_config(spec), {**TINY, **overrides})


def train_command(workdir, **overrides):
  return [sys.executable, "train.py", "--config", "configs/vje_fashion_mnist.py:smoke", "--workdir", str(workdir)] + [
    f"--config.{k}={v}" for k, v in {**TINY, **overrides}.items()
  ]


def checkpoint_steps(workdir) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def assert_states_equal(a, b):
  a, b = jax.device_get(a), jax.device_get(b)
  assert int(a.step) == int(b.step)
  for part in ("params", "opt_state", "model_state"):
    jax.tree_util.tree_map(np.testing.assert_array_equal, getattr(a, part), getattr(b, part))


def restore(workdir, config):
  """The newest checkpoint of ``workdir`` restored into ``config``'s state."""
  from gjax import data as gdata
  from gjax.train.input_pipeline import build_train_input

  train_input = build_train_input(config)
  _, _, model = state_lib.build_method(config)
  tx, _ = state_lib.make_optimizer(
    config, train_input.steps_per_epoch, state_lib.total_train_steps(config, train_input.steps_per_epoch)
  )
  mesh = gdata.data_mesh()
  state = state_lib.create_train_state(
    jax.random.PRNGKey(0), model, tx, train_input.image_shape, gdata.replicated_sharding(mesh)
  )
  manager = checkpoints.checkpoint_manager(str(workdir), config)
  try:
    return checkpoints.restore_latest(manager, state)
  finally:
    manager.close()


def wait_for(predicate, process, timeout=300.0):
  start = time.time()
  while not predicate():
    if process.poll() is not None:
      raise AssertionError(f"training ended before the test could interrupt it:\n{process.stderr.read()[-3000:]}")
    if time.time() - start > timeout:
      process.kill()
      raise AssertionError("timed out waiting for the training subprocess")
    time.sleep(0.02)


# --------------------------------------------------------------------------- preemption


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = tmp_path / "run"
  process = subprocess.Popen(
    train_command(workdir, num_train_steps=5000, log_every_steps=5, checkpoint_every_steps=4000),
    cwd=REPO,
    stderr=subprocess.PIPE,
    stdout=subprocess.DEVNULL,
    text=True,
  )
  wait_for(lambda: (workdir / "train.jsonl").exists() and (workdir / "train.jsonl").read_text().strip(), process)
  # A second train.py in the same workdir (the one-writer case): refused at once in one line, no hang.
  second = subprocess.run(
    train_command(workdir, num_train_steps=5000, log_every_steps=5, checkpoint_every_steps=4000),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert second.returncode == 2, second.stderr[-3000:]
  assert f"is in use by pid {process.pid} on host" in second.stderr and "Traceback" not in second.stderr
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 0, stderr[-3000:]
  assert "stopped by SIGTERM" in stderr
  logged = [json.loads(line)["step"] for line in (workdir / "train.jsonl").read_text().splitlines()]
  assert logged == sorted(set(logged))  # one writer: every step once, in order
  steps = checkpoint_steps(workdir)
  assert len(steps) == 1 and 5 <= steps[0] < 4000, steps  # saved at the signal, not at a periodic step
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["preempted"] == "SIGTERM" and summary["final_step"] == steps[0]


def test_sigint_in_process_stops_after_the_current_step(tmp_path, monkeypatch):
  config = tiny(num_train_steps=50, checkpoint_every_steps=100, log_every_steps=1)
  original = plan.make_train_step
  handler_before = signal.getsignal(signal.SIGINT)

  def make_step_sending_sigint_at_step_3(*args, **kwargs):
    step_fn = original(*args, **kwargs)
    calls = []

    def step(state, batch):
      calls.append(1)
      if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGINT)
      return step_fn(state, batch)

    return step

  monkeypatch.setattr(plan, "make_train_step", make_step_sending_sigint_at_step_3)
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary["preempted"] == "SIGINT" and summary["final_step"] == 3
  assert checkpoint_steps(tmp_path) == [3]
  assert signal.getsignal(signal.SIGINT) is handler_before  # handlers restored


def test_kill_9_loses_only_the_steps_since_the_checkpoint_and_resumes_exactly(tmp_path):
  overrides = dict(num_train_steps=30, log_every_steps=3, checkpoint_every_steps=3)
  workdir = tmp_path / "killed"
  process = subprocess.Popen(
    train_command(workdir, **overrides), cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
  )
  wait_for(lambda: checkpoint_steps(workdir), process)
  process.kill()  # SIGKILL: no handler runs
  process.wait(timeout=60)
  saved = checkpoint_steps(workdir)
  assert saved and saved[-1] < 30, saved
  config = tiny(**overrides)
  resumed = train_and_evaluate(config, str(workdir))
  assert resumed["start_step"] == saved[-1]  # nothing before the last checkpoint is redone or lost
  full = train_and_evaluate(config, str(tmp_path / "uninterrupted"))
  assert_states_equal(resumed["state"], full["state"])


# --------------------------------------------------------------------------- unreadable checkpoints


def _corrupt(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      with open(path, "wb") as f:
        f.write(b"\x00garbage" * max(1, size // 16))


def test_corrupt_latest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
  config = tiny(num_train_steps=4, checkpoint_every_steps=2, log_every_steps=2)
  full = train_and_evaluate(config, str(tmp_path / "full"))
  workdir = tmp_path / "run"
  train_and_evaluate(config, str(workdir))
  assert checkpoint_steps(workdir) == [2, 4]
  _corrupt(workdir / "checkpoints" / "4")
  # A half-written checkpoint (Orbax's temporary directory of an unfinished save) is not a step.
  os.makedirs(workdir / "checkpoints" / "6.orbax-checkpoint-tmp-1234" / "default")
  with caplog.at_level(logging.WARNING, logger="gjax.train"):
    resumed = train_and_evaluate(config, str(workdir))
  assert "checkpoint at step 4" in caplog.text and "cannot be read" in caplog.text
  assert resumed["start_step"] == 2 and resumed["final_step"] == 4
  assert_states_equal(resumed["state"], full["state"])
  assert [name.split("-")[0] for name in os.listdir(workdir / "checkpoints_unreadable")] == ["4"]


def _damage_silently(workdir, config, state, step):
  """Overwrites 16 bytes of a data file of checkpoint ``step`` where Orbax still
  reads the checkpoint without an error but with other values (some places make
  it unreadable, which the older test covers; some hit unused bytes): tries data
  files, largest first, at a few offsets, keeping the first silent damage."""
  from gjax.train.checkpoints import checkpoint_manager, saved_tree

  files = sorted(
    (
      os.path.join(root, name)
      for root, _, names in os.walk(workdir / "checkpoints" / str(step))
      for name in names
      if os.sep + "d" + os.sep in os.path.join(root, name)
    ),
    key=os.path.getsize,
    reverse=True,
  )
  abstract = saved_tree(jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state))
  saved = jax.tree_util.tree_leaves(jax.device_get(saved_tree(state)))
  for path in files:
    for fraction in (0.5, 0.3, 0.7, 0.9):
      with open(path, "r+b") as f:
        f.seek(int(os.path.getsize(path) * fraction))
        offset, original = f.tell(), f.read(16)
        f.seek(offset)
        f.write(b"\x7f" * len(original))
      manager = checkpoint_manager(str(workdir), config)
      try:
        read = jax.tree_util.tree_leaves(jax.device_get(manager.restore(step, args=ocp.args.StandardRestore(abstract))))
        silent = any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(read, saved))
      except Exception:  # noqa: BLE001 - unreadable: not the case under test
        silent = False
      finally:
        manager.close()
      if silent:
        return
      with open(path, "r+b") as f:
        f.seek(offset)
        f.write(original)
  pytest.fail("no 16-byte overwrite left the checkpoint readable with other values")


def test_bytes_changed_on_disk_are_caught_by_the_checksum_and_the_previous_checkpoint_used(tmp_path, caplog):
  config = tiny(num_train_steps=4, checkpoint_every_steps=2, log_every_steps=2)
  workdir = tmp_path / "run"
  full = train_and_evaluate(config, str(workdir))
  assert sorted(os.listdir(workdir / "checkpoint_checksums")) == ["2.json", "4.json"]
  _damage_silently(workdir, config, full["state"], 4)  # Orbax alone would restore it, with other values
  with caplog.at_level(logging.WARNING, logger="gjax.train"):
    resumed = train_and_evaluate(config, str(workdir))
  assert "checkpoint at step 4" in caplog.text and "ChecksumMismatchError" in caplog.text
  assert "its bytes on disk changed after it was written" in caplog.text
  assert resumed["start_step"] == 2 and resumed["final_step"] == 4
  assert_states_equal(resumed["state"], full["state"])
  assert [name.split("-")[0] for name in os.listdir(workdir / "checkpoints_unreadable")] == ["4"]
  assert sorted(os.listdir(workdir / "checkpoint_checksums")) == ["2.json", "4.json"]  # 4 rewritten


def test_a_checkpoint_without_recorded_checksums_restores_unverified_with_a_warning(tmp_path, caplog):
  config = tiny(num_train_steps=2, checkpoint_every_steps=2, log_every_steps=2)
  first = train_and_evaluate(config, str(tmp_path))
  os.remove(tmp_path / "checkpoint_checksums" / "2.json")
  with caplog.at_level(logging.WARNING, logger="gjax.train"):
    again = train_and_evaluate(config, str(tmp_path))
  assert "checkpoint at step 2 has no recorded checksum" in caplog.text and "restored unverified" in caplog.text
  assert again["start_step"] == again["final_step"] == 2
  assert_states_equal(again["state"], first["state"])


def test_no_readable_checkpoint_raises_and_moves_nothing(tmp_path):
  config = tiny(num_train_steps=2, checkpoint_every_steps=2, log_every_steps=2)
  train_and_evaluate(config, str(tmp_path))
  other = tiny(num_train_steps=2, **{"model.bottleneck": 32})  # a config the checkpoint does not fit
  with pytest.raises(ValueError):
    train_and_evaluate(other, str(tmp_path))
  assert checkpoint_steps(tmp_path) == [2] and not (tmp_path / "checkpoints_unreadable").exists()


# --------------------------------------------------------------------------- non-finite steps


def _objective_with_nan_on(predicate):
  """Wraps ``config.method``'s objective: the loss is NaN where ``predicate(rng)``."""
  original = plan.build_method

  def build_method(config):
    objective, hparams, model = original(config)

    def loss_fn(outputs, rng, hparams):
      loss, metrics = objective.loss_fn(outputs, rng, hparams)
      return jnp.where(predicate(rng), jnp.nan, loss), metrics

    return dataclasses.replace(objective, loss_fn=loss_fn), hparams, model

  return build_method


def test_injected_nan_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
  config = tiny(num_train_steps=8, checkpoint_every_steps=1, log_every_steps=1)
  good = train_and_evaluate(config, str(tmp_path / "good"), stop_after_steps=2)
  monkeypatch.setattr(plan, "build_method", _objective_with_nan_on(lambda rng: True))
  with pytest.raises(FloatingPointError, match=r"training stopped at step 3: non-finite") as info:
    train_and_evaluate(config, str(tmp_path / "good"))
  message = str(info.value)
  assert "loss=nan" in message and "directional=" in message and "kl=" in message  # the loss parts
  assert "last checkpoint (step 2) is intact" in message
  assert checkpoint_steps(tmp_path / "good")[-1] == 2
  assert_states_equal(restore(tmp_path / "good", config), good["state"])


def test_huge_learning_rate_is_caught_at_the_update(tmp_path):
  config = tiny(num_train_steps=4, log_every_steps=1, **{"optim.base_learning_rate": 1e30})
  with pytest.raises(FloatingPointError, match=r"step 1: non-finite .*param_norm=inf"):
    train_and_evaluate(config, str(tmp_path))
  assert checkpoint_steps(tmp_path) == []


def test_skip_policy_skips_nonfinite_steps_and_keeps_training(tmp_path, monkeypatch):
  config = tiny(num_train_steps=12, log_every_steps=4, nonfinite_policy="skip")
  monkeypatch.setattr(
    plan, "build_method", _objective_with_nan_on(lambda rng: jax.random.bernoulli(jax.random.fold_in(rng, 7), 0.4))
  )
  summary = train_and_evaluate(config, str(tmp_path))
  assert 0 < summary["skipped_steps"] < 12 and summary["final_step"] == 12
  params = jax.device_get(summary["state"].params)
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(params))
  rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
  # Skipped steps stay out of the logged means; a window of only skipped steps logs NaN.
  assert all(math.isfinite(float(row["loss"])) or row["nonfinite"] == 1.0 for row in rows)
  assert any(math.isfinite(float(row["loss"])) for row in rows)
  assert rows[-1]["skipped_steps"] == summary["skipped_steps"]
  # Too many in a row stops the run.
  always = tiny(num_train_steps=12, log_every_steps=4, nonfinite_policy="skip", max_consecutive_skips=2)
  monkeypatch.setattr(plan, "build_method", _objective_with_nan_on(lambda rng: True))
  with pytest.raises(FloatingPointError, match="3 consecutive non-finite steps"):
    train_and_evaluate(always, str(tmp_path / "always"))


# --------------------------------------------------------------------------- determinism


def test_same_config_and_seed_give_bitwise_identical_runs(tmp_path, monkeypatch):
  config = tiny(num_train_steps=4, log_every_steps=1, checkpoint_every_steps=4)
  steps = []
  original = plan.make_train_step
  monkeypatch.setattr(plan, "make_train_step", lambda *a, **k: steps.append(original(*a, **k)) or steps[-1])
  first = train_and_evaluate(config, str(tmp_path / "a"))
  assert steps[0]._cache_size() == 1  # one compilation for the whole run: no recompiles, no layout churn
  second = train_and_evaluate(config, str(tmp_path / "b"))
  assert_states_equal(first["state"], second["state"])
  losses = [
    [json.loads(line)["loss"] for line in (tmp_path / run / "train.jsonl").read_text().splitlines()]
    for run in ("a", "b")
  ]
  assert losses[0] == losses[1]
  other_seed = train_and_evaluate(tiny(num_train_steps=4, seed=1), str(tmp_path / "c"))
  assert not np.array_equal(
    jax.tree_util.tree_leaves(jax.device_get(other_seed["state"].params))[0],
    jax.tree_util.tree_leaves(jax.device_get(first["state"].params))[0],
  )


# --------------------------------------------------------------------------- config schema


def _with(field, value, method="vje"):
  config = base_config(method)
  config.unlock()
  *path, last = field.split(".")
  target = config
  for part in path:
    target = target[part]
  target.__dict__["_fields"][last] = value  # bypass ConfigDict's own type check
  return config


def _bad_values(field, default):
  """A wrong-typed value and, for numbers and names, an out-of-range one."""
  if isinstance(default, bool):
    return [1]
  if isinstance(default, int):
    return ["3", 2.5, -(10**9)]
  if isinstance(default, float):
    return ["3", -1e9, math.nan]
  if isinstance(default, str):
    return [3, "no-such-value"]
  return [5, ("no-such-value",)]  # tuples


def _every_field():
  """The shared fields once (with VJE), then every gjax method's own section (not
  those a test registers: the parametrisation must not depend on import order)."""
  from gjax.objectives import get_objective, registered_methods

  rows = [("vje", field, default) for field, default in config_lib.config_fields(base_config("vje"))]
  for method in registered_methods():
    if method != "vje" and get_objective(method).loss_fn.__module__.startswith("gjax."):
      rows += [(method, f"{method}.{f}", d) for f, d in config_lib.config_fields(config_lib.method_settings(method))]
  return rows


@pytest.mark.parametrize("method,field,default", _every_field())
def test_every_config_field_has_a_type_and_a_range(method, field, default):
  for value in _bad_values(field, default):
    with pytest.raises(ValueError, match=rf"config\.{field}="):
      config_lib.validate_config(_with(field, value, method), 1)


def test_unknown_and_missing_fields_are_rejected():
  config = base_config()
  config.unlock()
  config.vje.nuu = 3.0
  with pytest.raises(ValueError, match=r"config\.vje\.nuu=3\.0 .*unknown field"):
    config_lib.validate_config(config, 1)
  config = base_config()
  config.unlock()
  del config.optim["momentum"]
  with pytest.raises(ValueError, match=r"config\.optim\.momentum=None .*missing field"):
    config_lib.validate_config(config, 1)
  config = base_config()
  config.unlock()
  config.vje.nu = math.inf  # the Gaussian limit stays allowed
  config_lib.validate_config(config, 1)


# --------------------------------------------------------------------------- mixed precision


def test_bfloat16_compute_trains_with_float32_parameters_and_losses(tmp_path):
  runs = {
    dtype: train_and_evaluate(
      tiny(num_train_steps=2, log_every_steps=1, **{"model.compute_dtype": dtype}), str(tmp_path / dtype)
    )
    for dtype in ("float32", "bfloat16")
  }
  params = jax.device_get(runs["bfloat16"]["state"].params)
  assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {np.dtype(np.float32)}
  losses = {
    dtype: [json.loads(line)["loss"] for line in (tmp_path / dtype / "train.jsonl").read_text().splitlines()]
    for dtype in runs
  }
  assert all(math.isfinite(loss) for loss in losses["bfloat16"])
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.05)  # bf16 rounding, same model
  assert losses["bfloat16"] != losses["float32"]  # the compute dtype did change the arithmetic


# --------------------------------------------------------------------------- one writer, consistent metrics


def test_a_second_process_cannot_train_in_a_used_workdir_and_a_dead_ones_lock_is_taken_over(tmp_path, caplog):
  import socket

  from gjax.train.lock import LOCK_NAME, WorkdirInUseError

  config = tiny(num_train_steps=2, log_every_steps=1, checkpoint_every_steps=2)
  holder = subprocess.Popen(["sleep", "120"])  # another process on this host, alive
  try:
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
    with pytest.raises(WorkdirInUseError, match=f"in use by pid {holder.pid} on host"):
      train_and_evaluate(config, str(tmp_path))
    assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")
  finally:
    holder.kill()
    holder.wait()
  with caplog.at_level(logging.WARNING, logger="gjax.train"):
    summary = train_and_evaluate(config, str(tmp_path))  # the holder is gone: its lock is taken over
  assert summary["final_step"] == 2 and "no longer running" in caplog.text
  assert not (tmp_path / LOCK_NAME).exists()  # released at the end


def test_metrics_have_each_step_once_after_a_resume_and_the_summary_covers_the_whole_run(tmp_path):
  config = tiny(num_train_steps=4, log_every_steps=1, checkpoint_every_steps=2, keep_checkpoints=3)
  train_and_evaluate(config, str(tmp_path))
  # As if the run had died after logging steps 3-4 but before checkpointing step 4.
  import shutil

  shutil.rmtree(tmp_path / "checkpoints" / "4")
  resumed = train_and_evaluate(config, str(tmp_path))
  assert resumed["start_step"] == 2
  steps = [json.loads(line)["step"] for line in (tmp_path / "train.jsonl").read_text().splitlines()]
  assert steps == [1, 2, 3, 4]
  summary = json.loads((tmp_path / "summary.json").read_text())
  # Both process lifetimes (the first one's steps 3-4 were lost and redone).
  assert [(s["start_step"], s["final_step"]) for s in summary["segments"]] == [(0, 4), (2, 4)]
  assert summary["total_wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in summary["segments"]))


# --------------------------------------------------------------------------- run identity


def test_a_resume_with_a_changed_config_stops_listing_the_changes_and_the_ways_out(tmp_path):
  from gjax.train.rundir import ConfigChangedError

  config = tiny(num_train_steps=2, checkpoint_every_steps=2, log_every_steps=1)
  train_and_evaluate(config, str(tmp_path))
  recorded = (tmp_path / "config.json").read_text()
  changed = tiny(num_train_steps=4, checkpoint_every_steps=2, log_every_steps=1, batch_size=32, seed=3)
  with pytest.raises(ConfigChangedError) as info:
    train_and_evaluate(changed, str(tmp_path))
  message = str(info.value)
  assert "batch_size: 16 -> 32" in message and "num_train_steps: 2 -> 4" in message and "seed: 0 -> 3" in message
  assert "checkpoint at step 2" in message and "new --workdir" in message
  assert "--config.resume_with_changed_config=True" in message
  assert (tmp_path / "config.json").read_text() == recorded  # the run's record is untouched
  assert checkpoint_steps(tmp_path) == [2] and not (tmp_path / "config_history.jsonl").exists()
  # Logging, checkpointing and evaluation settings may change freely.
  again = train_and_evaluate(
    tiny(num_train_steps=2, checkpoint_every_steps=5, log_every_steps=2, **{"eval.evaluators.knn.k": 7}), str(tmp_path)
  )
  assert again["start_step"] == 2


def test_a_resume_with_a_changed_config_continues_when_asked_and_keeps_the_earlier_config(tmp_path, caplog):
  config = tiny(num_train_steps=2, checkpoint_every_steps=2, log_every_steps=1)
  train_and_evaluate(config, str(tmp_path))
  earlier = json.loads((tmp_path / "config.json").read_text())
  longer = tiny(num_train_steps=3, checkpoint_every_steps=2, log_every_steps=1, resume_with_changed_config=True)
  with caplog.at_level(logging.WARNING, logger="gjax.train"):
    resumed = train_and_evaluate(longer, str(tmp_path))
  assert resumed["start_step"] == 2 and resumed["final_step"] == 3
  assert "num_train_steps: 2 -> 3" in caplog.text
  (history,) = [json.loads(line) for line in (tmp_path / "config_history.jsonl").read_text().splitlines()]
  assert history["until_step"] == 2 and history["config"] == earlier
  assert history["changed"] == {"num_train_steps": [2, 3]}
  assert json.loads((tmp_path / "config.json").read_text())["num_train_steps"] == 3
