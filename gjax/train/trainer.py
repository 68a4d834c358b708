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
import math
import os
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from gjax import data as gdata
from gjax import startup_signals
from gjax.train.checkpoints import TrainState, checkpoint_manager, restore_latest, save_checkpoint
from gjax.models import build_two_view_model
from gjax.objectives import get_objective
from gjax.train import config as config_lib
from gjax.train.input_pipeline import build_train_input, global_batches
from gjax.train.metrics import MetricWriter
from gjax.train.workdir import WorkdirLock, check_run_identity, truncate_metrics

log = logging.getLogger("gjax.train")


def build_method(config):
  """``config.method``'s objective, its hyperparameters (``config.<method>``) and
  the two-view network with the objective's head."""
  objective = get_objective(config.method)
  hparams = config[config.method] if config.method in config else None
  return objective, hparams, build_two_view_model(config.model, objective.head, hparams)


def total_train_steps(config, steps_per_epoch: int) -> int:
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(1, int(math.ceil(config.num_epochs * steps_per_epoch)))


def make_optimizer(config, steps_per_epoch: int, total_steps: int):
  """SGD with momentum, linear warm-up then cosine decay, weight decay.

  Weight decay is added to the gradient of every parameter before momentum,
  as ``torch.optim.SGD(weight_decay=...)`` does in the reference recipes.
  With ``optim.grad_clip_norm > 0`` the gradient's global norm is clipped to
  it first (the GJE family's density losses need it at SGD learning rates).
  """
  peak = config_lib.learning_rate(config)
  warmup = min(int(round(config.optim.warmup_epochs * steps_per_epoch)), total_steps - 1)
  if warmup > 0:
    schedule = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total_steps, end_value=0.0)
  else:
    schedule = optax.cosine_decay_schedule(peak, total_steps)
  clip = [optax.clip_by_global_norm(config.optim.grad_clip_norm)] if config.optim.grad_clip_norm > 0 else []
  tx = optax.chain(
      *clip,
      optax.add_decayed_weights(config.optim.weight_decay),
      optax.sgd(schedule, momentum=config.optim.momentum),
  )
  return tx, schedule


#: XLA's LLVM optimisation level for the one-off initialisation program. Its
#: run time is negligible while its compilation at the default level took 25 s
#: of a 30 s start-up (ResNet-18, 2 CPU cores); at level 0 it takes 4 s. The
#: parameters agree with the default level's to 1.5e-7 relative (the normal
#: samplers' last bit), and are deterministic at either level.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def create_train_state(rng, model, tx, image_shape, replicated) -> TrainState:
  """Initialises parameters inside one jitted program, replicated on the mesh
  (compiled with :data:`INIT_COMPILER_OPTIONS`)."""
  def init(rng):
    dummy = jnp.zeros((2,) + tuple(image_shape), jnp.float32)
    variables = model.init(rng, dummy, dummy, train=False)
    params = variables["params"]
    model_state = {name: value for name, value in variables.items() if name != "params"}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                      opt_state=tx.init(params))
  return jax.jit(init, out_shardings=replicated).lower(rng).compile(INIT_COMPILER_OPTIONS)(rng)


def make_train_step(model, objective, hparams, tx, augment: gdata.AugmentConfig, base_rng, mesh):
  """The jitted step ``(state, batch) -> (state, metrics)`` over ``mesh``."""
  replicated = gdata.replicated_sharding(mesh)
  batch_sharded = gdata.batch_sharding(mesh)

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    aug_rng, loss_rng = jax.random.split(rng)
    view_1, view_2 = gdata.two_views(aug_rng, batch["image"], augment)

    def loss_fn(params):
      outputs, model_state = model.apply(
          {"params": params, **state.model_state}, view_1, view_2,
          train=True, mutable=list(state.model_state))
      loss, metrics = objective.loss_fn(outputs, loss_rng, hparams)
      return loss, (metrics, model_state)

    (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm, param_norm = optax.tree.norm(grads), optax.tree.norm(params)
    # A non-finite loss, gradient or update leaves the state as it was (the
    # host then stops or skips, config.nonfinite_policy); the step counter moves
    # on so that the data order and the schedule stay those of the run.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm)
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, param_norm=param_norm,
                   nonfinite=1.0 - finite.astype(jnp.float32))
    new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                           model_state=keep(model_state, state.model_state),
                           opt_state=keep(opt_state, state.opt_state))
    return new_state, metrics

  return jax.jit(train_step, in_shardings=(replicated, {"image": batch_sharded, "label": batch_sharded}),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))


class StopSignals:
  """Context manager: SIGTERM / SIGINT ask the training loop to checkpoint and end.

  The first signal sets :attr:`received` (its name); the loop saves and returns
  at the next step boundary. A second SIGINT interrupts at once. Handlers are
  installed only in the main thread and restored on exit.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received: str | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
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


def _any_process(flag: bool) -> bool:
  """Whether ``flag`` is set on any process (a collective: every process calls it)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils

  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


#: Logged every window but left out of the progress line (it shows the objective's own metrics).
_BOOKKEEPING_METRICS = ("grad_norm", "param_norm", "nonfinite", "learning_rate", "images_per_second", "epoch",
                        "skipped_steps")


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _NonFiniteGuard:
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
        log.warning("step %d: non-finite loss, gradient or update (%s); step skipped (%d in a row)",
                    step, parts, self.consecutive)
        if self.consecutive <= self.max_consecutive:
          continue
        reason = (f"{self.consecutive} consecutive non-finite steps "
                  f"(max_consecutive_skips={self.max_consecutive})")
      else:
        reason = "nonfinite_policy='stop'"
      last = self.manager.latest_step()
      raise FloatingPointError(
          f"training stopped at step {step}: non-finite loss, gradient or update ({parts}); {reason}. "
          f"The parameters were not updated by that step and the last checkpoint "
          f"({'none' if last is None else f'step {last}'}) is intact.")


def train_and_evaluate(config, workdir: str, *, stop_after_steps: int | None = None) -> dict[str, Any]:
  """Trains ``config.method``; returns the run's summary and final ``state``.

  ``stop_after_steps`` ends this process after that many steps of the run
  (checkpointing first), as a preempted job would; restarting in the same
  workdir resumes from there. One process at a time trains in a workdir
  (:class:`gjax.train.workdir.WorkdirLock`).
  """
  config_lib.validate_config(config, jax.device_count(), jax.process_count())
  os.makedirs(workdir, exist_ok=True)
  with WorkdirLock(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir, stop_after_steps)


def _train_and_evaluate(config, workdir: str, stop_after_steps: int | None) -> dict[str, Any]:
  is_main = jax.process_index() == 0
  mesh = gdata.data_mesh()
  replicated = gdata.replicated_sharding(mesh)

  train_input = build_train_input(config)
  total_steps = total_train_steps(config, train_input.steps_per_epoch)
  objective, hparams, model = build_method(config)
  tx, schedule = make_optimizer(config, train_input.steps_per_epoch, total_steps)

  root = jax.random.PRNGKey(config.seed)
  init_rng, step_rng = jax.random.split(root)
  state = create_train_state(init_rng, model, tx, train_input.image_shape, replicated)
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
  if is_main:
    with open(os.path.join(workdir, "config.json.tmp"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    os.replace(os.path.join(workdir, "config.json.tmp"), os.path.join(workdir, "config.json"))
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

  train_step = make_train_step(model, objective, hparams, tx, train_input.augment, step_rng, mesh)
  writer = MetricWriter(workdir, "train", enabled=is_main)
  eval_every = int(round(config.eval.every_epochs * train_input.steps_per_epoch))
  if eval_every > 0:
    from gjax.eval.evaluate import load_eval_data, representation_metrics  # eval builds on train

    eval_data = load_eval_data(config)
    eval_writer = MetricWriter(workdir, "eval", enabled=is_main)
  end_step = total_steps if stop_after_steps is None else min(total_steps, start_step + stop_after_steps)
  unfetched: list[tuple[int, dict[str, jax.Array]]] = []  # device metrics since the last boundary
  window: list[dict[str, np.ndarray]] = []  # host metrics of the current log window
  last_metrics: dict[str, float] = {}
  run_start = time.time()
  window_start, window_steps, compile_seconds = None, 0, None
  images_per_step = config.batch_size

  batches = global_batches(train_input.batches(start_step), mesh)
  guard = _NonFiniteGuard(config, manager)
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
          eval_metrics = representation_metrics(
              model, state.variables, eval_data, config, mesh,
              config.eval.online_evaluators)
          eval_writer.write_scalars(done, dict(eval_metrics, epoch=done / train_input.steps_per_epoch))
          if is_main:
            log.info("eval at step %d: %s", done, " ".join(f"{k} {v:.4g}" for k, v in eval_metrics.items()))
          window_start, window_steps = time.time(), 0  # evaluation time is not training throughput
        # One process alone may have been signalled: in multi-host runs the
        # processes agree at log boundaries, a single process checks every step.
        if (jax.process_count() == 1 or at_log) and _any_process(signals.received is not None):
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
    segments = []
    if start_step > 0 and os.path.exists(summary_path):
      with open(summary_path) as f:
        segments = [seg for seg in json.load(f).get("segments", []) if seg["start_step"] < start_step]
    segments.append({k: summary[k] for k in ("start_step", "final_step", "wall_seconds", "compile_seconds",
                                             "skipped_steps", "preempted")})
    summary["segments"] = segments
    summary["total_wall_seconds"] = sum(seg["wall_seconds"] for seg in segments)
    with open(summary_path + ".tmp", "w") as f:
      json.dump(summary, f, indent=2)
    os.replace(summary_path + ".tmp", summary_path)
  return dict(summary, state=state)
