"""One data-parallel trainer for every method.

``train_and_evaluate(config, workdir)``, top to bottom: validates the config,
opens the run directory (:class:`gjax.train.rundir.RunDir`: the lock,
config.json, the metric files, summary.json), builds the input pipeline and
the run's plan (:mod:`gjax.train.plan`: the two-view network with the
method's head, the optimiser, one jitted step over a mesh of all devices: the
batch sharded on the ``data`` axis, the state replicated, the per-pixel
augmentation inside the step with one key per example), restores the latest
checkpoint, runs the loop and closes. What it prints is
:mod:`gjax.train.progress`'s.

Checkpoints (Orbax ``CheckpointManager``) are periodic and final; a run
restarted in the same workdir resumes from the latest readable one, with the
data order continuing where it stopped. Only process 0 writes logs and metric
files.

Long runs survive faults: SIGTERM / SIGINT save a checkpoint and end the run
cleanly; an unreadable checkpoint, or one whose bytes no longer match the
checksums recorded when it was saved (:mod:`gjax.train.checkpoints`), is moved
aside with a warning and the previous one used; a step whose loss, gradient or updated parameters are not
finite never changes the state, and stops the run naming the step and the
loss parts (``nonfinite_policy="stop"``) or is skipped (``"skip"``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gjax import data as gdata
from gjax import startup_signals
from gjax.train import config as config_lib
from gjax.train import progress
from gjax.train.checkpoints import restore_latest, save_checkpoint
from gjax.train.guards import NonFiniteGuard, StopSignals, any_process
from gjax.train.input_pipeline import build_train_input, global_batches
from gjax.train.plan import plan_for_input
from gjax.train.rundir import RunDir

log = logging.getLogger("gjax.train")

#: ``(model, variables, mesh) -> {name: value}``: an evaluation during training
#: (``gjax.eval.online_evaluator(config)`` builds the configured one).
OnlineEvaluator = Callable[[Any, Any, Any], dict[str, float]]


def train_and_evaluate(
  config, workdir: str, *, stop_after_steps: int | None = None, online_evaluator: OnlineEvaluator | None = None
) -> dict[str, Any]:
  """Trains ``config.method``; returns the run's summary and final ``state``.

  ``stop_after_steps`` ends this process after that many steps of the run
  (checkpointing first), as a preempted job would; restarting in the same
  workdir resumes from there. One process at a time trains in a workdir
  (:class:`gjax.train.lock.WorkdirLock`). ``online_evaluator`` runs every
  ``config.eval.every_epochs`` (required when that is > 0; the trainer knows
  no evaluator: ``gjax.eval.train_and_evaluate`` passes the configured ones).
  """
  config_lib.validate_config(config, jax.device_count(), jax.process_count())
  if config.eval.every_epochs > 0 and online_evaluator is None:
    raise ValueError(
      f"config.eval.every_epochs={config.eval.every_epochs!r} asks for evaluation during "
      "training: call gjax.eval.train_and_evaluate (train.py does), or pass online_evaluator"
    )
  with RunDir(workdir, config, is_main=jax.process_index() == 0) as run_dir:
    return _train(config, run_dir, stop_after_steps, online_evaluator)


def _window_means(window: list[dict[str, np.ndarray]]) -> dict[str, float]:
  """The means of one log window's step metrics; skipped (non-finite) steps are left out unless all were."""
  steps = [m for m in window if not m["nonfinite"]] or list(window)
  return {k: float(np.mean([m[k] for m in steps])) for k in steps[0]}


def _train(
  config, run_dir: RunDir, stop_after_steps: int | None, online_evaluator: OnlineEvaluator | None
) -> dict[str, Any]:
  is_main = run_dir.is_main
  mesh = gdata.data_mesh()
  train_input = build_train_input(config)
  plan = plan_for_input(config, train_input, mesh)
  total_steps, steps_per_epoch = plan.total_steps, train_input.steps_per_epoch
  state = plan.initial_state()

  manager = run_dir.open_checkpoints()
  try:
    if manager.latest_step() is not None:
      run_dir.check_identity(manager.latest_step())
      state = restore_latest(manager, state, config=config)
      log.info("resumed from step %d", int(state.step))
    start_step = int(state.step)
    run_dir.start(start_step)  # summary segments read, config.json written, later metric rows dropped
    if is_main:
      num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params))
      log.info("%s", progress.start_line(config, train_input, num_params, start_step, total_steps, run_dir.path))

    writer = run_dir.metric_writer("train")
    eval_every = int(round(config.eval.every_epochs * steps_per_epoch))
    eval_writer = run_dir.metric_writer("eval") if eval_every > 0 else None
    end_step = total_steps if stop_after_steps is None else min(total_steps, start_step + stop_after_steps)
    batches = global_batches(train_input.batches(start_step), mesh)
    guard = NonFiniteGuard(config, manager)
    unfetched: list[tuple[int, dict[str, jax.Array]]] = []  # device metrics since the last boundary
    window: list[dict[str, np.ndarray]] = []  # host metrics of the current log window
    last_metrics: dict[str, float] = {}
    run_start = time.time()
    window_start, window_steps, compile_seconds = None, 0, None
    preempted = None

    def fetch_and_check():
      """One transfer of the metrics since the last boundary; the non-finite check on them."""
      rows = jax.device_get(unfetched)
      unfetched.clear()
      guard.check(rows)
      window.extend(metrics for _, metrics in rows)

    with StopSignals() as signals:
      for step in range(start_step, end_step):
        batch = next(batches)
        if compile_seconds is None and is_main:
          log.info("compiling the train step (the first step includes it)...")
        t0 = time.time()
        state, metrics = plan.train_step(state, batch)
        unfetched.append((step + 1, metrics))
        if compile_seconds is None:  # first call: compilation + one step
          jax.block_until_ready(metrics)
          compile_seconds = time.time() - t0
          window_start = time.time()
          startup_signals.training_started()  # signals now checkpoint at the end of a step
        else:
          window_steps += 1
        done = step + 1

        at_log = done % config.log_every_steps == 0 or done == end_step
        if at_log:
          fetch_and_check()
          last_metrics = _window_means(window)
          window.clear()
          elapsed = time.time() - window_start
          rate = window_steps / elapsed if window_steps and elapsed > 0 else float("nan")
          last_metrics.update(
            learning_rate=float(plan.schedule(done - 1)),
            images_per_second=rate * config.batch_size,
            epoch=done / steps_per_epoch,
            skipped_steps=guard.skipped,
          )
          writer.write_scalars(done, last_metrics)
          if is_main:
            eta = (total_steps - done) / rate if rate > 0 else float("nan")
            log.info("%s", progress.progress_line(done, total_steps, last_metrics, rate * config.batch_size, eta))
          window_start, window_steps = time.time(), 0

        if eval_every > 0 and (done % eval_every == 0 or done == total_steps):
          fetch_and_check()
          eval_metrics = online_evaluator(plan.model, state.variables, mesh)
          eval_writer.write_scalars(done, dict(eval_metrics, epoch=done / steps_per_epoch))
          if is_main:
            log.info("eval at step %d: %s", done, " ".join(f"{k} {v:.4g}" for k, v in eval_metrics.items()))
          window_start, window_steps = time.time(), 0  # evaluation time is not training throughput

        # One process alone may have been signalled: in multi-host runs the
        # processes agree at log boundaries, a single process checks every step.
        if (jax.process_count() == 1 or at_log) and any_process(signals.received is not None):
          preempted = signals.received or "a signal to another process"
        if done % config.checkpoint_every_steps == 0 or done == end_step or preempted:
          fetch_and_check()  # a checkpoint never holds a step that is not checked
          save_checkpoint(manager, done, state)
        if preempted:
          manager.wait_until_finished()
          if is_main:
            log.warning(
              "stopped by %s at step %d/%d; checkpoint saved, rerun the same command to resume",
              preempted,
              done,
              total_steps,
            )
          break
      manager.wait_until_finished()  # the last save, with a signal meanwhile still handled by StopSignals
  finally:
    manager.wait_until_finished()
    manager.close()
    run_dir.close_writers()

  summary = {
    "final_step": int(state.step),
    "total_steps": total_steps,
    "start_step": start_step,
    "wall_seconds": time.time() - run_start,
    "compile_seconds": compile_seconds,
    "metrics": last_metrics,
    "skipped_steps": guard.skipped,
    "preempted": preempted,
  }
  if end_step > start_step:  # a resume with nothing left to do keeps the old summary
    summary = run_dir.write_summary(summary)
  if is_main:
    log.info("%s", progress.end_line(summary, run_dir, evaluated_online=eval_every > 0))
  return dict(summary, state=state)
