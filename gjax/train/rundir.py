"""The run directory (``--workdir``) and everything a training run keeps in it
besides the checkpoints' own files: :class:`RunDir` is its one owner.

What a run directory holds::

  config.json            the run's config (written when training starts; compared on resume)
  config_history.jsonl   earlier configs of a run resumed with resume_with_changed_config=True
  lock.json              the lock of the process training in it (gjax.train.lock)
  checkpoints/           Orbax checkpoints (gjax.train.checkpoints), with checkpoint_checksums/
  train.jsonl, eval.jsonl, tensorboard/   the metrics (gjax.train.metrics)
  summary.json           the run's summary: one segment per process lifetime that trained in it
  eval_results.json      what eval.py writes (config.eval.results_path elsewhere)

:class:`RunDir` opens it for one training process, in this order: creates it
and checks that a file can be written in it (:func:`prepare_workdir`), checks
the files a run reads or rewrites were written by gjax and can be parsed
(:func:`check_run_files`), takes the lock (:class:`gjax.train.lock.WorkdirLock`),
and on resume compares the config with the run's ``config.json``
(:func:`check_run_identity`: a config that computes something else stops,
listing the changed fields; with ``resume_with_changed_config=True`` it goes on
and keeps the earlier config in ``config_history.jsonl``). When training
starts (:meth:`RunDir.start`) it reads the earlier summary segments, writes
``config.json`` and drops the metric rows logged after the restored step (the
steps between the last checkpoint and a crash), so every step appears once and
in order; it opens the metric writers and at the end writes ``summary.json``
(:meth:`RunDir.write_summary`). Only process 0 writes; the others only take
part in the checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from typing import Any

from gjax.atomic import write_text_atomically
from gjax.train import checkpoints
from gjax.train.config import changed_fields
from gjax.train.lock import WorkdirLock
from gjax.train.metrics import MetricWriter, RunFileError, read_jsonl

log = logging.getLogger("gjax.train")

CONFIG_NAME = "config.json"
CONFIG_HISTORY_NAME = "config_history.jsonl"
SUMMARY_NAME = "summary.json"
CHECKPOINT_DIR = "checkpoints"
EVAL_RESULTS_NAME = "eval_results.json"
TENSORBOARD_DIR = "tensorboard"
METRIC_FILES = ("train.jsonl", "eval.jsonl")
#: The top-level fields every gjax config.json has (``base_config``).
GJAX_CONFIG_FIELDS = ("method", "dataset", "model", "batch_size")


class RunDir:
  """The run directory of one training process (see the module doc), as a
  context manager: entering prepares it, checks its run files and takes the
  lock (``is_main``: process 0; the other processes of a multi-host job only
  prepare it); leaving closes the metric writers and releases the lock.

  Between the two, in the order a run needs them: :meth:`open_checkpoints`,
  :meth:`check_identity` (before a restore), :meth:`start` (once the start step
  is known), :meth:`metric_writer`, :meth:`write_summary`.
  """

  def __init__(self, workdir: str, config, *, is_main: bool = True):
    self.path = workdir
    self.config = config
    self.is_main = is_main
    self._lock = WorkdirLock(workdir, enabled=is_main)
    self._writers: list[MetricWriter] = []
    self._earlier_segments: list[dict] = []

  def file(self, name: str) -> str:
    """The path of ``name`` in the run directory."""
    return os.path.join(self.path, name)

  @property
  def checkpoint_dir(self) -> str:
    return self.file(CHECKPOINT_DIR)

  @property
  def eval_results_path(self) -> str:
    """Where eval.py writes its results for this config."""
    return self.config.eval.results_path or self.file(EVAL_RESULTS_NAME)

  def __enter__(self) -> RunDir:
    prepare_workdir(self.path)  # a file, a read-only file system: named before anything is built
    if self.is_main:
      check_run_files(self.path)  # before anything is written: another tool's files, damaged ones
    self._lock.__enter__()
    return self

  def __exit__(self, *exc) -> bool:
    try:
      self.close_writers()
    finally:
      self._lock.__exit__(*exc)
    return False

  def open_checkpoints(self):
    """The Orbax ``CheckpointManager`` of ``checkpoints/`` (:func:`gjax.train.checkpoints.checkpoint_manager`)."""
    return checkpoints.checkpoint_manager(self.path, self.config)

  def check_identity(self, resumed_step: int) -> None:
    """Before a resume from ``resumed_step``: the config must compute what the
    run's does (:func:`check_run_identity`)."""
    check_run_identity(self.path, self.config, resumed_step, write=self.is_main)

  def start(self, start_step: int) -> None:
    """Training starts (or resumes) at ``start_step``: reads the earlier
    segments of ``summary.json`` (a damaged one is moved aside), writes
    ``config.json`` and drops the metric rows logged after ``start_step`` by
    an interrupted run (they are logged again). Process 0 only."""
    if not self.is_main:
      return
    self._earlier_segments = read_segments(self.path, start_step)
    write_text_atomically(self.file(CONFIG_NAME), self.config.to_json_best_effort(indent=2))
    dropped = sum(truncate_metrics(self.file(name), start_step) for name in METRIC_FILES)
    if dropped:
      log.warning("dropped %d metric rows logged after step %d by the interrupted run", dropped, start_step)

  def metric_writer(self, name: str) -> MetricWriter:
    """The writer of ``<name>.jsonl`` and ``tensorboard/<name>`` (a no-op on processes other than 0), closed on exit."""
    writer = MetricWriter(self.path, name, enabled=self.is_main)
    self._writers.append(writer)
    return writer

  def close_writers(self) -> None:
    writers, self._writers = self._writers, []
    for writer in writers:
      writer.close()

  def write_summary(self, summary: dict[str, Any]) -> dict[str, Any]:
    """Writes ``summary.json`` (process 0): ``summary`` (this process's run, with
    ``start_step``, ``final_step``, ``wall_seconds``, ``compile_seconds``,
    ``skipped_steps``, ``preempted``) plus ``segments``, one per process
    lifetime that trained in this directory (the earlier ones and this one),
    and ``total_wall_seconds`` over them. Returns what it wrote (``summary``
    as it is on the other processes)."""
    if not self.is_main:
      return summary
    segments = list(self._earlier_segments)
    segments.append(
      {
        k: summary[k]
        for k in ("start_step", "final_step", "wall_seconds", "compile_seconds", "skipped_steps", "preempted")
      }
    )
    summary = dict(summary, segments=segments, total_wall_seconds=sum(seg["wall_seconds"] for seg in segments))
    write_text_atomically(self.file(SUMMARY_NAME), json.dumps(summary, indent=2))
    return summary


class WorkdirError(ValueError):
  """A workdir that is a file, or in which nothing can be written (a read-only
  file system, no permission)."""


def prepare_workdir(workdir: str) -> None:
  """Creates ``workdir`` and checks that a file can be written in it (a real,
  uniquely named write: ``os.access`` is passed by root and by read-only
  mounts); :class:`WorkdirError` names the path, the cause and what to do."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(
      f"--workdir {workdir} is a file, not a directory: pass a directory (new or a run's) as "
      "--workdir, or move the file aside"
    )
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(prefix=".gjax-write-test-", dir=workdir):
      pass
  except OSError as error:
    raise WorkdirError(
      f"cannot write in --workdir {workdir} ({type(error).__name__}: {error.strerror or error}): "
      "pass a --workdir on a writable file system, where this user may create files"
    ) from None


class ConfigChangedError(ValueError):
  """A resume whose config differs from the run's in what it computes."""


def _metrics_advice(path: str) -> str:
  return (
    f"Delete or repair that line of {os.path.basename(path)} (only it: the checkpoints and the other "
    f"rows stay valid), then rerun"
  )


def truncate_metrics(path: str, after_step: int) -> int:
  """Drops the rows of the JSON-lines file ``path`` whose step is above
  ``after_step``, and a torn last line (with a warning naming the file), by
  an atomic rewrite; returns how many rows were dropped."""
  if not os.path.exists(path):
    return 0
  rows, torn = read_jsonl(path, _metrics_advice(path))
  for number, row in enumerate(rows, 1):
    if not isinstance(row.get("step"), int):
      raise RunFileError(f"{path}: row {number} has no integer 'step' ({str(row)[:80]}). {_metrics_advice(path)}")
  keep = [row for row in rows if row["step"] <= after_step]
  with open(path, "rb") as f:
    ends_cleanly = f.read().endswith(b"\n") or os.path.getsize(path) == 0
  if torn:
    log.warning(
      "%s: its last line is torn (cut off mid-line, e.g. by a full disk or a crash while it was written): dropped", path
    )
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


def _config_advice(path: str) -> str:
  return (
    f"It records the config of the run in {os.path.dirname(path)}: if it was damaged, move it aside and "
    "rerun (the resume then cannot compare configs and writes it anew); if the directory is another "
    "tool's, use another --workdir"
  )


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
  foreign = [(name, why) for name in (CONFIG_NAME, SUMMARY_NAME) + METRIC_FILES if (why := _not_gjax(workdir, name))]
  if foreign:
    listed = "; ".join(f"{os.path.join(workdir, name)}: {why}" for name, why in foreign)
    raise NotAGjaxWorkdirError(
      f"{workdir} holds files gjax did not write ({listed}); a run there would overwrite or misread them. "
      "Use another --workdir (a new or empty directory), or move those files out of it"
    )


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
    log.warning(
      "%s cannot be read (%s): moved to %s; the new summary covers this run's segments from step %d "
      "on (the checkpoints and metric logs are intact)",
      path,
      str(error)[:200],
      aside,
      start_step,
    )
    return []
  return [seg for seg in segments if seg["start_step"] < start_step]


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
      f"--config.resume_with_changed_config=True (the earlier config is kept in {CONFIG_HISTORY_NAME})"
    )
  log.warning(
    "resuming from step %d with a changed config (%s); the earlier config is kept in %s",
    resumed_step,
    listed,
    CONFIG_HISTORY_NAME,
  )
  if write:
    with open(os.path.join(workdir, CONFIG_HISTORY_NAME), "a") as f:
      f.write(
        json.dumps(
          {
            "until_step": resumed_step,
            "time": time.time(),
            "changed": {k: list(v) for k, v in changes.items()},
            "config": saved,
          }
        )
        + "\n"
      )
