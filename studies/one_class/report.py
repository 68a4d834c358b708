"""Tables and plots of a one-class study (VJE Section 5.3), made from its files.

  python -m studies.one_class.report --root workdirs/posterior_study --out results/one_class_fashion_mnist \
      [--raw_pixel_reference results/one_class_fashion_mnist/raw_pixel_reference.md]

``ROOT/<setting>/<grid point, class>/`` are the directories that
``python -m studies.one_class.study`` writes (``run_posterior_study.sh`` makes one
``<setting>`` per line). Every row of the tables is read from a
``result.json`` and the ``config.json`` beside it (or from the
``posterior_study.jsonl`` of an earlier report, ``--previous_rows``; with no
``--root`` the report is made from those rows alone), so nothing is typed by
hand: the mean AUROC over the classes of every score (which part of Eq. 39
carries the signal), whether the paper's ordering (Eq. 39 > variance sum >
entropy) holds, the diagnostics at the end of training and on the test split,
and the wall time. Writes ``posterior_study.md`` / ``posterior_study.jsonl``,
per-class AUROC bars and the diagnostics over training of the best and the
paper's setting (those only where the run directories are here), and the
beta x nu heat map of the settings swept. ``--sweep_rows`` makes a sweep's
``results.md`` / ``summary.md`` again from its ``results.jsonl``
(:func:`studies.one_class.study.write_tables`).
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import numpy as np
from absl import flags

from gjax.data.arrays import FASHION_MNIST_CLASSES
from gjax.eval.one_class import SCORES
from studies import cli
from studies.one_class import plots
from studies.sweep import markdown_table

#: The config fields that tell the settings of a study apart (read from config.json).
SETTING_FIELDS = (
  "vje.beta",
  "vje.nu",
  "vje.kl_convention",
  "vje.free_bits",
  "optim.base_learning_rate",
  "optim.lr_scaling",
  "batch_size",
  "model.width_multiplier",
  "num_epochs",
  "num_train_steps",
)
#: Fields that rows written before they existed lack, with the value those rows ran with.
FIELD_DEFAULTS = {"num_train_steps": -1}
#: Diagnostics of the second table (means over classes).
TABLE_DIAGNOSTICS = (
  "train_active_units",
  "test_active_units",
  "train_mu_spread_ratio",
  "test_mu_spread_ratio",
  "test_mu_cosine",
  "test_z_cosine",
  "train_z_dead_channels",
  "train_var_mean",
  "train_directional_kernel",
  "train_directional_log_det",
  "train_kl",
)


def _field(config: dict, dotted: str):
  value = config
  for part in dotted.split("."):
    value = value[part]
  return value


def read_study(root: str) -> list[dict[str, Any]]:
  """One row per finished (setting, class): the result, the setting's fields and its directory."""
  rows = []
  for result_path in sorted(glob.glob(os.path.join(root, "*", "*", "result.json"))):
    directory = os.path.dirname(result_path)
    with open(result_path) as f:
      result = json.load(f)
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
      raise FileNotFoundError(f"{config_path} is missing: cannot tell which setting {result_path} belongs to")
    with open(config_path) as f:
      config = json.load(f)
    setting = {field: _field(config, field) for field in SETTING_FIELDS}
    rows.append(
      {
        "setting": os.path.basename(os.path.dirname(directory)),
        **setting,
        "class": int(_field(config, "dataset.train_classes")[0]),
        "dir": directory,
        **result,
      }
    )
  if not rows:
    raise FileNotFoundError(f"no finished one-class rows (*/*/result.json) under {root}")
  return rows


def read_previous_rows(path: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Rows of an earlier report's ``posterior_study.jsonl`` (made on another
  machine, whose run directories are not here) that ``rows`` does not hold
  (by setting and class); they carry no ``dir``, so no curves are drawn for them."""
  have = {(r["setting"], r["class"]) for r in rows}
  previous = []
  with open(path) as f:
    for line in f:
      row = json.loads(line)
      missing = [k for k in ("setting", "class", *SETTING_FIELDS) if k not in row and k not in FIELD_DEFAULTS]
      if missing:
        raise ValueError(f"{path}: a row lacks {missing}: it is not a posterior_study.jsonl row")
      # A field the row lacks gets its default (first, as earlier reports wrote it); the others keep their order.
      row = {**{k: v for k, v in FIELD_DEFAULTS.items() if k not in row}, **row}
      if (row["setting"], row["class"]) not in have:
        previous.append(row)
  return previous


def setting_labels(summary: list[dict[str, Any]]) -> list[str]:
  """Each summary entry's setting name, with the fields that tell apart the
  entries of one name (a setting that swept a grid): ``beta_mean_more (beta=0.75)``."""
  labels = []
  for s in summary:
    same = [t for t in summary if t["setting"] == s["setting"]]
    varying = [f for f in SETTING_FIELDS if len({str(t[f]) for t in same}) > 1]
    labels.append(
      s["setting"] + (" (" + ", ".join(f"{f.rpartition('.')[2]}={s[f]}" for f in varying) + ")" if varying else "")
    )
  return labels


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Mean over classes per distinct setting; the classes it covers; wall time in minutes."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault((row["setting"],) + tuple(row[f] for f in SETTING_FIELDS), []).append(row)
  summary = []
  for key, members in groups.items():
    out = {
      "setting": key[0],
      **dict(zip(SETTING_FIELDS, key[1:])),
      "classes": ",".join(str(m["class"]) for m in sorted(members, key=lambda m: m["class"])),
    }
    for score in SCORES:
      values = [m[f"auroc_{score}"] for m in members if f"auroc_{score}" in m]
      out[score] = 100 * float(np.mean(values)) if len(values) == len(members) else float("nan")
    out["paper_ordering"] = bool(out["joint"] > out["variance_sum"] > out["entropy"])
    for diag in TABLE_DIAGNOSTICS:
      values = [m[diag] for m in members if diag in m]
      out[diag] = float(np.mean(values)) if len(values) == len(members) else float("nan")
    out["wall_minutes"] = sum(m.get("wall_seconds", float("nan")) for m in members) / 60
    out["rows"] = members
    summary.append(out)
  return summary


def read_reference(path: str) -> dict[int, dict[str, float]]:
  """Per-class rows of the raw-pixel reference table written by ``one_class --raw_pixel_reference``."""
  with open(path) as f:
    lines = [line.strip() for line in f if line.strip().startswith("|")]
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  table = {}
  for line in lines[2:]:
    cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
    if cells["class"].isdigit():
      table[int(cells["class"])] = {k: float(v) for k, v in cells.items() if k != "class"}
  return table


def _short(setting: dict) -> str:
  return (
    f"{setting['setting']}: beta={setting['vje.beta']:g} ({setting['vje.kl_convention']}), "
    f"nu={setting['vje.nu']:g}, free_bits={setting['vje.free_bits']:g}"
  )


def write_report(
  root: str | None, out: str, reference_path: str | None = None, previous_rows: str | None = None
) -> list[dict[str, Any]]:
  """The tables and plots of the rows under ``root`` and of ``previous_rows``
  (either may be absent, not both) into ``out``; returns the summary per setting."""
  if not root and not previous_rows:
    raise cli.StudyError("no rows: give --root (the study's run directories), --previous_rows, or both")
  rows = read_study(root) if root else []
  if previous_rows:
    rows += read_previous_rows(previous_rows, rows)
  if not rows:
    raise cli.StudyError(f"{previous_rows} holds no rows")
  summary = summarise(rows)
  reference = read_reference(reference_path) if reference_path else {}
  os.makedirs(out, exist_ok=True)
  columns = [
    "setting",
    "vje.beta",
    "vje.kl_convention",
    "vje.nu",
    "vje.free_bits",
    "optim.base_learning_rate",
    "batch_size",
    "model.width_multiplier",
    "num_epochs",
    "num_train_steps",
    "classes",
  ]
  auroc_rows, diag_rows = [], []
  for s in summary:
    ref = {}
    if reference and all(int(c) in reference for c in s["classes"].split(",")):
      ref = {
        f"raw_{k}": 100 * float(np.mean([reference[int(c)][f"auroc_{k}"] for c in s["classes"].split(",")]))
        for k in ("gde", "knn5")
      }
    auroc_rows.append(
      {**{c: s[c] for c in columns}, **{k: s[k] for k in SCORES}, "paper_ordering": s["paper_ordering"], **ref}
    )
    diag_rows.append(
      {
        "setting": s["setting"],
        "vje.beta": s["vje.beta"],
        "vje.kl_convention": s["vje.kl_convention"],
        "vje.free_bits": s["vje.free_bits"],
        **{k: s[k] for k in TABLE_DIAGNOSTICS},
        "wall_minutes": s["wall_minutes"],
      }
    )
  per_class = [
    {
      "setting": r["setting"],
      "vje.beta": r["vje.beta"],
      "vje.kl_convention": r["vje.kl_convention"],
      "vje.free_bits": r["vje.free_bits"],
      "class": r["class"],
      **{k: 100 * r[f"auroc_{k}"] for k in SCORES if f"auroc_{k}" in r},
      "test_active_units": r.get("test_active_units"),
      "wall_minutes": r.get("wall_seconds", 0) / 60,
    }
    for r in rows
  ]
  labels = setting_labels(summary)
  summary_rows = [
    {
      "setting": labels[i],
      "classes": len(s["classes"].split(",")),
      **{k: round(s[k], 1) for k in ("joint", "joint_kernel", "variance_sum", "entropy", "gde_z")},
      "paper_ordering": s["paper_ordering"],
      "test_active_units": round(s["test_active_units"], 1),
      "test_mu_spread_ratio": round(s["test_mu_spread_ratio"], 3),
      **{k: round(a[k], 1) for a in [auroc_rows[i]] for k in ("raw_gde", "raw_knn5") if k in a},
      "wall_minutes": round(s["wall_minutes"], 1),
    }
    for i, s in enumerate(summary)
  ]
  summary_rows.sort(key=lambda r: (-r["classes"], -r["joint"]))
  with open(os.path.join(out, "posterior_study.md"), "w") as f:
    f.write(
      "# One-class posterior study: mean AUROC (%) over the classes listed\n\n"
      "Made by `python -m studies.one_class.report"
      + (f" --root {root}" if root else "")
      + (f" --raw_pixel_reference {reference_path}" if reference_path else "")
      + (f" --previous_rows {previous_rows}" if previous_rows else "")
      + " --out <this directory>` from the "
      "rows that `studies/one_class/run_posterior_study.sh` wrote.\n\n"
      "## Summary (10-class settings first, then by Eq. 39)\n\n"
      "`joint` is Eq. 39; `raw_gde` / `raw_knn5` are the raw-pixel Gaussian density and 5-NN distance "
      "on the same classes; `paper_ordering`: Eq. 39 > variance sum > entropy.\n\n"
      + markdown_table(summary_rows)
      + "\n## AUROC of every score\n\n"
      + markdown_table(auroc_rows)
      + "\n## Diagnostics at the end of training (train_*: last logged window) and on the test split "
      "(test_*), means over the classes\n\n"
      + markdown_table(diag_rows)
      + "\n## Per class\n\n"
      + markdown_table(per_class)
    )
  with open(os.path.join(out, "posterior_study.jsonl"), "w") as f:
    for row in rows:
      f.write(json.dumps({k: v for k, v in row.items() if k != "dir"}, default=str) + "\n")

  # Plots: per-class bars and diagnostics over training for the best setting
  # (by the Eq. 39 score) and the paper's recipe; the heat map over (beta, nu).
  best = max(summary, key=lambda s: s["joint"])
  chosen = {"best": best}
  paper = [s for s in summary if s["setting"] == "paper_recipe"]
  if paper:  # the last of them, as before
    chosen["paper"] = paper[-1]
  for name, s in chosen.items():
    members = sorted(s["rows"], key=lambda m: m["class"])
    plots.plot_per_class_auroc(
      [{**m, "dataset.train_classes": [m["class"]]} for m in members],
      os.path.join(out, f"per_class_auroc_{name}.png"),
      scores=("joint", "joint_kernel", "variance_sum", "entropy", "gde_z"),
    )
    if all("dir" in m for m in members):  # rows of an earlier report have no train.jsonl here
      plots.plot_diagnostics_over_training(
        members, os.path.join(out, f"diagnostics_over_training_{name}.png"), _short(s)
      )

  # The heat map compares like with like: the settings that differ from the
  # common recipe only in (beta, nu), over the most classes any setting has.
  def common(field):
    values = [s[field] for s in summary]
    return max(set(values), key=values.count)

  most_classes = max(len(s["classes"].split(",")) for s in summary)
  mean_rows = [
    {
      "vje.beta": s["vje.beta"] * (2 if s["vje.kl_convention"] == "sum" else 1),
      "vje.nu": s["vje.nu"],
      "mean_auroc_joint": s["joint"] / 100,
    }
    for s in summary
    if s["vje.free_bits"] == 0
    and s["setting"] not in ("paper_recipe", "paper_lr")
    and len(s["classes"].split(",")) == most_classes
    and all(
      s[f] == common(f)
      for f in ("model.width_multiplier", "num_epochs", "num_train_steps", "optim.base_learning_rate", "batch_size")
    )
  ]
  if mean_rows:
    plots.plot_auroc_heatmap(
      mean_rows, os.path.join(out, "heatmap_beta_nu_joint_study.png"), "vje.beta", "vje.nu", score="joint"
    )
  return summary


def define(values) -> None:
  flags.DEFINE_string(
    "root", None, "the study's root (one sub-directory per setting); none: --previous_rows only", flag_values=values
  )
  flags.DEFINE_string("out", None, "where the tables and plots go", flag_values=values)
  flags.DEFINE_string("raw_pixel_reference", None, "raw_pixel_reference.md of the same protocol", flag_values=values)
  flags.DEFINE_string(
    "previous_rows",
    None,
    "an earlier posterior_study.jsonl whose rows (by setting and class) join the report",
    flag_values=values,
  )
  flags.DEFINE_string(
    "sweep_rows",
    None,
    "instead: a one-class sweep's results.jsonl, whose results.md, summary.md and figures are written to --out",
    flag_values=values,
  )
  flags.DEFINE_list(
    "class_names", list(FASHION_MNIST_CLASSES), "the classes' names, for --sweep_rows's figures", flag_values=values
  )
  flags.mark_flag_as_required("out", flag_values=values)


def report(values) -> list[dict[str, Any]]:
  if values.sweep_rows:
    from studies.one_class.study import write_tables

    if values.root or values.previous_rows:
      raise cli.StudyError("--sweep_rows makes a sweep's tables alone: drop --root and --previous_rows")
    return write_tables(values.sweep_rows, values.out, values.class_names)
  summary = write_report(values.root, values.out, values.raw_pixel_reference, values.previous_rows)
  for s in summary:
    print(
      f"{_short(s)} classes {s['classes']}: joint {s['joint']:.1f} variance_sum {s['variance_sum']:.1f} "
      f"entropy {s['entropy']:.1f} gde_z {s['gde_z']:.1f} test_active_units {s['test_active_units']:.1f}"
    )
  return summary


def main(argv=None):
  return cli.run("studies.one_class.report", define, report, argv)


if __name__ == "__main__":
  main()
