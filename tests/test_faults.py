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
  path.write_text(text[:len(text.rstrip("\n")) - len(last) // 2])


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
    tmp_path, caplog):
  from gjax.train.workdir import RunFileError

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
  with pytest.raises(RunFileError, match=rf"^{tmp_path / 'train.jsonl'}: line 1 cannot be parsed as JSON .*"
                                         r"Delete or repair that line"):
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
  from gjax.train.workdir import NotAGjaxWorkdirError

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
  damages = {"cannot be parsed": "#" + intact[1:],  # one byte: unparseable
             "its own record_crc32 does not match": intact.replace(crc, crc[:-1] + "0123"[crc[-1] == "0"], 1)}
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


_HOLD_LOCK = ("import sys, time\n"
              "from gjax.train.workdir import WorkdirLock\n"
              "lock = WorkdirLock(sys.argv[1]).__enter__()\n"
              "print('locked', flush=True)\n"
              "time.sleep(300)\n")


def test_case02_the_workdir_lock_is_an_os_file_lock_not_a_pid(tmp_path, caplog):
  import socket
  import subprocess
  import sys

  from gjax.train.workdir import LOCK_NAME, WorkdirInUseError, WorkdirLock, _boot_id
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
  holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
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

  script = ("import sys, time\n"
            "from gjax import startup_signals\n"
            "startup_signals.install()\n"
            "startup_signals.add_cleanup(lambda: open(sys.argv[1], 'w').write('cleaned'))\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n")
  process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cleanup")], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
  flags = [f"--config.{k}={v}" for k, v in {**TINY, "num_train_steps": 2, "checkpoint_every_steps": 2,
                                             "eval.run_only": "('knn',)"}.items()]
  process = subprocess.Popen([sys.executable, "eval.py", "--config", "configs/vje_fashion_mnist.py:smoke",
                              "--workdir", str(tmp_path), *flags], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
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
  cases = [((uint8 / 255.0).astype(np.float32), r"dtype float32 and shape \(64, 16, 16, 1\) with values in \[0, 1\]"),
           (uint8[..., 0], r"dtype uint8 and shape \(64, 16, 16\)"),
           ((uint8 > 127).astype(np.uint8), r"whose values are all 0 or 1")]
  for images, expected in cases:
    returned["images"] = images
    with pytest.raises(ValueError, match=r"data set 'gjax_test_case10' \(split 'train'\): its loader returned .*"
                                         + expected + r".*gjax expects (uint8 images in )?0\.\.255"):
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
    with pytest.raises(PermissionError, match=rf"the Fashion-MNIST directory {data_dir} cannot be read: permission "
                                              rf"denied .*chmod a\+rx {data_dir}"):
      load_fashion_mnist("train", str(data_dir))
    config = tiny(**{"dataset.name": "fashion_mnist", "dataset.data_dir": str(data_dir)})
    with pytest.raises(PermissionError, match=rf"config\.dataset\.data_dir {data_dir} cannot be read: permission"):
      config_lib.validate_config(config, 1, 1)
    with pytest.raises(PermissionError, match=rf"config\.dataset\.data_dir {data_dir} cannot be read"):
      train_and_evaluate(config, str(tmp_path / "run"))
  finally:
    data_dir.chmod(0o755)
