"""Resumable sweeps over any config fields, one results table per sweep.

  python -m studies.sweep --config configs/vje_fashion_mnist.py --workdir workdirs/sweep \
      --grid vje.beta=0.5,1.0 --grid vje.nu=1,3,inf

Each grid point runs in its own sub-directory (named by its field values);
a point whose ``result.json`` exists is not run again, so an interrupted sweep
resumes where it stopped. After every point the table is rewritten as
``results.jsonl`` and ``results.md`` in the sweep's directory.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import flags

from studies import cli

RunFn = Callable[[Any, str], Mapping[str, Any]]


def parse_value(text: str):
  """``inf`` / ``-inf``, Python literals (ints, floats, bools, tuples), else the string."""
  if text.strip().lower() in ("inf", "+inf", "-inf"):
    return math.inf if not text.strip().startswith("-") else -math.inf
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
  """``["vje.nu=1,3,inf", "vje.beta=(1.0)"]`` -> ``{"vje.nu": [1, 3, inf], ...}``."""
  grid: dict[str, list] = {}
  for spec in specs:
    field, sep, values = spec.partition("=")
    if not sep or not field or not values:
      raise ValueError(f"grid spec {spec!r} must look like field=v1,v2,...")
    if field in grid:
      raise ValueError(f"grid field {field!r} given twice")
    parts = [v for v in _split_top_level(values)]
    grid[field] = [parse_value(v) for v in parts]
  return grid


def _split_top_level(text: str) -> list[str]:
  """Splits on commas outside parentheses, so tuples like (1,2) stay whole."""
  parts, depth, current = [], 0, ""
  for ch in text:
    depth += ch == "("
    depth -= ch == ")"
    if ch == "," and depth == 0:
      parts.append(current)
      current = ""
    else:
      current += ch
  parts.append(current)
  return [p.strip() for p in parts if p.strip()]


def grid_points(grid: Mapping[str, Sequence]) -> list[dict[str, Any]]:
  fields = list(grid)
  return [dict(zip(fields, values)) for values in itertools.product(*(grid[f] for f in fields))]


def point_name(point: Mapping[str, Any]) -> str:
  text = ",".join(f"{k}={v}" for k, v in point.items())
  return "".join(c if c.isalnum() or c in "=.,-_" else "_" for c in text)


def apply_overrides(config, point: Mapping[str, Any]):
  """A copy of ``config`` with the point's fields set (type-checked, unknown fields rejected)."""
  new = config.copy_and_resolve_references()
  for path, value in point.items():
    *parents, leaf = path.split(".")
    target = new
    for p in parents:
      if p not in target:
        raise ValueError(f"unknown config field {path!r} in the sweep grid")
      target = target[p]
    if leaf not in target:
      raise ValueError(f"unknown config field {path!r} in the sweep grid")
    if isinstance(target[leaf], float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    target[leaf] = value
  return new


def markdown_table(rows: list[dict[str, Any]]) -> str:
  """``rows`` as a Markdown table: one column per key (in order of first
  appearance), floats to 4 significant digits, a missing cell empty."""
  columns = list(dict.fromkeys(k for row in rows for k in row))
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def run_sweep(config, grid: Mapping[str, Sequence], root: str, run_fn: RunFn) -> list[dict[str, Any]]:
  """Runs ``run_fn(config_at_point, point_dir)`` for every grid point not yet done."""
  if not grid:
    raise ValueError("the sweep grid is empty")
  points = grid_points(grid)
  configs = [apply_overrides(config, p) for p in points]  # validate every point before running any
  os.makedirs(root, exist_ok=True)
  rows = []
  for point, point_config in zip(points, configs):
    point_dir = os.path.join(root, point_name(point))
    result_path = os.path.join(point_dir, "result.json")
    if os.path.exists(result_path):
      with open(result_path) as f:
        result = json.load(f)
    else:
      result = dict(run_fn(point_config, point_dir))
      os.makedirs(point_dir, exist_ok=True)
      with open(result_path, "w") as f:
        json.dump(result, f, indent=2)
    rows.append({**{k: v for k, v in point.items()}, **result})
    with open(os.path.join(root, "results.jsonl"), "w") as f:
      f.writelines(json.dumps(r, default=str) + "\n" for r in rows)
    with open(os.path.join(root, "results.md"), "w") as f:
      f.write(markdown_table(rows))
  return rows


def read_rows(path: str) -> list[dict[str, Any]]:
  """The rows of a sweep's ``results.jsonl`` as :func:`run_sweep` returned
  them: JSON's lists back to the tuples a grid holds (``dataset.train_classes``)."""
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [{k: tuple(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows]


def train_then_evaluate(config, workdir: str) -> dict[str, Any]:
  """The default sweep point: pretrain, then the k-NN evaluators."""
  from gjax.eval.evaluate import evaluate, train_and_evaluate

  summary = train_and_evaluate(config, workdir)
  results = evaluate(config, workdir)
  return {"final_loss": summary["metrics"].get("loss", float("nan")), **results}


def define_grid(values) -> None:
  flags.DEFINE_multi_string("grid", [], "field=v1,v2,... (repeatable), e.g. vje.nu=0.5,1,3", flag_values=values)


def main() -> None:
  cli.run_with_config(
    define_grid,
    lambda values, config, workdir: run_sweep(config, parse_grid(values.grid), workdir, train_then_evaluate),
    "Root directory of the sweep (one sub-directory per grid point).",
  )


if __name__ == "__main__":
  main()
