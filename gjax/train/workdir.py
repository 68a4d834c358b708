"""What a run keeps in its workdir besides checkpoints: one writer at a time,
and metric files that stay consistent when a run resumes.

* :class:`WorkdirLock`: the process that trains in the workdir holds an OS
  file lock (``flock``) on ``<workdir>/lock.json`` for its lifetime; the file
  names its host, pid and start time. A second process is refused with a
  message naming the holder; a lock no live process holds (``kill -9``, a
  crash, in any PID namespace of this machine) is taken over with a warning.
* :func:`truncate_metrics`: on resume, rows logged after the restored step
  (the steps between the last checkpoint and a crash) are dropped from the
  JSON-lines files, so every step appears once and in order.
* :func:`check_run_identity`: ``config.json`` is the config of the run that
  made the checkpoints. A resume with a config that computes something else
  stops, listing the changed fields; with ``resume_with_changed_config=True`` it
  goes on and appends the earlier config to ``config_history.jsonl`` first.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import tempfile
import time

from gjax import startup_signals
from gjax.atomic import write_text_atomically

log = logging.getLogger("gjax.train")

LOCK_NAME = "lock.json"
CONFIG_NAME = "config.json"
CONFIG_HISTORY_NAME = "config_history.jsonl"

#: Fields that may differ between the segments of one run: they change how a run
#: is logged, checkpointed, evaluated or where its data is read, not what it computes.
RESUME_FREE_FIELDS = ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "nonfinite_policy",
                      "max_consecutive_skips", "resume_with_changed_config", "dataset.data_dir")
RESUME_FREE_PREFIXES = ("eval.",)


class WorkdirInUseError(RuntimeError):
  """Another live process holds the workdir's lock."""


class WorkdirError(ValueError):
  """A workdir that is a file, or in which nothing can be written (a read-only
  file system, no permission)."""


def prepare_workdir(workdir: str) -> None:
  """Creates ``workdir`` and checks that a file can be written in it (a real,
  uniquely named write: ``os.access`` is passed by root and by read-only
  mounts); :class:`WorkdirError` names the path, the cause and what to do."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir {workdir} is a file, not a directory: pass a directory (new or a run's) as "
                       "--workdir, or move the file aside")
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(prefix=".gjax-write-test-", dir=workdir):
      pass
  except OSError as error:
    raise WorkdirError(f"cannot write in --workdir {workdir} ({type(error).__name__}: {error.strerror or error}): "
                       "pass a --workdir on a writable file system, where this user may create files") from None


class ConfigChangedError(ValueError):
  """A resume whose config differs from the run's in what it computes."""


def _process_alive(pid: int) -> bool:
  """Whether ``pid`` is a live (not zombie) process on this host."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # it exists, owned by someone else
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except (OSError, IndexError):
    return True


def _boot_id() -> str:
  """This kernel's boot id (shared by every container and PID namespace on it); "" where there is none."""
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      return f.read().strip()
  except OSError:
    return ""


def holder_gone(other: dict, me: dict, flock_works: bool) -> bool:
  """Whether the process that wrote the lock record ``other`` is proven gone,
  judged by ``me`` (this process's record) holding the lock file's flock.

  A gjax that holds an OS file lock (``flock``) for its lifetime on the same
  kernel (same boot id, whatever its PID namespace or container host name) is
  gone when the flock could be taken. A holder on another machine is never
  proven gone (a network file system may not show its flock), nor is one on
  this host without a flock (an older gjax, or a file system without locks)
  whose pid is alive and not this process's own (a restarted pid 1 is not
  its own holder)."""
  same_kernel = (other.get("boot_id") == me["boot_id"]) if other.get("boot_id") and me["boot_id"] \
      else other.get("host") == me["host"]
  if not same_kernel:
    return False
  if flock_works and other.get("flock"):
    return True
  pid = other.get("pid", -1)
  return not (isinstance(pid, int) and pid > 0 and pid != me["pid"] and _process_alive(pid))


class WorkdirLock:
  """Context manager: exclusive use of ``workdir`` by this process (see module doc).

  ``<workdir>/lock.json`` is held with ``fcntl.flock`` for the run's lifetime
  (the kernel drops it when the process dies, ``kill -9`` included) and holds
  the holder's host, pid, kernel boot id and start time, for the messages. A
  lock that no live process holds is taken over (:func:`holder_gone`).
  ``enabled=False`` (every process but 0 of a multi-host job) does nothing.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.enabled = enabled
    self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "boot_id": _boot_id(), "flock": True,
                   "started": time.time()}
    self._fd: int | None = None

  def _open_locked(self) -> tuple[int | None, bool]:
    """``(fd, flock_works)``: the lock file opened, its flock taken where the
    file system has flocks; ``(None, True)`` when another process holds it,
    ``(None, False)`` when its holder removed it as we opened it (try again)."""
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      flock_works = True
    except BlockingIOError:
      os.close(fd)
      return None, True
    except OSError:  # ENOLCK, EOPNOTSUPP: no flocks on this file system; the pid rule alone
      flock_works = False
    try:
      same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
    except FileNotFoundError:
      same = False
    if not same:
      os.close(fd)
      return None, False
    return fd, flock_works

  def _read_holder(self) -> dict | None:
    """The lock's holder; a lock being written is read once more; None when empty or garbage."""
    for attempt in range(2):
      try:
        with open(self.path) as f:
          holder = json.load(f)
        return holder if isinstance(holder, dict) else None
      except (OSError, ValueError):
        if attempt == 0:
          time.sleep(0.2)
    return None

  def _in_use(self, other: dict | None, gone_hint: str) -> WorkdirInUseError:
    other = other or {}
    return WorkdirInUseError(
        f"{os.path.dirname(self.path)} is in use by pid {other.get('pid', '?')} on host {other.get('host', '?')} "
        f"(lock {self.path}); wait for that run to end or use another workdir{gone_hint}")

  def __enter__(self):
    if not self.enabled:
      return self
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    for _ in range(20):  # a holder releasing (removing) the file as we open it: open again
      fd, flock_works = self._open_locked()
      if fd is None:
        if flock_works:
          raise self._in_use(self._read_holder(), "")
        continue
      other = self._read_holder()
      if other is not None and not holder_gone(other, self.holder, flock_works):
        os.close(fd)
        elsewhere = other.get("host") != self.holder["host"] or other.get("boot_id") != self.holder["boot_id"]
        how = "on another machine" if elsewhere else "without a file lock"
        raise self._in_use(other, f"; if that process is gone (it ran {how}, which this host cannot check), "
                                  f"delete {self.path}")
      if other is not None:
        log.warning("taking over the lock of pid %s on host %s, which is no longer running (%s)",
                    other.get("pid"), other.get("host"), self.path)
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(self.holder).encode(), 0)
      self._fd = fd
      startup_signals.add_cleanup(self.release)  # a signal during start-up still releases it
      return self
    raise WorkdirInUseError(f"could not take the lock {self.path}: other processes keep taking it")

  def release(self) -> None:
    """Removes the lock file if this process holds it, then drops the flock."""
    fd, self._fd = self._fd, None
    if fd is None:
      return
    try:
      if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
        os.remove(self.path)
    except FileNotFoundError:
      pass
    finally:
      os.close(fd)

  def __exit__(self, *exc):
    if self.enabled:
      startup_signals.remove_cleanup(self.release)
      self.release()
    return False


class RunFileError(ValueError):
  """A file of the run directory that cannot be parsed; the message names it and what to do."""


def read_jsonl(path: str, what_to_do: str = "") -> tuple[list[dict], bool]:
  """The rows of the append-only JSON-lines file ``path`` and whether its last
  line was torn (cut mid-line by a full disk or a crash; left out, not an
  error). Any other line that is not a JSON object raises
  :class:`RunFileError` naming the file, the line and ``what_to_do``."""
  with open(path, errors="replace") as f:
    lines = f.read().split("\n")
  numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
  rows = []
  for k, (number, line) in enumerate(numbered):
    try:
      row = json.loads(line)
    except ValueError as error:
      if k == len(numbered) - 1:
        return rows, True
      raise RunFileError(f"{path}: line {number} cannot be parsed as JSON ({error}). "
                         f"{what_to_do or 'Repair or delete that line.'}") from None
    if not isinstance(row, dict):
      raise RunFileError(f"{path}: line {number} is {type(row).__name__}, not a JSON object. "
                         f"{what_to_do or 'Repair or delete that line.'}")
    rows.append(row)
  return rows, False


def _metrics_advice(path: str) -> str:
  return (f"Delete or repair that line of {os.path.basename(path)} (only it: the checkpoints and the other "
          f"rows stay valid), then rerun")


def truncate_metrics(path: str, after_step: int) -> int:
  """Drops the rows of the JSON-lines file ``path`` whose step is above
  ``after_step``, and a torn last line (with a warning naming the file), by
  an atomic rewrite; returns how many rows were dropped."""
  if not os.path.exists(path):
    return 0
  rows, torn = read_jsonl(path, _metrics_advice(path))
  for number, row in enumerate(rows, 1):
    if not isinstance(row.get("step"), int):
      raise RunFileError(f"{path}: row {number} has no integer 'step' ({str(row)[:80]}). "
                         f"{_metrics_advice(path)}")
  keep = [row for row in rows if row["step"] <= after_step]
  with open(path, "rb") as f:
    ends_cleanly = f.read().endswith(b"\n") or os.path.getsize(path) == 0
  if torn:
    log.warning("%s: its last line is torn (cut off mid-line, e.g. by a full disk or a crash while it was "
                "written): dropped", path)
  if len(keep) == len(rows) and not torn and ends_cleanly:
    return 0
  write_text_atomically(path, "".join(json.dumps(row) + "\n" for row in keep))
  return len(rows) - len(keep)


def load_run_json(path: str, what_to_do: str):
  """``path``'s JSON; :class:`RunFileError` naming it and ``what_to_do`` when it cannot be parsed."""
  try:
    with open(path, errors="replace") as f:
      return json.load(f)
  except ValueError as error:
    raise RunFileError(f"{path} cannot be parsed as JSON ({error}). {what_to_do}") from None


#: The top-level fields every gjax config.json has (``base_config``).
GJAX_CONFIG_FIELDS = ("method", "dataset", "model", "batch_size")
SUMMARY_NAME = "summary.json"
METRIC_FILES = ("train.jsonl", "eval.jsonl")


def _config_advice(path: str) -> str:
  return (f"It records the config of the run in {os.path.dirname(path)}: if it was damaged, move it aside and "
          "rerun (the resume then cannot compare configs and writes it anew); if the directory is another "
          "tool's, use another --workdir")


def _not_gjax(workdir: str, name: str) -> str | None:
  """Why ``workdir``/``name`` (a file name gjax writes) was not written by gjax, or None (it was, or is absent).
  A torn last line of a metric file is not a sign of another tool."""
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return None
  if not os.path.isfile(path):
    return "not a file"
  if name == CONFIG_NAME:
    config = load_run_json(path, _config_advice(path))
    missing = [k for k in GJAX_CONFIG_FIELDS if not isinstance(config, dict) or k not in config]
    return f"a JSON {type(config).__name__} without gjax's config fields {missing}" if missing else None
  if name == SUMMARY_NAME:
    try:
      summary = load_run_json(path, "")
    except RunFileError:
      return None  # damaged, not foreign: the trainer sets it aside (read_segments)
    return None if isinstance(summary, dict) and "final_step" in summary else "a JSON file without 'final_step'"
  rows, _ = read_jsonl(path, _metrics_advice(path))
  for number, row in enumerate(rows, 1):
    if not isinstance(row.get("step"), int):
      return f"row {number} has no integer 'step' ({str(row)[:60]})"
  return None


class NotAGjaxWorkdirError(ValueError):
  """A workdir holding files under the names gjax writes that gjax did not write."""


def check_run_files(workdir: str) -> None:
  """Reads the files of ``workdir`` that a run reads or rewrites (config.json,
  summary.json, the metric logs) before anything is written: files another
  tool wrote under those names raise :class:`NotAGjaxWorkdirError` naming
  them, files that cannot be parsed :class:`RunFileError` naming the file and
  what to do."""
  foreign = [(name, why) for name in (CONFIG_NAME, SUMMARY_NAME) + METRIC_FILES
             if (why := _not_gjax(workdir, name))]
  if foreign:
    listed = "; ".join(f"{os.path.join(workdir, name)}: {why}" for name, why in foreign)
    raise NotAGjaxWorkdirError(
        f"{workdir} holds files gjax did not write ({listed}); a run there would overwrite or misread them. "
        "Use another --workdir (a new or empty directory), or move those files out of it")


def read_segments(workdir: str, start_step: int) -> list[dict]:
  """The segments of ``summary.json`` (one per process lifetime that trained in
  ``workdir``) that began before ``start_step``. A damaged summary.json is
  moved aside to ``summary.json.unreadable-<time>`` with a warning (only the
  earlier segments' wall times are lost; the checkpoints and logs are intact)."""
  path = os.path.join(workdir, SUMMARY_NAME)
  if start_step <= 0 or not os.path.exists(path):
    return []
  try:
    segments = load_run_json(path, "").get("segments", [])
    if not all(isinstance(seg, dict) and isinstance(seg.get("start_step"), int) for seg in segments):
      raise RunFileError("its segments are not objects with an integer start_step")
  except (RunFileError, AttributeError, TypeError) as error:
    aside = f"{path}.unreadable-{int(time.time())}"
    os.replace(path, aside)
    log.warning("%s cannot be read (%s): moved to %s; the new summary covers this run's segments from step %d "
                "on (the checkpoints and metric logs are intact)", path, str(error)[:200], aside, start_step)
    return []
  return [seg for seg in segments if seg["start_step"] < start_step]


def changed_fields(saved: dict, current: dict) -> dict[str, tuple]:
  """``{field: (saved value, current value)}`` of the fields that change what a
  run computes; fields that only one of the configs has (a config written by
  an older gjax) are not compared."""
  from gjax.train.config import config_fields  # the one flattening of a config

  a, b = dict(config_fields(saved)), dict(config_fields(current))
  return {k: (a[k], b[k]) for k in sorted(set(a) & set(b))
          if a[k] != b[k] and k not in RESUME_FREE_FIELDS and not k.startswith(RESUME_FREE_PREFIXES)}


def check_run_identity(workdir: str, config, resumed_step: int, write: bool) -> None:
  """Compares ``config`` with the run's ``config.json`` before a resume from
  ``resumed_step``; raises :class:`ConfigChangedError` listing the differences
  and the ways out, or (``config.resume_with_changed_config``) records the
  earlier config in ``config_history.jsonl`` (when ``write``, process 0)."""
  path = os.path.join(workdir, CONFIG_NAME)
  if not os.path.exists(path):
    return  # a workdir from before gjax kept its config: nothing to compare with
  saved = load_run_json(path, _config_advice(path))
  current = json.loads(config.to_json_best_effort())
  changes = changed_fields(saved, current)
  if not changes:
    return
  listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
  if not config.resume_with_changed_config:
    raise ConfigChangedError(
        f"{workdir} holds a run (checkpoint at step {resumed_step}) made with another config: {listed}. "
        f"Train in a new --workdir, or continue this run with the change with "
        f"--config.resume_with_changed_config=True (the earlier config is kept in {CONFIG_HISTORY_NAME})")
  log.warning("resuming from step %d with a changed config (%s); the earlier config is kept in %s",
              resumed_step, listed, CONFIG_HISTORY_NAME)
  if write:
    with open(os.path.join(workdir, CONFIG_HISTORY_NAME), "a") as f:
      f.write(json.dumps({"until_step": resumed_step, "time": time.time(),
                          "changed": {k: list(v) for k, v in changes.items()}, "config": saved}) + "\n")
