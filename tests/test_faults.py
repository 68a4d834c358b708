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
  path.write_text(text[: len(text.rstrip("\n")) - len(last) // 2])


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


def _damage_one_byte(path, offset=0):
  data = bytearray(path.read_bytes())
  data[offset] = ord("#")
  path.write_bytes(bytes(data))


def test_case08_unparseable_run_files_are_named_with_what_to_do_and_summary_json_is_checked_before_training(
  tmp_path, caplog
):
  from gjax.train.rundir import RunFileError

  config = tiny(num_train_steps=4, log_every_steps=1, checkpoint_every_steps=2)
  train_and_evaluate(config, str(tmp_path), stop_after_steps=2)
  good = {name: (tmp_path / name).read_bytes() for name in ("config.json", "train.jsonl", "summary.json")}
  _damage_one_byte(tmp_path / "config.json")
  with pytest.raises(RunFileError) as info:
    train_and_evaluate(config, str(tmp_path))
  assert str(info.value).startswith(f"{tmp_path / 'config.json'} cannot be parsed as JSON")
  assert "move it aside and rerun" in str(info.value)
  (tmp_path / "config.json").write_bytes(good["config.json"])
  _damage_one_byte(tmp_path / "train.jsonl")  # the first of two lines: not a torn last line
  with pytest.raises(
    RunFileError,
    match=rf"^{tmp_path / 'train.jsonl'}: line 1 cannot be parsed as JSON .*"
    r"Delete or repair that line",
  ):
    train_and_evaluate(config, str(tmp_path))
  assert checkpoint_steps(tmp_path) == [2] and not (tmp_path / "lock.json").exists()  # refused before anything
  (tmp_path / "train.jsonl").write_bytes(good["train.jsonl"])
  _damage_one_byte(tmp_path / "summary.json", offset=len(good["summary.json"]) // 2)
  with caplog.at_level(logging.WARNING, logger="gjax.train"):
    resumed = train_and_evaluate(config, str(tmp_path))  # trains on instead of failing after the last step
  assert resumed["start_step"] == 2 and resumed["final_step"] == 4
  (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("summary.json.unreadable-")]
  assert f"{tmp_path / 'summary.json'} cannot be read" in caplog.text and f"moved to {aside}" in caplog.text
  assert aside.read_bytes() != good["summary.json"] and len(aside.read_bytes()) == len(good["summary.json"])
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert [(s["start_step"], s["final_step"]) for s in summary["segments"]] == [(2, 4)]


def test_case09_a_directory_holding_another_tools_files_is_refused_before_anything_is_written(tmp_path):
  from gjax.train.rundir import NotAGjaxWorkdirError

  theirs = {"config.json": json.dumps({"lr": 0.1, "epochs": 3}), "train.jsonl": '{"epoch": 1, "loss": 0.3}\n'}
  for name, text in theirs.items():
    (tmp_path / name).write_text(text)
  with pytest.raises(NotAGjaxWorkdirError) as info:
    train_and_evaluate(tiny(num_train_steps=2), str(tmp_path))
  message = str(info.value)
  assert f"{tmp_path} holds files gjax did not write" in message and "use another --workdir" in message.lower()
  assert f"{tmp_path / 'config.json'}: a JSON dict without gjax's config fields ['method', 'dataset'" in message
  assert f"{tmp_path / 'train.jsonl'}: row 1 has no integer 'step'" in message
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs)  # nothing written, nothing overwritten
  assert all((tmp_path / name).read_text() == text for name, text in theirs.items())


def test_case06_a_damaged_checksum_side_file_leaves_its_checkpoint_in_use_unverified_with_a_warning(tmp_path, caplog):
  from tests.test_hardening import assert_states_equal

  config = tiny(num_train_steps=4, checkpoint_every_steps=2, log_every_steps=2)
  full = train_and_evaluate(config, str(tmp_path))
  side_file = tmp_path / "checkpoint_checksums" / "4.json"
  intact = side_file.read_text()
  crc = next(iter(json.loads(intact)["leaves"].values())).rsplit(":", 1)[1]
  damages = {
    "cannot be parsed": "#" + intact[1:],  # one byte: unparseable
    "its own record_crc32 does not match": intact.replace(crc, crc[:-1] + "0123"[crc[-1] == "0"], 1),
  }
  for why, text in damages.items():
    assert text != intact
    side_file.write_text(text)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gjax.train"):
      again = train_and_evaluate(config, str(tmp_path))
    assert "checkpoint at step 4 has a damaged checksum file" in caplog.text and why in caplog.text
    assert f"({side_file}): restored unverified" in caplog.text and "cannot be read" not in caplog.text
    assert "delete it to silence this warning" in caplog.text
    assert again["start_step"] == 4 and checkpoint_steps(tmp_path) == [2, 4]
    assert not (tmp_path / "checkpoints_unreadable").exists()
    assert_states_equal(again["state"], full["state"])


_HOLD_LOCK = (
  "import sys, time\n"
  "from gjax.train.lock import WorkdirLock\n"
  "lock = WorkdirLock(sys.argv[1]).__enter__()\n"
  "print('locked', flush=True)\n"
  "time.sleep(300)\n"
)


def test_case02_the_workdir_lock_is_an_os_file_lock_not_a_pid(tmp_path, caplog):
  import socket
  import subprocess
  import sys

  from gjax.train.lock import LOCK_NAME, WorkdirInUseError, WorkdirLock, _boot_id
  from tests.test_hardening import REPO

  lock_file = tmp_path / LOCK_NAME
  me = {"host": socket.gethostname(), "pid": os.getpid(), "boot_id": _boot_id(), "flock": True, "started": 0.0}
  # A restarted trainer that got its predecessor's pid (pid 1 of a new PID namespace): no flock, so stale.
  lock_file.write_text(json.dumps(me))
  with caplog.at_level(logging.WARNING, logger="gjax.train"):
    with WorkdirLock(str(tmp_path)):
      assert json.loads(lock_file.read_text())["started"] > 0  # ours now
  assert f"taking over the lock of pid {os.getpid()}" in caplog.text and not lock_file.exists()
  # A live holder (a process holding the flock) is never taken over, whatever pid lock.json names.
  holder = subprocess.Popen(
    [sys.executable, "-c", _HOLD_LOCK, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(lock_file, "r+") as f:  # the same file (inode), another pid in it
      record = json.load(f)
      f.seek(0)
      f.truncate()
      json.dump(dict(record, pid=dead.pid), f)
    with pytest.raises(WorkdirInUseError, match=f"in use by pid {dead.pid} on host"):
      WorkdirLock(str(tmp_path)).__enter__()
  finally:
    holder.kill()  # kill -9: no handler runs, the kernel drops its flock
    holder.wait()
  assert lock_file.exists()
  with WorkdirLock(str(tmp_path)):
    pass
  # A holder on another machine cannot be proven gone (a network file system may not show its flock).
  lock_file.write_text(json.dumps(dict(me, host="elsewhere", boot_id="another-kernel")))
  with pytest.raises(WorkdirInUseError, match=r"in use by pid \d+ on host elsewhere .*ran on another machine"):
    WorkdirLock(str(tmp_path)).__enter__()


def test_case04_sighup_stops_training_with_a_checkpoint_like_sigterm(tmp_path, monkeypatch):
  import signal

  from gjax.train import plan

  config = tiny(num_train_steps=50, checkpoint_every_steps=100, log_every_steps=1)
  original = plan.make_train_step
  received = []
  before = signal.signal(signal.SIGHUP, lambda *a: received.append(1))  # without gjax's handler: no effect

  def make_step_sending_sighup_at_step_3(*args, **kwargs):
    step_fn = original(*args, **kwargs)
    calls = []

    def step(state, batch):
      calls.append(1)
      if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGHUP)
      return step_fn(state, batch)

    return step

  monkeypatch.setattr(plan, "make_train_step", make_step_sending_sighup_at_step_3)
  try:
    handler = signal.getsignal(signal.SIGHUP)
    summary = train_and_evaluate(config, str(tmp_path))
    assert signal.getsignal(signal.SIGHUP) is handler  # restored
  finally:
    signal.signal(signal.SIGHUP, before)
  assert not received and summary["preempted"] == "SIGHUP" and summary["final_step"] == 3
  assert checkpoint_steps(tmp_path) == [3] and not (tmp_path / "lock.json").exists()


def _signal_caught(pid, signum) -> bool:
  """Whether process ``pid`` has a handler for ``signum`` (``SigCgt`` of /proc/<pid>/status)."""
  try:
    with open(f"/proc/{pid}/status") as f:
      caught = int(next(line for line in f if line.startswith("SigCgt:")).split()[1], 16)
  except (OSError, StopIteration):
    return False
  return bool(caught >> (signum - 1) & 1)


def test_case04_sighup_during_start_up_exits_at_once_with_the_lock_released(tmp_path):
  import signal
  import subprocess
  import sys

  from tests.test_hardening import REPO

  script = (
    "import sys, time\n"
    "from gjax import startup_signals\n"
    "startup_signals.install()\n"
    "startup_signals.add_cleanup(lambda: open(sys.argv[1], 'w').write('cleaned'))\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
  )
  process = subprocess.Popen(
    [sys.executable, "-c", script, str(tmp_path / "cleanup")],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=30)
  finally:
    process.kill()
  assert process.returncode == 0, stderr
  assert "SIGHUP received before training started (nothing to save): exiting" in stderr
  assert (tmp_path / "cleanup").read_text() == "cleaned"


def test_case05_a_signal_to_eval_py_exits_non_zero_and_leaves_the_previous_results(tmp_path):
  import signal
  import subprocess
  import sys

  from tests.test_hardening import REPO, TINY

  train_and_evaluate(tiny(num_train_steps=2, checkpoint_every_steps=2), str(tmp_path))
  previous = json.dumps({"step": 1, "knn_top1": 0.25}) + "\n"
  (tmp_path / "eval_results.json").write_text(previous)
  flags = [
    f"--config.{k}={v}"
    for k, v in {**TINY, "num_train_steps": 2, "checkpoint_every_steps": 2, "eval.run_only": "('knn',)"}.items()
  ]
  process = subprocess.Popen(
    [sys.executable, "eval.py", "--config", "configs/vje_fashion_mnist.py:smoke", "--workdir", str(tmp_path), *flags],
    cwd=REPO,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    import time

    start = time.time()
    while not _signal_caught(process.pid, signal.SIGTERM):  # gjax's handlers are in place: eval.py has begun
      assert process.poll() is None and time.time() - start < 120, "eval.py ended before it could be signalled"
      time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
  finally:
    process.kill()
  assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  assert "SIGTERM received: interrupted before finishing, nothing written" in stderr
  assert (tmp_path / "eval_results.json").read_text() == previous
  assert not (tmp_path / "eval_results.json.tmp").exists()


def test_case10_float_images_from_a_registered_loader_are_refused_naming_the_data_set(tmp_path):
  import numpy as np

  from gjax import data as gdata

  rng = np.random.default_rng(0)
  uint8 = rng.integers(0, 256, (64, 16, 16, 1), dtype=np.uint8)
  uint8[0, 0, :2, 0] = 0, 255
  returned = {}

  def load(split, config):
    return returned["images"], np.arange(64, dtype=np.int32) % 4

  gdata.register_dataset(gdata.DatasetSpec("gjax_test_case10", "memory", (0.5,), (0.25,), load=load))
  config = tiny(num_train_steps=2, **{"dataset.name": "gjax_test_case10"})
  cases = [
    ((uint8 / 255.0).astype(np.float32), r"dtype float32 and shape \(64, 16, 16, 1\) with values in \[0, 1\]"),
    (uint8[..., 0], r"dtype uint8 and shape \(64, 16, 16\)"),
    ((uint8 > 127).astype(np.uint8), r"whose values are all 0 or 1"),
  ]
  for images, expected in cases:
    returned["images"] = images
    with pytest.raises(
      ValueError,
      match=r"data set 'gjax_test_case10' \(split 'train'\): its loader returned .*"
      + expected
      + r".*gjax expects (uint8 images in )?0\.\.255",
    ):
      train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "checkpoints").exists()
  returned["images"] = uint8  # what gjax expects trains
  assert train_and_evaluate(config, str(tmp_path / "run"))["final_step"] == 2


def test_case13_a_data_directory_without_read_permission_is_reported_as_a_permission_problem(tmp_path, monkeypatch):
  from gjax.data.arrays import _FASHION_MNIST_FILES, load_fashion_mnist
  from gjax.train import config as config_lib

  data_dir = tmp_path / "fashion"
  data_dir.mkdir()
  for name in _FASHION_MNIST_FILES["train"]:
    (data_dir / name).write_bytes(b"")
  data_dir.chmod(0)  # denies reads to any user but root ...
  real_access = os.access

  def access(path, mode, **kwargs):  # ... and to root too, as the kernel would tell any other user
    if os.path.abspath(path) == str(data_dir) and mode & os.R_OK:
      return False
    return real_access(path, mode, **kwargs)

  monkeypatch.setattr(os, "access", access)
  try:
    with pytest.raises(
      PermissionError,
      match=rf"the Fashion-MNIST directory {data_dir} cannot be read: permission "
      rf"denied .*chmod a\+rx {data_dir}",
    ):
      load_fashion_mnist("train", str(data_dir))
    config = tiny(**{"dataset.name": "fashion_mnist", "dataset.data_dir": str(data_dir)})
    with pytest.raises(PermissionError, match=rf"config\.dataset\.data_dir {data_dir} cannot be read: permission"):
      config_lib.validate_config(config, 1, 1)
    with pytest.raises(PermissionError, match=rf"config\.dataset\.data_dir {data_dir} cannot be read"):
      train_and_evaluate(config, str(tmp_path / "run"))
  finally:
    data_dir.chmod(0o755)


def test_case12_temporary_files_have_unique_names_and_never_follow_a_planted_link(tmp_path):
  from gjax.atomic import replaced_atomically
  from gjax.eval import evaluate

  victim = tmp_path / "victim"
  victim.write_text("precious")
  run = tmp_path / "run"
  (run / "checkpoint_checksums").mkdir(parents=True)
  planted = [
    run / "config.json.tmp",
    run / "summary.json.tmp",
    run / "checkpoint_checksums" / "2.json.tmp",
    run / "eval_results.json.tmp",
    run / f".gjax-write-test-{os.getpid()}",
  ]
  for link in planted:  # what another user of a shared directory could plant at gjax's old, predictable names
    link.symlink_to(victim)
  config = tiny(
    num_train_steps=2, checkpoint_every_steps=2, **{"eval.run_only": ("knn",), "eval.num_train_examples": 256}
  )
  train_and_evaluate(config, str(run))
  results = evaluate(config, str(run))
  assert victim.read_text() == "precious" and all(link.is_symlink() for link in planted)
  assert json.loads((run / "eval_results.json").read_text()) == results
  assert json.loads((run / "checkpoint_checksums" / "2.json").read_text())["step"] == 2
  assert json.loads((run / "summary.json").read_text())["final_step"] == 2
  assert oct((run / "summary.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600
  # Two writers at once (two eval.py): each has its own temporary file, the last rename wins whole.
  target = tmp_path / "shared" / "eval_results.json"
  target.parent.mkdir()
  with replaced_atomically(str(target)) as first, replaced_atomically(str(target)) as second:
    first.write("first\n" * 1000)
    second.write("second\n")
    assert len(os.listdir(target.parent)) == 2
  assert target.read_text() == "first\n" * 1000 and os.listdir(target.parent) == ["eval_results.json"]


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def test_case03_a_second_ctrl_c_during_the_save_waits_for_it_and_keeps_the_checkpoint(tmp_path, monkeypatch, caplog):
  import signal

  from gjax.train import plan, trainer

  config = tiny(num_train_steps=50, checkpoint_every_steps=100, log_every_steps=1)
  original_step, original_save = plan.make_train_step, trainer.save_checkpoint

  def make_step_sending_sigint_at_step_3(*args, **kwargs):
    step_fn = original_step(*args, **kwargs)
    calls = []

    def step(state, batch):
      calls.append(1)
      if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
      return step_fn(state, batch)

    return step

  def save_interrupted_twice(manager, step, state):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again as the save begins ...
    original_save(manager, step, state)
    os.kill(os.getpid(), signal.SIGTERM)  # ... and a SIGTERM while Orbax writes in the background
    saves.append(step)

  saves = []
  monkeypatch.setattr(plan, "make_train_step", make_step_sending_sigint_at_step_3)
  monkeypatch.setattr(trainer, "save_checkpoint", save_interrupted_twice)
  handler = signal.getsignal(signal.SIGINT)
  with caplog.at_level(logging.WARNING, logger="gjax.train"):
    summary = train_and_evaluate(config, str(tmp_path))  # before the fix: KeyboardInterrupt, no checkpoint
  assert signal.getsignal(signal.SIGINT) is handler
  assert summary["preempted"] == "SIGINT" and summary["final_step"] == 3 and saves == [3]
  assert "SIGINT received again: still finishing the step and saving its checkpoint" in caplog.text
  assert "SIGTERM received again" in caplog.text and "waiting for the save to finish" in caplog.text
  assert checkpoint_steps(tmp_path) == [3] and not (tmp_path / "lock.json").exists()
  assert not [p.name for p in (tmp_path / "checkpoints").iterdir() if "tmp" in p.name]
  monkeypatch.undo()
  resumed = train_and_evaluate(config, str(tmp_path), stop_after_steps=1)  # the checkpoint resumes
  assert (resumed["start_step"], resumed["final_step"]) == (3, 4)


def test_case07_eval_beside_training_retries_a_checkpoint_deleted_as_it_read_it(tmp_path, monkeypatch, caplog):
  from gjax.eval import evaluate
  from gjax.train import checkpoints

  config = tiny(
    num_train_steps=4,
    checkpoint_every_steps=2,
    keep_checkpoints=2,
    **{"eval.run_only": ("knn",), "eval.num_train_examples": 256},
  )
  train_and_evaluate(config, str(tmp_path))
  directory = tmp_path / "checkpoints"
  stash = tmp_path / "step-4-not-yet-saved"
  shutil.move(directory / "4", stash)  # eval.py starts while the run's newest checkpoint is step 2
  original, calls = checkpoints._restore_step, []

  def the_run_saves_step_4_and_deletes_step_2_meanwhile(manager, step, state):
    calls.append(step)
    if len(calls) == 1:
      shutil.move(stash, directory / "4")  # keep_checkpoints=1, a checkpoint every step: ...
      for root, _, names in os.walk(directory / "2"):  # ... Orbax deletes step 2's files, then its directories
        for name in names:
          os.remove(os.path.join(root, name))
    return original(manager, step, state)

  monkeypatch.setattr(checkpoints, "_restore_step", the_run_saves_step_4_and_deletes_step_2_meanwhile)
  with caplog.at_level(logging.WARNING):
    results = evaluate(config, str(tmp_path))  # before the fix: CheckpointsUnreadableError, "move it aside"
  assert calls == [2, 4] and results["step"] == 4
  assert "checkpoint at step 2 changed (its files were deleted or rewritten) while it was being read" in caplog.text
  assert "reading the newest checkpoint now present (retry 1 of" in caplog.text
  assert "cannot be read" not in caplog.text and not (tmp_path / "checkpoints_unreadable").exists()


_RAISE_OUT_OF_MEMORY = (
  "import runpy, sys\n"
  "import jax\n"
  "import gjax.eval\n"
  "def out_of_memory(config, workdir, **kwargs):\n"
  "  raise jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to "
  "allocate 3221225472 bytes.\\nBufferAssignment OOM Debugging.')\n"
  "gjax.eval.train_and_evaluate = out_of_memory\n"
  "sys.argv = ['train.py'] + sys.argv[1:]\n"
  "runpy.run_path('train.py', run_name='__main__')\n"
)


def test_case11_command_line_faults_are_one_line_naming_the_path_or_value(tmp_path):
  import subprocess
  import sys

  from tests.test_hardening import REPO

  def run(*args, script="train.py"):
    command = [sys.executable, *(["-c", _RAISE_OUT_OF_MEMORY] if script == "oom" else [script]), *args]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stderr.strip().splitlines()[0]

  workdir = str(tmp_path / "run")
  assert run("--config", "configs/nope.py", "--workdir", workdir) == (
    f"train.py: error: --config configs/nope.py: configs/nope.py does not exist (relative paths are from {REPO}); "
    "pass a config file such as configs/vje_fashion_mnist.py or configs/vje_fashion_mnist.py:smoke"
  )
  assert run("--config", "configs/vje_fashion_mnist.py:nosuch", "--workdir", workdir, script="eval.py") == (
    "eval.py: error: --config configs/vje_fashion_mnist.py:nosuch: configs/vje_fashion_mnist.py could not build "
    "its config (ValueError: unknown variant 'nosuch' of vje_fashion_mnist; known: ('compare', 'smoke'))"
  )
  (tmp_path / "a_file").write_text("")
  assert run("--config", "configs/vje_fashion_mnist.py:smoke", "--workdir", str(tmp_path / "a_file")) == (
    f"train.py: error: --workdir {tmp_path / 'a_file'} is a file, not a directory: pass a directory (new or a "
    "run's) as --workdir, or move the file aside"
  )
  line = run(
    "--config", "configs/vje_fashion_mnist.py:smoke", "--workdir", workdir, "--config.batch_size=64", script="oom"
  )
  assert line.startswith(
    "train.py: error: out of device memory (RESOURCE_EXHAUSTED: Out of memory while trying to "
    "allocate 3221225472 bytes.) with config.batch_size=64, config.model.width_multiplier="
  )
  assert "config.eval.batch_size=" in line and line.endswith(
    "lower them, e.g. --config.batch_size (training), --config.model.width_multiplier (the network), "
    "--config.eval.batch_size (evaluation)"
  )


def test_case11_a_read_only_workdir_and_a_full_disk_during_eval_are_named_and_eval_keeps_its_results(
  tmp_path, monkeypatch, caplog
):
  import errno
  import tempfile

  from gjax.atomic import WriteError
  from gjax.eval import evaluate
  from gjax.train.rundir import WorkdirError

  config = tiny(
    num_train_steps=2, checkpoint_every_steps=2, **{"eval.run_only": ("knn",), "eval.num_train_examples": 256}
  )

  def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")

  with monkeypatch.context() as patch:
    patch.setattr(tempfile, "NamedTemporaryFile", read_only)
    with pytest.raises(
      WorkdirError,
      match=rf"^cannot write in --workdir {tmp_path} \(OSError: Read-only file "
      r"system\): pass a --workdir on a writable file system",
    ):
      train_and_evaluate(config, str(tmp_path))
  assert os.listdir(tmp_path) == []
  train_and_evaluate(config, str(tmp_path))
  previous = '{"step": 1}\n'
  (tmp_path / "eval_results.json").write_text(previous)

  def disk_full(fd):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "fsync", disk_full)  # the results are written, then the disk turns out full
  before = set(os.listdir(tmp_path))
  with caplog.at_level(logging.INFO, logger="gjax.eval"):
    with pytest.raises(
      WriteError,
      match=rf"^cannot write the evaluation results to {tmp_path / 'eval_results.json'} "
      r"\(OSError: No space left on device\); they are logged above \(eval at "
      r"step 2\)\. Free space there, or pass --config.eval.results_path=",
    ):
      evaluate(config, str(tmp_path))
  logged = json.loads(caplog.text.split("eval at step 2: ", 1)[1].splitlines()[0])
  assert logged["step"] == 2 and 0.0 <= logged["knn30_z"] <= 1.0
  assert set(os.listdir(tmp_path)) == before and (tmp_path / "eval_results.json").read_text() == previous
