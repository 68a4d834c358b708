"""Composed configs: ``--config configs/<data set>.py:method=NAME[,variant=V][,module=M][,evaluators=A+B]``.

One entry point per data set for every registered method. A method's tuned
recipe for the data set, where there is one, is its file
``configs/<method>_<data set>.py`` (which stays the single place of those
settings; its commands keep working); the baselines take their published heads
(``configs/_baselines.py``); any other method, a one-file method of your own
included (``module=`` imports the module that registers it first), starts from
its registered defaults on the data set's shared recipe. ``evaluators=``
sets which evaluators the run has (e.g. ``knn+sampling``; the recipe's
evaluation during training keeps those of its online evaluators that are
among them, and ``--config.eval.online_evaluators="('knn','sampling')"`` runs the sampling
comparison during training).
"""

from __future__ import annotations

import importlib
import os

from configs._baselines import BASELINES

KEYS = ("method", "variant", "module", "evaluators")


def parse_spec(spec: str) -> dict[str, str]:
  """``"method=vicreg,variant=smoke"`` -> ``{"method": "vicreg", "variant": "smoke", "module": ""}``."""
  args = {"variant": "", "module": "", "evaluators": ""}
  for item in filter(None, spec.split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in KEYS:
      raise ValueError(f"config argument {item!r} must be one of {', '.join(k + '=...' for k in KEYS)}")
    args[key] = value
  if not args.get("method"):
    raise ValueError(f"config arguments {spec!r} name no method: add method=NAME (e.g. method=vje)")
  return args


def compose(dataset: str, spec: str, generic, baseline):
  """The config of ``spec`` on ``dataset``: the method's own file, else
  ``baseline(method, variant)`` for a baseline, else ``generic(method, variant)``."""
  args = parse_spec(spec)
  if args["module"]:
    importlib.import_module(args["module"])
  method, variant = args["method"], args["variant"]
  from gjax.objectives import registered_methods

  if method not in registered_methods():
    raise ValueError(
      f"unknown method {method!r}; registered methods: {registered_methods()} "
      "(a method of your own: add module=your.module, the module that registers it)"
    )
  own = f"{method}_{dataset}"
  if os.path.exists(os.path.join(os.path.dirname(__file__), f"{own}.py")):
    config = importlib.import_module(f"configs.{own}").get_config(variant)
  elif method in BASELINES:
    config = baseline(method, variant)
  else:
    config = generic(method, variant)
  if args["evaluators"]:
    config.eval.evaluators = with_evaluators(config.eval.evaluators, args["evaluators"].split("+"))
    # The recipe's evaluation during training keeps those of its evaluators that were chosen.
    config.eval.online_evaluators = tuple(n for n in config.eval.online_evaluators if n in config.eval.evaluators)
  return config


def with_evaluators(current, names):
  """``config.eval.evaluators`` for ``names`` (``evaluators=knn+sampling``): the
  recipe's settings where it has them, the registered defaults for the others
  (a config flag can change a setting but not add an evaluator)."""
  from gjax.eval import evaluator_settings

  chosen = evaluator_settings(*names)
  for name in names:
    if name in current.keys():
      chosen[name] = current[name]
  return chosen
