"""The same-budget comparison table and the k-NN and effective-rank over training plots, from the
workdirs that ``studies/compare/run.sh`` fills.

  python -m studies.compare.report --root workdirs/compare --out results/compare_fashion_mnist \
      --methods vje,gje,gmje,gmje_mdn

Per method: k-NN (k=30 and weighted k=200) and linear-probe top-1 on the
backbone output (``h`` with a projector, else ``z``), on ``z`` and on ``mu``
where they exist; the training wall time and throughput; and the collapse
diagnostics at the end of training (per-dimension std of z, effective rank).
A method whose diagnostics show collapse is reported as such, not dropped.
Rows that repeat a row with another ``--config.seed`` are named ``<row>_seed<N>``
(the row itself is seed 0); ``results.md`` then ends with their mean, min and max
(:func:`seed_summary`), so a difference between rows can be read against the
spread between seeds. Rows of an earlier report (``--previous_rows``, its
curves from ``--previous_logs``) join the runs under ``--root``; with them
alone the report is made again from committed files.
"""

from __future__ import annotations

import json
import os
import re

from absl import flags

from gjax.train.metrics import read_metrics
from studies import cli

COLLAPSE_STD = 1e-3  # below this per-dimension std (mean over dims) the embedding counts as collapsed


def method_row(workdir: str, method: str) -> dict:
  with open(os.path.join(workdir, "eval_results.json")) as f:
    results = json.load(f)
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  last = read_metrics(os.path.join(workdir, "train.jsonl"))[-1]
  backbone = "h" if "knn30_h" in results else "z"
  row = {
    "method": method,
    "backbone_feature": backbone,
    "wall_minutes": summary["wall_seconds"] / 60,
    "images_per_second": last.get("images_per_second"),
    "final_loss": last["loss"],
    "z_std_mean": last.get("z_std_mean"),
    "z_std_min": last.get("z_std_min"),
    "z_effective_rank": last.get("z_effective_rank"),
  }
  for key, value in results.items():
    if key.startswith(("knn", "linear_top1")):
      row[key] = value
  row["collapsed"] = bool(row["z_std_mean"] is not None and row["z_std_mean"] < COLLAPSE_STD)
  return row


SEED_SUFFIX = re.compile(r"^(?P<row>.+)_seed(?P<seed>[0-9]+)$")
SEED_SUMMARY_KEYS = ("knn30", "linear_top1")  # on the backbone feature; and the effective rank of z


def seed_summary(rows: list[dict]) -> list[dict]:
  """Mean, min and max over seeds of the k-NN30, the linear top-1 (backbone feature) and the
  effective rank of z, for each row that has ``<row>_seed<N>`` repeats among ``rows``.
  A repeat whose row is absent is an error (it would be summarised alone)."""
  names = {r["method"]: r for r in rows}
  groups: dict[str, list[dict]] = {}
  for r in rows:
    match = SEED_SUFFIX.match(r["method"])
    if match:
      if match["row"] not in names:
        raise cli.StudyError(f"seed repeat {r['method']!r} has no row {match['row']!r} (seed 0) in the table")
      groups.setdefault(match["row"], [names[match["row"]]]).append(r)
  summary = []
  for row, members in groups.items():
    backbone = members[0]["backbone_feature"]
    entry = {"method": row, "seeds": len(members), "backbone_feature": backbone}
    for key in [f"{k}_{backbone}" for k in SEED_SUMMARY_KEYS] + ["z_effective_rank"]:
      values = [m.get(key) for m in members]
      if all(isinstance(v, (int, float)) for v in values):
        entry[key] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
    summary.append(entry)
  return summary


def seed_markdown(summary: list[dict]) -> str:
  def cell(entry, key, scale):
    v = entry.get(key)
    return f"{scale * v['mean']:.1f} ({scale * v['min']:.1f}-{scale * v['max']:.1f})" if v else "-"

  lines = ["| row | seeds | k-NN30 backbone | linear backbone | eff. rank z |", "|---|---|---|---|---|"]
  for e in summary:
    b = e["backbone_feature"]
    lines.append(
      f"| {e['method']} | {e['seeds']} | {cell(e, f'knn30_{b}', 100)} | "
      f"{cell(e, f'linear_top1_{b}', 100)} | {cell(e, 'z_effective_rank', 1)} |"
    )
  return "\n".join(lines) + "\n"


def markdown(rows: list[dict]) -> str:
  pct = lambda r, k: f"{100 * r[k]:.1f}" if k in r else "-"
  lines = [
    "| method | k-NN30 backbone | k-NN200w backbone | linear backbone | k-NN30 z | linear z | k-NN30 mu | "
    "linear mu | train min | img/s | z std mean / min | eff. rank z | collapsed |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    b = r["backbone_feature"]
    fmt = lambda v, spec: format(v, spec) if isinstance(v, (int, float)) else "-"
    lines.append(
      f"| {r['method']} | {pct(r, f'knn30_{b}')} | {pct(r, f'knn200w_{b}')} | {pct(r, f'linear_top1_{b}')} | "
      f"{pct(r, 'knn30_z')} | {pct(r, 'linear_top1_z')} | {pct(r, 'knn30_mu')} | {pct(r, 'linear_top1_mu')} | "
      f"{r['wall_minutes']:.1f} | {fmt(r['images_per_second'], '.0f')} | "
      f"{fmt(r['z_std_mean'], '.3f')} / {fmt(r['z_std_min'], '.3f')} | {fmt(r['z_effective_rank'], '.1f')} | "
      f"{'yes' if r['collapsed'] else 'no'} |"
    )
  return "\n".join(lines) + "\n"


def define(values) -> None:
  flags.DEFINE_string(
    "root", "", "the runs' directories (<root>/<name>/); none: --previous_rows only", flag_values=values
  )
  flags.DEFINE_string("out", None, "where results.md, results.jsonl and the plots go", flag_values=values)
  flags.DEFINE_list(
    "methods", None, "rows, in order: runs under --root, or rows of --previous_rows", flag_values=values
  )
  flags.DEFINE_string(
    "previous_rows",
    "",
    "results.jsonl of an earlier report: its rows whose runs are not under --root are kept",
    flag_values=values,
  )
  flags.DEFINE_string(
    "previous_logs",
    "",
    "where the earlier rows' curves are (<name>_eval.jsonl, <name>_train.jsonl; default: --out)",
    flag_values=values,
  )
  flags.mark_flags_as_required(["out", "methods"], flag_values=values)


def report(values) -> str:
  methods, out = values.methods, values.out
  previous = {}
  if values.previous_rows:
    with open(values.previous_rows) as f:
      previous = {row["method"]: row for row in map(json.loads, filter(str.strip, f))}
  here = {m for m in methods if values.root and os.path.exists(os.path.join(values.root, m, "eval_results.json"))}
  missing = [m for m in methods if m not in here and m not in previous]
  if missing:
    raise cli.StudyError(
      f"no finished run for {missing} under {values.root or '(no --root)'} "
      "(run studies/compare/run.sh)" + (f" and no such row in {values.previous_rows}" if values.previous_rows else "")
    )
  rows = [method_row(os.path.join(values.root, m), m) if m in here else previous[m] for m in methods]
  seeds = seed_summary(rows)  # a repeat without its row: a StudyError, before anything is written
  os.makedirs(out, exist_ok=True)
  table = markdown(rows)
  if seeds:
    table += "\n## Across seeds: mean (min-max) of each row and its `_seed<N>` repeats\n\n" + seed_markdown(seeds)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(table)
  with open(os.path.join(out, "results.jsonl"), "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
  from studies.plots import plot_knn_over_training, plot_over_training

  logs_dir = values.previous_logs or out
  logs = lambda name: {
    m: os.path.join(values.root, m, f"{name}.jsonl")
    if m in here  # noqa: E731
    else os.path.join(logs_dir, f"{m}_{name}.jsonl")
    for m in methods
  }
  plot_knn_over_training(
    {m: path for m, path in logs("eval").items() if os.path.exists(path)},
    os.path.join(out, "knn_over_training.png"),
    ("knn30_h", "knn30_z"),
  )
  # Partial collapse over training: the effective rank of z (methods that log it).
  plot_over_training(
    {m: path for m, path in logs("train").items() if os.path.exists(path)},
    os.path.join(out, "effective_rank_over_training.png"),
    "z_effective_rank",
    "effective rank of z",
    skip_missing=True,
  )
  print(table)
  return table


def main(argv=None):
  return cli.run("studies.compare.report", define, report, argv)


if __name__ == "__main__":
  main()
