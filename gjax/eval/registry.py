"""Evaluators by name, each configured from the config.

``config.eval.evaluators = {name: settings}`` chooses what ``eval.py`` runs
(``config.eval.run_only``, a tuple of some of those names, narrows it, e.g.
``--config.eval.run_only="('knn',)"``; ``config.eval.online_evaluators``, what
runs during training); each evaluator is one module that registers an :class:`Evaluator`:
a function ``run(context, settings) -> {metric: value}`` over the frozen
features of a restored run (:class:`EvalContext`), its settings with their
defaults and their checks (the same :func:`gjax.objectives.require` messages
as the rest of the config). gjax's own are k-NN (``knn``), the linear probe
(``linear_probe``) and the posterior statistics (``posterior``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import numpy as np

from gjax.objectives import require
from gjax.registry import Registry


@dataclasses.dataclass
class EvalContext:
  """What an evaluator sees: the network and its variables, the config, the
  mesh, and the evaluation splits ``(train, test)``
  (:class:`gjax.eval.splits.EvalSplit`). Each split's frozen features are
  extracted once, on first use, streamed per process and kept sharded on the
  devices (:meth:`sharded`); :meth:`features` gathers them to the host for the
  evaluators that work on host arrays."""

  model: Any
  variables: Any
  config: Any
  mesh: Any
  splits: tuple[Any, Any]
  _sharded: dict[str, Any] = dataclasses.field(default_factory=dict)
  _features: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
  _labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def split(self, split: str):
    if split not in ("train", "test"):
      raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return self.splits[0] if split == "train" else self.splits[1]

  def sharded(self, split: str):
    """The :class:`gjax.eval.sharded.ShardedFeatures` of the ``"train"`` or ``"test"`` images."""
    if split not in self._sharded:
      import jax

      from gjax.eval.features import make_embed_step
      from gjax.eval.sharded import SplitLayout, extract_sharded_features
      from gjax.train.input_pipeline import augment_config

      source = self.split(split)
      devices = self.mesh.devices.size
      batch = max(devices, self.config.eval.batch_size - self.config.eval.batch_size % devices)
      layout = SplitLayout(source.num_examples, batch, jax.process_count())
      embed = make_embed_step(self.model, augment_config(self.config, source.image_shape), self.mesh)
      self._sharded[split] = extract_sharded_features(
        embed, self.variables, source.read(layout, jax.process_index()), layout, self.mesh
      )
    return self._sharded[split]

  def features(self, split: str) -> dict[str, np.ndarray]:
    """``{"h", "z", <head outputs>}`` of the split on the host (``N x D`` each)."""
    if split not in self._features:
      sharded = self.sharded(split)
      self._features[split] = {name: sharded.host(name) for name in sharded.values}
    return self._features[split]

  def split_labels(self, split: str) -> np.ndarray:
    if split not in self._labels:
      source = self.split(split)
      self._labels[split] = source.labels if source.labels is not None else self.sharded(split).host_labels()
    return self._labels[split]

  @property
  def labels(self) -> tuple[np.ndarray, np.ndarray]:
    return self.split_labels("train"), self.split_labels("test")

  @property
  def num_classes(self) -> int:
    train_y, test_y = self.labels
    return int(max(train_y.max(), test_y.max())) + 1

  def representations(self) -> tuple[str, ...]:
    """The features the representation evaluators score: the backbone output
    ``h`` when there is a projector (the usual SSL protocol; without one ``h``
    is ``z``), ``z``, and the posterior mean ``mu`` where the head has one."""
    available = self.sharded("train").values
    names = (("h",) if getattr(self.model, "projector", None) is not None else ()) + ("z", "mu")
    return tuple(n for n in names if n in available)


RunFn = Callable[[EvalContext, Any], Mapping[str, float]]
CheckFn = Callable[[Any, Any], None]


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """An evaluator: ``run(context, settings)``, its settings' defaults and checks
  (``check(settings, config)``, raising through :func:`gjax.objectives.require`)."""

  name: str
  run: RunFn
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  check: CheckFn | None = None
  description: str = ""


_EVALUATORS: Registry[Evaluator] = Registry("evaluator")

#: What eval.py runs on the shipped configs, and what of it runs during training.
DEFAULT_EVALUATORS = ("knn", "linear_probe", "posterior")
DEFAULT_ONLINE_EVALUATORS = ("knn", "posterior")


def register_evaluator(evaluator: Evaluator) -> Evaluator:
  return _EVALUATORS.add(evaluator.name, evaluator)


def get_evaluator(name: str) -> Evaluator:
  return _EVALUATORS.get(name)


def registered_evaluators() -> list[str]:
  return _EVALUATORS.names()


def evaluator_settings(*names: str) -> ml_collections.ConfigDict:
  """``config.eval.evaluators`` for ``names``, each at its defaults."""
  return ml_collections.ConfigDict({name: dict(get_evaluator(name).defaults) for name in names})


def use_default_evaluators(config):
  """Sets :data:`DEFAULT_EVALUATORS` at their defaults, and :data:`DEFAULT_ONLINE_EVALUATORS`
  as the online ones, on ``config.eval`` (what the shipped configs start from); returns ``config``."""
  config.eval.evaluators = evaluator_settings(*DEFAULT_EVALUATORS)
  config.eval.online_evaluators = DEFAULT_ONLINE_EVALUATORS
  return config


def validate_evaluators(config) -> None:
  """``config.eval.evaluators``: registered names, each section with exactly its
  evaluator's settings, of their types, passing its checks; the online ones
  among them. Raises ``ValueError`` naming the field."""
  from gjax.train.config import check_fields_against

  chosen = config.eval.evaluators
  require(
    hasattr(chosen, "keys"),
    "eval.evaluators",
    chosen,
    "must be a dict {name: settings} (e.g. gjax.eval.evaluator_settings('knn', 'linear_probe'))",
  )
  for name in chosen.keys():
    require(
      name in _EVALUATORS,
      f"eval.evaluators.{name}",
      dict(chosen[name]) if hasattr(chosen[name], "keys") else chosen[name],
      f"unknown evaluator {name!r}; registered: {registered_evaluators()}",
    )
    check_fields_against(chosen[name], get_evaluator(name).defaults, f"eval.evaluators.{name}.")
    if get_evaluator(name).check is not None:
      get_evaluator(name).check(chosen[name], config)
  for field in ("run_only", "online_evaluators"):
    names = tuple(config.eval[field])
    missing = [n for n in names if n not in chosen.keys()]
    require(
      not missing,
      f"eval.{field}",
      names,
      f"{missing} are not among config.eval.evaluators ({sorted(chosen.keys())}), whose settings they run with",
    )


#: Flat eval fields of the runs gjax wrote before evaluators owned their settings.
_FLAT_EVAL_FIELDS = {
  "knn_k": ("knn", "k"),
  "knn_weighted_k": ("knn", "weighted_k"),
  "knn_temperature": ("knn", "temperature"),
  "linear_probe_epochs": ("linear_probe", "epochs"),
  "linear_probe_learning_rate": ("linear_probe", "learning_rate"),
}


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with (``<workdir>/config.json``), in today's
  layout: the sections of methods other than its own dropped, an eval
  section of the older flat layout (``eval.evaluators`` a tuple of names,
  ``eval.knn_k``, ...) moved into ``eval.evaluators = {name: settings}``, and
  fields added since the run was trained (e.g. ``augment.flip_prob``,
  ``gje.log_det_weight``) given today's defaults of its method, which are the
  behaviour from before the field existed (``eval.evaluators`` excepted: the
  run's own evaluators are not added to)."""
  import json
  import os

  from gjax.train.config import drop_other_method_sections

  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist (train the run first, or name its config)")
  with open(path) as f:
    saved = drop_other_method_sections(json.load(f))
  e = saved.get("eval", {})
  if isinstance(e.get("evaluators"), (list, tuple)):
    sections = {name: dict(get_evaluator(name).defaults) for name in e["evaluators"]}
    for name in e.get("online_evaluators", ()):
      sections.setdefault(name, dict(get_evaluator(name).defaults))
    if e.get("anomaly_views", 1) != 1 or e.get("anomaly_samples", 0) != 0:
      sections["one_class"] = {"samples": e["anomaly_samples"], "views": e["anomaly_views"]}
    for flat, (name, field) in _FLAT_EVAL_FIELDS.items():
      value = e.pop(flat, None)
      if value is not None and name in sections:
        sections[name][field] = value
    e.pop("anomaly_views", None), e.pop("anomaly_samples", None)
    e["evaluators"] = sections
    e.setdefault("run_only", [])
  from gjax.train.config import base_config

  _fill_missing(saved, base_config(saved["method"]).to_dict(), skip=("eval.evaluators",))
  return ml_collections.ConfigDict(saved)


def _fill_missing(saved: dict, defaults: dict, skip=(), prefix: str = "") -> None:
  """Adds to ``saved`` (in place) every field of ``defaults`` it lacks, recursively, except under ``skip``."""
  for key, value in defaults.items():
    name = prefix + key
    if name in skip:
      continue
    if key not in saved:
      saved[key] = value
    elif isinstance(value, dict) and isinstance(saved[key], dict):
      _fill_missing(saved[key], value, skip, name + ".")


def run_evaluators(context: EvalContext, names, settings) -> dict[str, float]:
  """Runs ``names`` in order with ``settings[name]``; one metric name from two evaluators is an error."""
  results: dict[str, float] = {}
  for name in names:
    out = get_evaluator(name).run(context, settings[name])
    clash = sorted(set(out) & set(results))
    if clash:
      raise ValueError(f"evaluator {name!r} returns metrics {clash} that an earlier evaluator returned")
    results.update(out)
  return results
