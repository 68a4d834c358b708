"""Metric files: JSON lines and TensorBoard event files, written by process 0 only.

TensorBoard events are written with ``tensorboard``'s own event writer, which
does not import TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricWriter:
  """Appends ``{"step": s, **scalars}`` to ``<workdir>/<name>.jsonl`` and to
  TensorBoard events under ``<workdir>/tensorboard/<name>``. A no-op when
  ``enabled`` is False (every process but 0)."""

  def __init__(self, workdir: str, name: str = "train", enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, f"{name}.jsonl")
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._tb = EventFileWriter(os.path.join(workdir, "tensorboard", name))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in scalars.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": int(step), **{k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}}) + "\n")
    values = [Summary.Value(tag=k, simple_value=v) for k, v in clean.items()]
    self._tb.add_event(Event(wall_time=time.time(), step=int(step), summary=Summary(value=values)))
    self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()


def read_metrics(path: str) -> list[dict]:
  """Reads a JSON-lines metric file written by :class:`MetricWriter`."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
