"""Metric files: JSON lines and TensorBoard event files, written by process 0 only,
and read back (:func:`read_metrics`, :func:`read_jsonl`).

TensorBoard event files are written with ``tensorboard``'s record framing
(length, masked CRC-32C, payload, masked CRC-32C) over a plain local file, so
TensorFlow is never imported (``tensorboard``'s ``EventFileWriter`` imports it
through ``tf.io.gfile`` whenever it is installed: about 9 s of every start-up
on 2 CPU cores, and a dependency gjax does not otherwise need).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import socket
import time
from collections.abc import Mapping

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

_FILE_COUNTER = itertools.count()


class EventFile:
  """One TensorBoard event file in ``logdir``, named as TensorFlow names them
  (``events.out.tfevents.<time>.<host>.<pid>.<n>``), opened with its version
  record. Every event is flushed when written, so a killed run keeps its events."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_FILE_COUNTER)}"
    self.path = os.path.join(logdir, name)
    self._records = RecordWriter(open(self.path, "wb"))
    self.add_event(Event(wall_time=time.time(), file_version="brain.Event:2"))

  def add_event(self, event: Event) -> None:
    self._records.write(event.SerializeToString())
    self._records.flush()

  def close(self) -> None:
    self._records.close()


class MetricWriter:
  """Appends ``{"step": s, **scalars}`` to ``<workdir>/<name>.jsonl`` and to
  TensorBoard events under ``<workdir>/tensorboard/<name>``. A no-op when
  ``enabled`` is False (every process but 0)."""

  def __init__(self, workdir: str, name: str = "train", enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, f"{name}.jsonl")
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._tb = EventFile(os.path.join(workdir, "tensorboard", name))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in scalars.items()}
    with open(self.path, "a") as f:
      row = {k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}
      f.write(json.dumps({"step": int(step), **row}) + "\n")
    values = [Summary.Value(tag=k, simple_value=v) for k, v in clean.items()]
    self._tb.add_event(Event(wall_time=time.time(), step=int(step), summary=Summary(value=values)))

  def close(self) -> None:
    if self.enabled:
      self._tb.close()


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
      raise RunFileError(
        f"{path}: line {number} cannot be parsed as JSON ({error}). {what_to_do or 'Repair or delete that line.'}"
      ) from None
    if not isinstance(row, dict):
      raise RunFileError(
        f"{path}: line {number} is {type(row).__name__}, not a JSON object. "
        f"{what_to_do or 'Repair or delete that line.'}"
      )
    rows.append(row)
  return rows, False


def read_metrics(path: str) -> list[dict]:
  """Reads a JSON-lines metric file written by :class:`MetricWriter`; a torn
  last line (a run killed or out of disk space mid-write, or one being written
  now) is left out with a warning naming the file."""
  rows, torn = read_jsonl(path)
  if torn:
    logging.getLogger("gjax.train").warning("%s: its last line is torn (cut off mid-line): left out", path)
  return rows
