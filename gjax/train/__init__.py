"""The shared trainer: ``train_and_evaluate(config, workdir)``.

By job: :mod:`~gjax.train.config` (defaults, schema, checks),
:mod:`~gjax.train.state` (``TrainState``, method, optimiser, initial state, ``restore_run``),
:mod:`~gjax.train.input_pipeline` (the training batches), :mod:`~gjax.train.plan`
(what a run computes), :mod:`~gjax.train.step` (the jitted step),
:mod:`~gjax.train.rundir` (the run directory: config.json, metric files,
summary.json), :mod:`~gjax.train.lock` (one process per run directory),
:mod:`~gjax.train.checkpoints`, :mod:`~gjax.train.metrics` (JSON lines and
TensorBoard), :mod:`~gjax.train.guards` (signals, non-finite steps),
:mod:`~gjax.train.progress` (what a run prints), :mod:`~gjax.train.trainer`
(the loop). Nothing here imports :mod:`gjax.eval`; evaluation during training
is passed in (``gjax.eval.train_and_evaluate``).
"""

from gjax.train.config import base_config, learning_rate, validate_config, with_method
from gjax.train.state import (
  TrainState,
  abstract_train_state,
  build_method,
  create_train_state,
  make_optimizer,
  restore_run,
)
from gjax.train.step import make_train_step
from gjax.train.trainer import train_and_evaluate

__all__ = [
  "TrainState",
  "abstract_train_state",
  "base_config",
  "build_method",
  "create_train_state",
  "learning_rate",
  "make_optimizer",
  "make_train_step",
  "restore_run",
  "train_and_evaluate",
  "validate_config",
  "with_method",
]
