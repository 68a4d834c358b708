"""Composed configs: ``--config configs/<data set>.py:method=NAME[,variant=V][,module=M]``.

One entry point per data set for every registered method. A method's tuned
recipe for the data set, where there is one, is its file
``configs/<method>_<data set>.py`` (which stays the single place of those
settings; its commands keep working); the baselines take their published heads
(``configs/_baselines.py``); any other method, a one-file method of your own
included (``module=`` imports the module that registers it first), starts from
its registered defaults on the data set's shared recipe.
"""

from __future__ import annotations

import importlib
import os

from configs._baselines import BASELINES

KEYS = ("method", "variant", "module")


def parse_spec(spec: str) -> dict[str, str]:
  """``"method=vicreg,variant=smoke"`` -> ``{"method": "vicreg", "variant": "smoke", "module": ""}``."""
  args = {"variant": "", "module": ""}
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
    raise ValueError(f"unknown method {method!r}; registered methods: {registered_methods()} "
                     "(a method of your own: add module=your.module, the module that registers it)")
  own = f"{method}_{dataset}"
  if os.path.exists(os.path.join(os.path.dirname(__file__), f"{own}.py")):
    return importlib.import_module(f"configs.{own}").get_config(variant)
  if method in BASELINES:
    return baseline(method, variant)
  return generic(method, variant)
