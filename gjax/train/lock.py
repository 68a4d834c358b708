"""One process per run directory: an OS file lock on ``<workdir>/lock.json``.

The process that trains in a workdir holds an OS file lock (``flock``) on
``<workdir>/lock.json`` for its lifetime; the file names its host, pid and
start time. A second process is refused with a message naming the holder; a
lock no live process holds (``kill -9``, a crash, in any PID namespace of this
machine) is taken over with a warning. :class:`gjax.train.rundir.RunDir` takes
it when a run opens its directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time

from gjax import startup_signals

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
  same_kernel = (
    (other.get("boot_id") == me["boot_id"])
    if other.get("boot_id") and me["boot_id"]
    else other.get("host") == me["host"]
  )
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
    self.holder = {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "boot_id": _boot_id(),
      "flock": True,
      "started": time.time(),
    }
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
      f"(lock {self.path}); wait for that run to end or use another workdir{gone_hint}"
    )

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
        raise self._in_use(
          other, f"; if that process is gone (it ran {how}, which this host cannot check), delete {self.path}"
        )
      if other is not None:
        log.warning(
          "taking over the lock of pid %s on host %s, which is no longer running (%s)",
          other.get("pid"),
          other.get("host"),
          self.path,
        )
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
