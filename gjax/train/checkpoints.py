"""Checkpoints of the train state: Orbax ``CheckpointManager`` plus a checksum
of every leaf, verified on restore.

Orbax and TensorStore do not detect bytes that change on disk after a save while
the file stays decodable (16 bytes overwritten in an OCDBT data file came back as
a momentum value of -1.2e5, restored silently). So every save also records the
CRC-32 of each leaf's bytes, computed from the state being saved, in
``<workdir>/checkpoint_checksums/<step>.json`` (written atomically by process 0),
and :func:`restore_latest` recomputes them on the restored state: a mismatch is
an unreadable checkpoint (a warning naming the step and the leaf, the previous
checkpoint used, the bad one moved to ``checkpoints_unreadable/``). Checkpoints
without a recorded checksum (written before gjax recorded them, or a crash
between the checkpoint and its checksum file) or whose checksum file is damaged
(it cannot be parsed, or its own ``record_crc32`` does not match) restore with a
warning naming the file that they are unverified: a fault of the side-file never
discards the checkpoint. The cost is one host copy of the state and a CRC-32 over its
bytes per save and per restore (zlib runs at about 1 GB/s: ~0.2 s for a
ResNet-50 with its momentum), nothing per step.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zlib
from typing import Any

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from gjax.atomic import write_text_atomically
from gjax.train.config import changed_fields, config_fields  # the one flattening of nested dicts into dotted names

log = logging.getLogger("gjax.train")

CHECKSUM_DIR = "checkpoint_checksums"

#: A :class:`gjax.train.state.TrainState` (not imported: the state module restores runs through this one).
TrainStateLike = Any


def saved_tree(state: TrainStateLike) -> dict[str, Any]:
  """What a checkpoint holds: the state's fields, without ``target_params``
  when there is no target network (so such checkpoints keep the layout gjax
  wrote before it had target networks, and restore either way)."""
  tree = {"step": state.step, "params": state.params, "model_state": state.model_state, "opt_state": state.opt_state}
  if jax.tree_util.tree_leaves(state.target_params):
    tree["target_params"] = state.target_params
  return tree


def _state_from_tree(tree: dict[str, Any], template: TrainStateLike) -> TrainStateLike:
  return template.replace(
    step=tree["step"],
    params=tree["params"],
    model_state=tree["model_state"],
    opt_state=tree["opt_state"],
    target_params=tree.get("target_params", template.target_params),
  )


def checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def _restore_step(manager: ocp.CheckpointManager, step: int, state: TrainStateLike) -> TrainStateLike:
  """Restores checkpoint ``step`` into ``state``'s structure and shardings.

  Checkpoints written before ``TrainState`` held all mutable collections (a
  ``batch_stats`` field instead of ``model_state``) restore too.
  """
  _check_shapes(manager, step, state)
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
  try:
    restored = _state_from_tree(manager.restore(step, args=ocp.args.StandardRestore(saved_tree(abstract))), state)
    verify_checksums(manager, step, restored)
    return restored
  except ValueError as error:
    if set(state.model_state) - {"batch_stats"}:
      raise
    legacy = {
      "step": abstract.step,
      "params": abstract.params,
      "opt_state": abstract.opt_state,
      "batch_stats": abstract.model_state.get("batch_stats", {}),
    }
    try:
      restored = manager.restore(step, args=ocp.args.StandardRestore(legacy))
    except ValueError:
      raise error from None
  log.info("restored a checkpoint written with the older batch_stats-only TrainState")
  return state.replace(
    step=restored["step"],
    params=restored["params"],
    opt_state=restored["opt_state"],
    model_state={"batch_stats": restored["batch_stats"]} if state.model_state else {},
    target_params={},
  )


class CheckpointShapeError(RuntimeError):
  """A checkpoint whose arrays have other shapes than the state of this config."""


def _check_shapes(manager: ocp.CheckpointManager, step: int, state) -> None:
  """Compares the shapes in checkpoint ``step``'s metadata with ``state``'s
  before any array is read (a restore that fails part-way leaves reads in
  flight, and Orbax's message names neither the leaf nor the cause). Leaves
  only one side has are left to the restore (older layouts)."""
  path = os.path.join(os.fspath(manager.directory), str(step), "default")
  checkpointer = ocp.StandardCheckpointer()
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)  # it warns that the item has no step metadata (the step has)
  try:
    metadata = checkpointer.metadata(path).item_metadata
  except Exception:  # noqa: BLE001 - unreadable metadata: the restore reports it
    return
  finally:
    absl_logging.set_verbosity(verbosity)
    checkpointer.close()
  saved = {m.name: tuple(m.shape) for m in jax.tree_util.tree_leaves(metadata) if hasattr(m, "shape")}
  mine = {name: tuple(np.shape(leaf)) for name, leaf in config_fields(flax.serialization.to_state_dict(state))}
  wrong = [(k, saved[k], mine[k]) for k in sorted(set(saved) & set(mine)) if saved[k] != mine[k]]
  if wrong:
    name, theirs, ours = wrong[0]
    raise CheckpointShapeError(
      f"checkpoint at step {step} does not fit this config: {name} has shape {theirs} "
      f"in the checkpoint and {ours} here ({len(wrong)} array(s) differ)"
    )


class CheckpointsUnreadableError(ValueError):
  """No checkpoint of a workdir can be read into the state this config builds."""


def _unreadable_message(manager: ocp.CheckpointManager, failures, config) -> str:
  step, error = failures[0]
  directory = os.fspath(manager.directory)
  first = str(error).splitlines()[0].split(" Truncating/padding is disabled")[0][:300]
  message = (
    f"no checkpoint in {directory} can be read with this config (steps {[s for s, _ in failures]}); "
    f"the newest, step {step}: {type(error).__name__}: {first}."
  )
  config_path = os.path.join(os.path.dirname(directory), "config.json")
  if config is not None and os.path.exists(config_path):
    try:
      with open(config_path) as f:
        changes = changed_fields(json.load(f), json.loads(config.to_json_best_effort()))
    except (ValueError, TypeError, AttributeError):  # a damaged config.json: nothing to compare with
      changes = {}
    if changes:
      listed = "; ".join(f"{k}: {old!r} (run) vs {new!r} (given)" for k, (old, new) in changes.items())
      return message + f" The run's config.json differs from the given config in: {listed}. Use the run's config."
  return message + (
    " If the checkpoints are damaged, move the checkpoints/ directory aside to start over "
    "(nothing was moved or deleted)."
  )


def restore_latest(
  manager: ocp.CheckpointManager, state: TrainStateLike, *, move_aside: bool = True, config=None
) -> TrainStateLike:
  """Restores the newest readable checkpoint into ``state``'s structure.

  A checkpoint that cannot be read (half written on a file system without
  atomic renames, corrupt) or whose leaves do not match the checksums recorded
  when it was saved is skipped with a warning and the previous one is
  used; with ``move_aside`` (the trainer; readers such as eval.py leave a run's
  workdir as it is) the skipped ones are then moved out of the manager's
  directory to ``checkpoints_unreadable/`` (nothing is deleted) so the run can
  write those steps again. A checkpoint deleted or changed while it was being
  read (a run beside the reader keeping only its newest ones: Orbax deletes
  the files of a step before its directory) is not a fault: the listing is read
  again and the newest checkpoint now present is read, up to
  :data:`RETRIES_AFTER_A_CHANGE` times. If no checkpoint can be read, the newest one's error is raised and
  nothing is moved: :class:`CheckpointsUnreadableError` gives the newest one's
  error and, with ``config``, the fields in which the run's ``config.json``
  differs from it (a config that no longer matches the checkpoints).
  """
  failures: list[tuple[int, Exception]] = []
  tried: set[int] = set()
  retries = 0
  while True:
    manager.reload()
    listed = sorted(manager.all_steps(), reverse=True)
    steps = [step for step in listed if step not in tried]
    if not steps:
      break
    changed = False
    for step in steps:
      tried.add(step)
      before = _step_fingerprint(manager, step)
      try:
        restored = _restore_step(manager, step, state)
      except Exception as error:  # noqa: BLE001 - any read failure: try the previous checkpoint
        why = _changed_meanwhile(manager, step, before, listed)
        if why and retries < RETRIES_AFTER_A_CHANGE:
          retries += 1
          log.warning(
            "checkpoint at step %d %s while it was being read (a run in this workdir keeps only its "
            "newest checkpoints): not unreadable; reading the newest checkpoint now present (retry %d "
            "of %d)",
            step,
            why,
            retries,
            RETRIES_AFTER_A_CHANGE,
          )
          tried = {bad for bad, _ in failures}
          changed = True
          time.sleep(0.1 * retries)  # let a deletion in progress finish
          break
        log.warning(
          "checkpoint at step %d in %s cannot be read (%s: %s); trying the previous one",
          step,
          manager.directory,
          type(error).__name__,
          str(error).splitlines()[0][:300],
        )
        failures.append((step, error))
        continue
      if failures and move_aside:
        _move_aside(manager, [bad for bad, _ in failures])
        log.warning(
          "resumed from step %d; unreadable checkpoint(s) %s moved to checkpoints_unreadable/",
          step,
          [bad for bad, _ in failures],
        )
      elif failures:
        log.warning(
          "read step %d; the newer checkpoint(s) %s cannot be read (left in place)", step, [bad for bad, _ in failures]
        )
      return restored
    if not changed:
      break
  if failures:
    raise CheckpointsUnreadableError(_unreadable_message(manager, failures, config)) from failures[0][1]
  raise FileNotFoundError(f"no checkpoint in {manager.directory}")


#: How many times :func:`restore_latest` reads the listing again after a
#: checkpoint changed or disappeared under it (a run beside it saving every
#: step); then a failure is reported as such.
RETRIES_AFTER_A_CHANGE = 5


def _step_fingerprint(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple[int, int]] | None:
  """``{relative path: (size, mtime_ns)}`` of every file of checkpoint ``step``; None when it is gone."""
  root = os.path.join(os.fspath(manager.directory), str(step))
  out = {}
  for directory, _, names in os.walk(root):
    for name in names:
      path = os.path.join(directory, name)
      try:
        info = os.stat(path)
      except OSError:
        continue  # deleted meanwhile: missing from the fingerprint
      out[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns)
  return out if os.path.isdir(root) else None


def _changed_meanwhile(manager: ocp.CheckpointManager, step: int, before, listed: list[int]) -> str | None:
  """Why checkpoint ``step`` is not to be called unreadable after a failed read:
  it was deleted, its files changed, or a newer checkpoint appeared (a run beside
  the reader saves, then deletes the oldest); None when nothing changed."""
  after = _step_fingerprint(manager, step)
  if after is None:
    return "was deleted"
  if after != before:
    return "changed (its files were deleted or rewritten)"
  manager.reload()
  newer = [s for s in manager.all_steps() if s > max(listed, default=-1)]
  if newer:
    return f"was superseded (newer checkpoint(s) {sorted(newer)} appeared)"
  return None


def _move_aside(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  directory = os.fspath(manager.directory)
  aside = os.path.join(os.path.dirname(directory), "checkpoints_unreadable")
  if jax.process_index() == 0:
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      source = os.path.join(directory, str(step))
      target = os.path.join(aside, f"{step}-{int(time.time())}")
      shutil.move(source, target)
  if jax.process_count() > 1:
    # A coordination-service barrier (with a timeout), not a device collective.
    ocp.multihost.sync_global_processes("gjax_checkpoints_moved_aside")
  manager.reload()


class ChecksumMismatchError(RuntimeError):
  """A restored checkpoint whose bytes differ from those that were saved."""


def _host_leaf(leaf) -> np.ndarray:
  """The local replica of a (replicated) leaf on the host, C-contiguous."""
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    leaf = leaf.addressable_data(0)
  return np.ascontiguousarray(jax.device_get(leaf))


def state_checksums(state) -> dict[str, str]:
  """``{leaf path: "<dtype>:<shape>:<crc32 of its bytes>"}`` over the whole state."""
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  out = {}
  for path, leaf in leaves:
    host = _host_leaf(leaf)
    out[jax.tree_util.keystr(path)] = f"{host.dtype}:{'x'.join(map(str, host.shape))}:{zlib.crc32(host.tobytes()):08x}"
  return out


def _checksum_path(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(os.path.dirname(os.fspath(manager.directory)), CHECKSUM_DIR, f"{step}.json")


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state) -> None:
  """Saves ``state`` at ``step`` (asynchronously, Orbax) and records its checksums
  (process 0; files of checkpoints no longer kept are removed)."""
  sums = state_checksums(state)  # before the next step donates the state's buffers
  manager.save(step, args=ocp.args.StandardSave(saved_tree(state)))
  if jax.process_index() != 0:
    return
  path = _checksum_path(manager, step)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  write_text_atomically(
    path, json.dumps({"step": step, "algorithm": "crc32", "leaves": sums, "record_crc32": _record_crc(sums)}, indent=0)
  )
  kept = {str(s) for s in manager.all_steps()} | {str(step)}
  for name in os.listdir(os.path.dirname(path)):
    if name.endswith(".json") and name[:-5] not in kept:
      os.remove(os.path.join(os.path.dirname(path), name))


def _record_crc(sums: dict[str, str]) -> str:
  """The CRC-32 of a checksum file's own ``leaves``: a change to the file is told from a change to the checkpoint."""
  return f"{zlib.crc32(json.dumps(sums, sort_keys=True).encode()):08x}"


def read_recorded_checksums(path: str) -> tuple[dict[str, str] | None, str | None]:
  """``(leaves, None)`` of the checksum file ``path``, or ``(None, why)`` when it
  is missing or damaged: it cannot be parsed, lacks its leaves, or its own
  ``record_crc32`` (files written before it was recorded have none) does not match."""
  if not os.path.exists(path):
    return None, "has no recorded checksum"
  try:
    with open(path, errors="replace") as f:
      record = json.load(f)
  except ValueError as error:
    return None, f"has a damaged checksum file (cannot be parsed: {error})"
  leaves = record.get("leaves") if isinstance(record, dict) else None
  if not isinstance(leaves, dict) or not all(isinstance(v, str) for v in leaves.values()):
    return None, "has a damaged checksum file (no 'leaves' of checksums)"
  if "record_crc32" in record and record["record_crc32"] != _record_crc(leaves):
    return None, "has a damaged checksum file (its own record_crc32 does not match its contents)"
  return leaves, None


def verify_checksums(manager: ocp.CheckpointManager, step: int, state) -> bool:
  """Compares ``state`` (restored from ``step``) with the checksums recorded at
  its save; raises :class:`ChecksumMismatchError` naming the first differing
  leaf. Returns False (and warns, naming the file) when none were recorded or
  the checksum file is damaged: the checkpoint is then used unverified, never
  discarded for a fault of its side-file."""
  path = _checksum_path(manager, step)
  recorded, why = read_recorded_checksums(path)
  if recorded is None:
    advice = (
      "" if why == "has no recorded checksum" else "; only that file is damaged: delete it to silence this warning"
    )
    log.warning("checkpoint at step %d %s (%s): restored unverified%s", step, why, path, advice)
    return False
  actual = state_checksums(state)
  if set(recorded) != set(actual):
    raise ChecksumMismatchError(
      f"checkpoint at step {step}: its checksum file {path} lists other leaves "
      f"than the state ({sorted(set(recorded) ^ set(actual))[:5]})"
    )
  for key, value in recorded.items():
    if actual[key] != value:
      raise ChecksumMismatchError(
        f"checkpoint at step {step}: leaf {key} reads back as {actual[key]}, but {value} was saved "
        f"(dtype:shape:crc32): its bytes on disk changed after it was written"
      )
  return True
