"""``evaluate(config, workdir)``: restore the latest checkpoint and run the
evaluators of ``config.eval.evaluators`` (:mod:`gjax.eval.registry`) on the
frozen representation; ``train_and_evaluate``: the trainer with the online ones."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time

import jax

from gjax import data as gdata
from gjax.atomic import WriteError, write_text_atomically
from gjax.eval.registry import EvalContext, run_evaluators, validate_evaluators
from gjax.eval.splits import eval_splits
from gjax.train import config as config_lib
from gjax.train.state import no_checkpoint_error, restore_run
from gjax.train.trainer import train_and_evaluate as _train

log = logging.getLogger("gjax.eval")


def representation_metrics(model, variables, splits, config, mesh, evaluators) -> dict[str, float]:
  """The ``evaluators`` (names in ``config.eval.evaluators``, run with their
  settings there) for the model's current ``variables`` on the evaluation
  ``splits`` (:func:`gjax.eval.splits.eval_splits`)."""
  context = EvalContext(model=model, variables=variables, config=config, mesh=mesh, splits=splits)
  return run_evaluators(context, evaluators, config.eval.evaluators)


def online_evaluator(config):
  """The evaluation during training (``config.eval.online_evaluators`` every
  ``config.eval.every_epochs``) as the trainer takes it: ``(model, variables,
  mesh) -> metrics``, the evaluation splits opened once (an in-memory data
  set loaded once; a TFDS one streamed at each evaluation)."""
  validate_evaluators(config)
  splits = eval_splits(config)
  return lambda model, variables, mesh: representation_metrics(
    model, variables, splits, config, mesh, config.eval.online_evaluators
  )


def train_and_evaluate(config, workdir: str, **kwargs):
  """:func:`gjax.train.train_and_evaluate` with the configured evaluation
  during training (when ``config.eval.every_epochs > 0``)."""
  evaluator = online_evaluator(config) if config.eval.every_epochs > 0 else None
  return _train(config, workdir, online_evaluator=evaluator, **kwargs)


def evaluate(config, workdir: str) -> dict:
  """Runs the k-NN evaluators on the latest checkpoint in ``workdir``."""
  config_lib.validate_config(config, jax.device_count(), jax.process_count())
  validate_evaluators(config)
  if not config.eval.evaluators.keys():
    raise ValueError(
      "config.eval.evaluators is empty: nothing to evaluate (e.g. "
      "config.eval.evaluators = gjax.eval.evaluator_settings('knn', 'linear_probe'))"
    )
  error = no_checkpoint_error(workdir)  # before minutes of computing, not after
  if error:
    raise error
  results_path = config.eval.results_path or os.path.join(workdir, "eval_results.json")
  if jax.process_index() == 0:
    check_writable(results_path)  # before minutes of computing, not after
  start = time.time()
  splits = eval_splits(config)
  mesh = gdata.data_mesh()
  model, state = restore_run(config, workdir, splits[0].image_shape, mesh)
  variables = state.variables
  results = {"step": int(state.step), "num_train": splits[0].num_examples, "num_test": splits[1].num_examples}
  names = tuple(config.eval.run_only) or tuple(config.eval.evaluators.keys())
  results.update(representation_metrics(model, variables, splits, config, mesh, names))
  results["wall_seconds"] = time.time() - start
  if jax.process_index() == 0:
    log.info("eval at step %d: %s", results["step"], json.dumps(results))  # shown before it is written
    try:  # never a half-written file, nor a temporary one left behind
      write_text_atomically(results_path, json.dumps(results, indent=2), "the evaluation results")
    except WriteError as error:
      raise WriteError(
        f"{error}; they are logged above (eval at step {results['step']}). Free space there, or "
        "pass --config.eval.results_path=<a writable file> to write them elsewhere"
      ) from error
    log.info("written to %s", results_path)
  return results


def check_writable(path: str) -> None:
  """Raises PermissionError naming ``path`` unless a file can be created beside
  it (a real write, not ``os.access``, which root and some file systems pass;
  a uniquely named file, never one through a link planted at a known name)."""
  directory = os.path.dirname(os.path.abspath(path))
  try:
    with tempfile.NamedTemporaryFile(prefix=".gjax-write-test-", dir=directory):
      pass
  except OSError as e:
    raise PermissionError(
      f"cannot write the evaluation results to {path} ({type(e).__name__}: {e.strerror or e}); "
      f"pass --config.eval.results_path=<a writable file> to write them elsewhere"
    ) from None
