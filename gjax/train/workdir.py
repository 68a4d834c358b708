"""What a run keeps in its workdir besides checkpoints: one writer at a time,
and metric files that stay consistent when a run resumes.

* :class:`WorkdirLock`: ``<workdir>/lock.json`` holds the host, pid and start
  time of the process that trains in the workdir. A second process is refused
  with a message naming the holder; a lock left by a process that is gone
  (``kill -9``, a crash) on this host is taken over with a warning.
* :func:`truncate_metrics`: on resume, rows logged after the restored step
  (the steps between the last checkpoint and a crash) are dropped from the
  JSON-lines files, so every step appears once and in order.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time

log = logging.getLogger("gjax.train")

LOCK_NAME = "lock.json"


class WorkdirInUseError(RuntimeError):
  """Another live process holds the workdir's lock."""


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


class WorkdirLock:
  """Context manager: exclusive use of ``workdir`` by this process (see module doc).

  ``enabled=False`` (every process but 0 of a multi-host job) does nothing.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.enabled = enabled
    self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}

  def _try_create(self) -> bool:
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      json.dump(self.holder, f)
    return True

  def _read_holder(self) -> dict:
    """The lock's holder; a lock being written (or garbage) is read once more, then counts as stale."""
    for attempt in range(2):
      try:
        with open(self.path) as f:
          return json.load(f)
      except (OSError, ValueError):
        if attempt == 0:
          time.sleep(0.2)
    return {"host": socket.gethostname(), "pid": -1}

  def __enter__(self):
    if not self.enabled:
      return self
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    for _ in range(3):  # a concurrent take-over can race us; the O_EXCL create decides
      if self._try_create():
        return self
      other = self._read_holder()
      if other.get("host") != socket.gethostname() or (other.get("pid", -1) > 0 and _process_alive(other["pid"])):
        raise WorkdirInUseError(
            f"{os.path.dirname(self.path)} is in use by pid {other.get('pid')} on host {other.get('host')} "
            f"(lock {self.path}); wait for that run to end, use another workdir, or delete the lock file if "
            "that process is gone")
      log.warning("taking over the lock of pid %s on this host, which is no longer running (%s)",
                  other.get("pid"), self.path)
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass
    raise WorkdirInUseError(f"could not take the lock {self.path}: other processes keep taking it")

  def __exit__(self, *exc):
    if self.enabled:
      if os.path.exists(self.path) and self._read_holder().get("pid") == self.holder["pid"]:
        os.remove(self.path)
    return False


def truncate_metrics(path: str, after_step: int) -> int:
  """Drops the rows of the JSON-lines file ``path`` whose step is above
  ``after_step`` (atomically rewritten); returns how many were dropped."""
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  keep = [line for line in lines if json.loads(line)["step"] <= after_step]
  if len(keep) == len(lines):
    return 0
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.writelines(keep)
  os.replace(tmp, path)
  return len(lines) - len(keep)
