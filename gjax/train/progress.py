"""What a training run prints (process 0, logger ``gjax.train``): a start line,
one progress line per log window, and an end line naming what was written where.

The progress line fits one terminal line: the step, the loss and at most three
key metrics (:func:`key_metrics`: up to two of the method's own, then collapse
monitors; those that would pass :data:`PROGRESS_WIDTH` left out), the speed and
the time left::

  step 1200/23400 (5.1%) loss 1.234 nll -12.35 kl 0.1234 z_std_min 0.03125 | 1234 img/s | ETA 1:23:45

Every metric (the method's loss parts and diagnostics, the gradient and
parameter norms, the learning rate, ...) goes to ``train.jsonl`` and
TensorBoard, whatever the line shows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import jax

from gjax.train.rundir import CHECKPOINT_DIR, SUMMARY_NAME, TENSORBOARD_DIR

#: The method's own key metrics, in order of preference (a density's NLL, VJE's
#: KL, SIGReg's alignment, VICReg's invariance, SimSiam's output std); a new
#: method's term is shown by adding its name here.
METHOD_METRICS = ("nll", "kl", "alignment", "invariance", "output_std")
#: Collapse monitors; every method reports at least one.
COLLAPSE_METRICS = ("z_effective_rank", "z_std_min")
#: The key metrics shown after the loss: up to MAX_METHOD_METRICS of the method's, then collapse monitors.
KEY_SLOTS, MAX_METHOD_METRICS = 3, 2

#: The progress message's width: with the log prefix (``12:34:56 gjax.train] ``,
#: 21 columns) a line fits 120 columns. Key metrics that do not fit are left out.
PROGRESS_WIDTH = 99


def format_duration(seconds: float) -> str:
  """``H:MM:SS`` (``?`` when unknown: not finite)."""
  if not math.isfinite(seconds):
    return "?"
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def key_metrics(metrics: Mapping[str, float]) -> list[str]:
  """The names the progress line shows: ``loss``, then :data:`KEY_SLOTS` of
  those in ``metrics``: up to :data:`MAX_METHOD_METRICS` of
  :data:`METHOD_METRICS`, then :data:`COLLAPSE_METRICS`."""
  method = [name for name in METHOD_METRICS if name in metrics][:MAX_METHOD_METRICS]
  return ["loss"] + (method + [name for name in COLLAPSE_METRICS if name in metrics])[:KEY_SLOTS]


def progress_line(
  step: int, total_steps: int, metrics: Mapping[str, float], images_per_second: float, eta_seconds: float
) -> str:
  """One log window's line (see the module doc), at most :data:`PROGRESS_WIDTH` columns where the step count allows."""
  head = f"step {step}/{total_steps} ({100 * step / total_steps:.1f}%)"
  speed = f"{images_per_second:.0f} img/s" if math.isfinite(images_per_second) else "? img/s"
  tail = f" | {speed} | ETA {format_duration(eta_seconds)}"
  shown = [f"{name} {metrics[name]:.4g}" for name in key_metrics(metrics) if name in metrics]
  while len(shown) > 1 and len(" ".join([head, *shown])) + len(tail) > PROGRESS_WIDTH:
    shown.pop()  # the loss always stays
  return " ".join([head, *shown]) + tail


def start_line(config, train_input, num_params: int, start_step: int, total_steps: int, workdir: str) -> str:
  """The first line of a run: what trains on what, on which devices, from which step, where."""
  return (
    f"{config.method} on {config.dataset.name} ({train_input.num_examples} training images of "
    f"{'x'.join(map(str, train_input.image_shape))}) | {config.model.encoder} "
    f"x{config.model.width_multiplier:g}, "
    f"{num_params:,} parameters | global batch {config.batch_size} on {jax.device_count()} "
    f"{jax.devices()[0].platform} device(s), {jax.process_count()} process(es) | from step {start_step} of "
    f"{total_steps} | {f'resumed from step {start_step}' if start_step else 'new run'} | workdir {workdir}"
  )


def end_line(summary: Mapping, run_dir, *, evaluated_online: bool) -> str:
  """The last line of a run: how far it got and what it wrote where (paths in
  the run directory are given relative to it)::

    finished step 4/4 in 0:00:19 | in /tmp/run: checkpoints/ (step 4), train.jsonl, tensorboard/, summary.json; \
eval.py writes eval_results.json
  """
  final, total = summary["final_step"], summary["total_steps"]
  how = f"finished step {final}/{total}" if final == total else f"stopped at step {final}/{total}"
  written = [f"{CHECKPOINT_DIR}/ (step {final})", "train.jsonl"] + (["eval.jsonl"] if evaluated_online else [])
  written += [f"{TENSORBOARD_DIR}/", SUMMARY_NAME]
  results = run_dir.eval_results_path
  if os.path.dirname(os.path.abspath(results)) == os.path.abspath(run_dir.path):
    results = os.path.basename(results)
  return (
    f"{how} in {format_duration(summary['wall_seconds'])} | in {run_dir.path}: {', '.join(written)}; "
    f"eval.py writes {results}"
  )
