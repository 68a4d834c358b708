"""One data-parallel trainer for every method.

``train_and_evaluate(config, workdir)`` validates the config, builds the input
pipeline, the two-view network with the method's head (``config.method`` ->
:mod:`gjax.objectives`), and runs one jitted step over a mesh of all devices:
the batch is sharded on the ``data`` axis, the state replicated, and the
per-pixel augmentation runs inside the step with one key per example.
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

import json
import logging
import os
import time
from typing import Any, Callable

import jax
import numpy as np

from gjax import data as gdata
from gjax import startup_signals
from gjax.atomic import write_text_atomically
from gjax.train import config as config_lib
from gjax.train.checkpoints import checkpoint_manager, restore_latest, save_checkpoint
from gjax.train.guards import NonFiniteGuard, StopSignals, any_process
from gjax.train.input_pipeline import build_train_input, global_batches
from gjax.train.metrics import MetricWriter
from gjax.train.plan import plan_run
from gjax.train.state import create_train_state
from gjax.train.workdir import (WorkdirLock, check_run_files, check_run_identity, prepare_workdir, read_segments,
                                truncate_metrics)

log = logging.getLogger("gjax.train")


#: Logged every window but left out of the progress line (it shows the objective's own metrics).
_BOOKKEEPING_METRICS = ("grad_norm", "param_norm", "nonfinite", "learning_rate", "images_per_second", "epoch",
                        "skipped_steps", "target_momentum")


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


#: ``(model, variables, mesh) -> {name: value}``: an evaluation during training
#: (``gjax.eval.online_evaluator(config)`` builds the configured one).
OnlineEvaluator = Callable[[Any, Any, Any], dict[str, float]]


def train_and_evaluate(config, workdir: str, *, stop_after_steps: int | None = None,
                       online_evaluator: OnlineEvaluator | None = None) -> dict[str, Any]:
  """Trains ``config.method``; returns the run's summary and final ``state``.

  ``stop_after_steps`` ends this process after that many steps of the run
  (checkpointing first), as a preempted job would; restarting in the same
  workdir resumes from there. One process at a time trains in a workdir
  (:class:`gjax.train.workdir.WorkdirLock`). ``online_evaluator`` runs every
  ``config.eval.every_epochs`` (required when that is > 0; the trainer knows
  no evaluator: ``gjax.eval.train_and_evaluate`` passes the configured ones).
  """
  config_lib.validate_config(config, jax.device_count(), jax.process_count())
  if config.eval.every_epochs > 0 and online_evaluator is None:
    raise ValueError(f"config.eval.every_epochs={config.eval.every_epochs!r} asks for evaluation during "
                     "training: call gjax.eval.train_and_evaluate (train.py does), or pass online_evaluator")
  prepare_workdir(workdir)  # a file, a read-only file system: named before anything is built
  if jax.process_index() == 0:
    check_run_files(workdir)  # before anything is written: another tool's files, damaged ones
  with WorkdirLock(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir, stop_after_steps, online_evaluator)


def _train_and_evaluate(config, workdir: str, stop_after_steps: int | None,
                        online_evaluator: OnlineEvaluator | None) -> dict[str, Any]:
  is_main = jax.process_index() == 0
  mesh = gdata.data_mesh()
  replicated = gdata.replicated_sharding(mesh)

  train_input = build_train_input(config)
  plan = plan_run(config, steps_per_epoch=train_input.steps_per_epoch, image_shape=train_input.image_shape,
                  augment=train_input.augment, mesh=mesh)
  model, schedule, total_steps, train_step = plan.model, plan.schedule, plan.total_steps, plan.train_step
  state = create_train_state(plan.init_rng, model, plan.tx, train_input.image_shape, replicated,
                             with_target=plan.with_target)
  manager = checkpoint_manager(workdir, config)
  if manager.latest_step() is not None:
    try:
      check_run_identity(workdir, config, manager.latest_step(), write=is_main)
    except Exception:
      manager.close()
      raise
    state = restore_latest(manager, state, config=config)
    log.info("resumed from step %d", int(state.step))
  start_step = int(state.step)
  earlier_segments = read_segments(workdir, start_step) if is_main else []  # checked before training
  if is_main:
    write_text_atomically(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    # Rows logged after the restored checkpoint (a crash between a log and the
    # next checkpoint) are logged again by this run: drop the old ones.
    dropped = sum(truncate_metrics(os.path.join(workdir, f"{name}.jsonl"), start_step) for name in ("train", "eval"))
    if dropped:
      log.warning("dropped %d metric rows logged after step %d by the interrupted run", dropped, start_step)
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params))
    log.info("%s on %s (%d training images of %s) | %s x%g, %s parameters | global batch %d on %d %s device(s), "
             "%d process(es) | from step %d of %d | %s | workdir %s", config.method, config.dataset.name,
             train_input.num_examples, "x".join(map(str, train_input.image_shape)), config.model.encoder,
             config.model.width_multiplier, f"{num_params:,}", config.batch_size, jax.device_count(),
             jax.devices()[0].platform, jax.process_count(), start_step, total_steps,
             f"resumed from step {start_step}" if start_step else "new run", workdir)

  writer = MetricWriter(workdir, "train", enabled=is_main)
  eval_every = int(round(config.eval.every_epochs * train_input.steps_per_epoch))
  if eval_every > 0:
    eval_writer = MetricWriter(workdir, "eval", enabled=is_main)
  end_step = total_steps if stop_after_steps is None else min(total_steps, start_step + stop_after_steps)
  unfetched: list[tuple[int, dict[str, jax.Array]]] = []  # device metrics since the last boundary
  window: list[dict[str, np.ndarray]] = []  # host metrics of the current log window
  last_metrics: dict[str, float] = {}
  run_start = time.time()
  window_start, window_steps, compile_seconds = None, 0, None
  images_per_step = config.batch_size

  batches = global_batches(train_input.batches(start_step), mesh)
  guard = NonFiniteGuard(config, manager)
  preempted = None

  def fetch_and_check():
    """One transfer of the metrics since the last boundary; the non-finite check on them."""
    rows = jax.device_get(unfetched)
    unfetched.clear()
    guard.check(rows)
    window.extend(metrics for _, metrics in rows)

  try:
    with StopSignals() as signals:
      for step in range(start_step, end_step):
        batch = next(batches)
        if compile_seconds is None and is_main:
          log.info("compiling the train step (the first step includes it)...")
        t0 = time.time()
        state, metrics = train_step(state, batch)
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
          host = [m for m in window if not m["nonfinite"]] or list(window)  # skipped steps: not in the means
          window.clear()
          last_metrics = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
          elapsed = time.time() - window_start
          throughput = window_steps * images_per_step / elapsed if window_steps and elapsed > 0 else float("nan")
          last_metrics.update(learning_rate=float(schedule(done - 1)), images_per_second=throughput,
                              epoch=done / train_input.steps_per_epoch, skipped_steps=guard.skipped)
          writer.write_scalars(done, last_metrics)
          if is_main:
            rate = window_steps / elapsed if window_steps and elapsed > 0 else float("nan")
            eta = (total_steps - done) / rate if rate == rate and rate > 0 else float("nan")
            # Whatever the objective returns (its loss parts and diagnostics), loss first.
            parts = " ".join(f"{k} {v:.4g}" for k, v in sorted(last_metrics.items(), key=lambda kv: kv[0] != "loss")
                             if k not in _BOOKKEEPING_METRICS)
            log.info("step %d/%d (%.1f%%) %s | %.0f img/s | ETA %s", done, total_steps,
                     100 * done / total_steps, parts, throughput, _format_eta(eta) if eta == eta else "?")
          window_start, window_steps = time.time(), 0
        if eval_every > 0 and (done % eval_every == 0 or done == total_steps):
          fetch_and_check()
          eval_metrics = online_evaluator(model, state.variables, mesh)
          eval_writer.write_scalars(done, dict(eval_metrics, epoch=done / train_input.steps_per_epoch))
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
            log.warning("stopped by %s at step %d/%d; checkpoint saved, rerun the same command to resume",
                        preempted, done, total_steps)
          break
      manager.wait_until_finished()  # the last save, with a signal meanwhile still handled by StopSignals
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.close()
    if eval_every > 0:
      eval_writer.close()
  summary = {"final_step": int(state.step), "total_steps": total_steps, "start_step": start_step,
             "wall_seconds": time.time() - run_start, "compile_seconds": compile_seconds,
             "metrics": last_metrics, "skipped_steps": guard.skipped, "preempted": preempted}
  if is_main and end_step > start_step:  # a resume with nothing left to do keeps the old summary
    # The whole run: one segment per process lifetime that trained in this workdir.
    summary_path = os.path.join(workdir, "summary.json")
    segments = list(earlier_segments)
    segments.append({k: summary[k] for k in ("start_step", "final_step", "wall_seconds", "compile_seconds",
                                             "skipped_steps", "preempted")})
    summary["segments"] = segments
    summary["total_wall_seconds"] = sum(seg["wall_seconds"] for seg in segments)
    write_text_atomically(summary_path, json.dumps(summary, indent=2))
  return dict(summary, state=state)
