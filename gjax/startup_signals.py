"""Signals before training starts: SIGTERM / SIGINT / SIGHUP end the process
within a second, with a message and exit status 0, even while XLA compiles.
A process whose whole work is what a signal interrupts (``eval.py``: nothing is
saved part-way) exits with status 128 + the signal's number instead, so that a
script does not take the results file left from an earlier run for its own.

During start-up (imports, data loading, initialisation, restoring, the first
step's compilation) there is nothing to save, but the main thread is often in
C++ (XLA compiling for 30-60 s), where Python signal handlers wait: a SIGTERM
then took 36 s to act (beyond the usual 30 s grace period before SIGKILL). The
C-level wakeup fd (``signal.set_wakeup_fd``) receives the signal at once; a
watcher thread reads it, logs, runs the clean-ups (the workdir lock) and exits.

``train.py`` / ``eval.py`` call :func:`install` first thing; the trainer calls
:func:`training_started` after its first step, from when on its own handlers
(:class:`gjax.train.guards.StopSignals`) checkpoint at the end of the step.
Both are no-ops when gjax is used as a library (nothing installed).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

_state: dict = {
  "installed": False,
  "done": threading.Event(),
  "cleanups": [],
  "write_fd": None,
  "previous": {},
  "interrupt_is_failure": False,
}

#: The signals watched: terminate, interrupt (Ctrl-C), hang-up (the terminal or ssh session closed).
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _ignore_here(signum, frame) -> None:
  """The Python-level handler: a no-op while the watcher acts; once training has
  started (a handler that kept this one restores it), the defaults' effect."""
  if _state["done"].is_set():
    if signum == signal.SIGINT:
      raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def install(interrupt_is_failure: bool = False) -> None:
  """Starts watching :data:`SIGNALS` (main thread only; once per process).
  ``interrupt_is_failure``: a signal ends the process with status 128 +
  signal number (``eval.py``), not 0 (``train.py``, resumable)."""
  if _state["installed"] or threading.current_thread() is not threading.main_thread():
    return
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)
  signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  for sig in SIGNALS:
    _state["previous"][sig] = signal.signal(sig, _ignore_here)
  _state.update(installed=True, write_fd=write_fd, interrupt_is_failure=interrupt_is_failure)
  threading.Thread(target=_watch, args=(read_fd,), name="gjax-startup-signals", daemon=True).start()


def add_cleanup(fn: Callable[[], None]) -> None:
  """``fn`` runs before a start-up signal ends the process."""
  _state["cleanups"].append(fn)


def remove_cleanup(fn: Callable[[], None]) -> None:
  if fn in _state["cleanups"]:
    _state["cleanups"].remove(fn)


def _watch(read_fd: int) -> None:
  data = os.read(read_fd, 1)
  if _state["done"].is_set() or not data or data[0] == 0:
    return
  name = signal.Signals(data[0]).name
  status = 128 + data[0] if _state["interrupt_is_failure"] else 0
  if status:
    logging.getLogger("gjax").warning(
      "%s received: interrupted before finishing, nothing written (an earlier "
      "results file is left as it was): exiting with status %d",
      name,
      status,
    )
  else:
    logging.getLogger("gjax").warning("%s received before training started (nothing to save): exiting", name)
  for fn in list(_state["cleanups"]):
    try:
      fn()
    except Exception:  # noqa: BLE001 - best effort on the way out
      pass
  logging.shutdown()
  sys.stderr.flush()
  os._exit(status)


def training_started() -> None:
  """Ends the start-up watch: signals are the trainer's from now on. Handlers
  still ours are restored to what they were."""
  if not _state["installed"] or _state["done"].is_set():
    return
  _state["done"].set()
  signal.set_wakeup_fd(-1)
  for sig, handler in _state["previous"].items():
    if signal.getsignal(sig) is _ignore_here:
      signal.signal(sig, handler)
  try:
    os.write(_state["write_fd"], b"\0")  # wakes the watcher, which sees done and returns
  except OSError:
    pass
