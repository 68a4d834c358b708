"""What keeps a long run safe: SIGTERM / SIGINT / SIGHUP end it with a checkpoint
(:class:`StopSignals`), processes agree on a stop (:func:`any_process`), and
the host side of the non-finite check (:class:`NonFiniteGuard`)."""

from __future__ import annotations

import logging
import signal
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger("gjax.train")


class StopSignals:
  """Context manager: SIGTERM / SIGINT / SIGHUP (the terminal or ssh session
  closed) ask the training loop to checkpoint and end.

  The first signal sets :attr:`received` (its name); the loop saves and returns
  at the next step boundary. A second signal (an impatient Ctrl-C) does not
  abandon that checkpoint: interrupting Orbax mid-save lost it every time, and
  once hung 300 s in Orbax leaving a ``<step>.orbax-checkpoint-tmp``
  directory. It is logged (the run is finishing its step and saving; ``kill
  -9`` abandons the save, the previous checkpoint is kept) and the run ends as
  for one signal. Handlers are installed only in the main thread and restored
  on exit.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

  def __init__(self):
    self.received: str | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    if self.received is not None:
      log.warning(
        "%s received again: still finishing the step and saving its checkpoint (stopping for %s); "
        "waiting for the save to finish rather than abandoning it (kill -9 abandons it, keeping the "
        "previous checkpoint)",
        name,
        self.received,
      )
      return
    self.received = name
    log.warning("%s received: saving a checkpoint at the end of this step, then stopping", name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}
    return False


def any_process(flag: bool) -> bool:
  """Whether ``flag`` is set on any process (a collective: every process calls it)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils

  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


class NonFiniteGuard:
  """Host side of the non-finite check; the step itself never applies such an update.

  ``check(rows)`` takes the host metrics ``[(step, metrics), ...]`` of the
  steps since the last check; the loop fetches them in one transfer at every
  log, evaluation and checkpoint boundary (no per-step synchronisation).
  Policy ``stop`` raises ``FloatingPointError`` naming the first non-finite
  step and its loss parts, so nothing after it is checkpointed; ``skip`` logs
  each and goes on, up to ``max_consecutive_skips`` in a row.
  """

  def __init__(self, config, manager: ocp.CheckpointManager):
    self.policy = config.nonfinite_policy
    self.max_consecutive = config.max_consecutive_skips
    self.manager = manager
    self.skipped = 0
    self.consecutive = 0

  def check(self, rows: list[tuple[int, dict[str, np.ndarray]]]) -> None:
    for step, metrics in rows:
      if not metrics["nonfinite"]:
        self.consecutive = 0
        continue
      parts = " ".join(f"{k}={float(v):.6g}" for k, v in metrics.items() if k != "nonfinite")
      if self.policy == "skip":
        self.skipped += 1
        self.consecutive += 1
        log.warning(
          "step %d: non-finite loss, gradient or update (%s); step skipped (%d in a row)", step, parts, self.consecutive
        )
        if self.consecutive <= self.max_consecutive:
          continue
        reason = f"{self.consecutive} consecutive non-finite steps (max_consecutive_skips={self.max_consecutive})"
      else:
        reason = "nonfinite_policy='stop'"
      last = self.manager.latest_step()
      raise FloatingPointError(
        f"training stopped at step {step}: non-finite loss, gradient or update ({parts}); {reason}. "
        f"The parameters were not updated by that step and the last checkpoint "
        f"({'none' if last is None else f'step {last}'}) is intact."
      )
