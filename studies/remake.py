"""Makes every committed table and figure that comes from committed rows again,
into a scratch folder, and compares each with the committed file byte for byte.

  python -m studies.remake --out /tmp/remake

Each entry of :data:`REMAKES` is one study command (the one its README gives)
and the files it must reproduce. Exit status 1 when any file differs or is
missing. What needs run directories that are not committed (the nearest-image
pictures, the one-class diagnostics over training, the raw-pixel reference,
which needs the data set) is listed in each study's README instead.
"""

from __future__ import annotations

import filecmp
import json
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

from absl import flags

from studies import cli

COMPARE = "results/compare_fashion_mnist"
COMPARE_VIT = "results/compare_vit_fashion_mnist"
ONE_CLASS = "results/one_class_fashion_mnist"
SYNTHETIC = "results/synthetic_alignment"
VJE = "results/vje_fashion_mnist"


class Remake(NamedTuple):
  """A study command (``main(argv)`` of ``module``; ``{out}`` in an argument is the scratch folder) and the
  committed files it writes there (``{out}/<name>`` against ``<committed>/<name>``)."""

  module: str
  argv: Callable[[str], list[str]]
  committed: str
  files: tuple[str, ...]


def compare_rows(folder: str) -> str:
  """The rows of a comparison table, in its order."""
  with open(os.path.join(folder, "results.jsonl")) as f:
    return ",".join(json.loads(line)["method"] for line in f if line.strip())


def compare_report(folder: str) -> Remake:
  """The same-budget table of ``folder`` and its over-training plots, from its committed rows and logs."""
  return Remake(
    "studies.compare.report",
    lambda out: [
      "--out",
      out,
      "--methods",
      compare_rows(folder),
      "--previous_rows",
      f"{folder}/results.jsonl",
      "--previous_logs",
      folder,
    ],
    folder,
    ("results.md", "results.jsonl", "knn_over_training.png", "effective_rank_over_training.png"),
  )


#: The runs drawn in sampling_over_training.png (trained with the sampling evaluator online), with their logs.
SAMPLING_LOGS = (
  ("gje_em_logdet", "gje_em_logdet_eval.jsonl"),
  ("gmje_full_em_logdet", "gmje_full_em_logdet_eval.jsonl"),
  ("gmje_em_logdet_step650", "gmje_em_logdet_stopped_eval.jsonl"),
  ("gmje_k64_em_step294", "gmje_k64_em_stopped_eval.jsonl"),
)

REMAKES = (
  compare_report(COMPARE),
  compare_report(COMPARE_VIT),
  Remake(
    "studies.compare.sampling",
    lambda out: [
      "--out",
      f"{out}/sampling.md",
      "--previous_rows",
      f"{COMPARE}/sampling.jsonl",
      "--previous_components",
      f"{COMPARE}/sampling_components.jsonl",
      *[a for name, log in SAMPLING_LOGS for a in ("--previous_logs", f"{name}={COMPARE}/{log}")],
    ],
    COMPARE,
    (
      "sampling.md",
      "sampling.jsonl",
      "sampling_components.md",
      "sampling_components.jsonl",
      "sampling_over_training.png",
    ),
  ),
  Remake(
    "studies.compare.sampling",
    lambda out: [
      "--out",
      f"{out}/sampling_gje_diagnosis.md",
      "--previous_rows",
      f"{COMPARE}/sampling_gje_diagnosis.jsonl",
    ],
    COMPARE,
    ("sampling_gje_diagnosis.md", "sampling_gje_diagnosis.jsonl"),
  ),
  Remake(
    "studies.one_class.report",
    lambda out: [
      "--out",
      out,
      "--raw_pixel_reference",
      f"{ONE_CLASS}/raw_pixel_reference.md",
      "--previous_rows",
      f"{ONE_CLASS}/posterior_study.jsonl",
    ],
    ONE_CLASS,
    (
      "posterior_study.md",
      "posterior_study.jsonl",
      "per_class_auroc_best.png",
      "per_class_auroc_paper.png",
      "heatmap_beta_nu_joint_study.png",
    ),
  ),
  Remake(
    "studies.one_class.report",
    lambda out: ["--out", out, "--sweep_rows", f"{ONE_CLASS}/results.jsonl"],
    ONE_CLASS,
    (
      "results.md",
      "summary.md",
      "per_class_auroc_nu3.png",
      "per_class_auroc_nu1.png",
      "per_class_auroc_nu0.5.png",
      "heatmap_beta_nu_joint.png",
      "heatmap_beta_nu_variance_sum.png",
      "heatmap_beta_nu_gde_z.png",
    ),
  ),
  Remake(
    "studies.synthetic_alignment.study",
    lambda out: ["--out", out, "--rows", f"{SYNTHETIC}/results.jsonl"],
    SYNTHETIC,
    ("results.md",),
  ),
  Remake(
    "studies.vje_fashion_mnist.figures",
    lambda out: ["--out", out],
    VJE,
    ("training_curves.png", "knn_over_training.png"),
  ),
)


def remake(out: str, remakes: Sequence[Remake] = REMAKES) -> list[tuple[str, str]]:
  """Runs every command into its own folder under ``out``; returns ``(committed file, "same" | "differs" |
  "missing")`` for each file."""
  import contextlib
  import importlib
  import io

  report = []
  for i, entry in enumerate(remakes):
    folder = os.path.join(out, f"{i}_{entry.module.rpartition('.')[2]}")
    os.makedirs(folder, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # the commands print their tables
      importlib.import_module(entry.module).main(entry.argv(folder))
    for name in entry.files:
      made, committed = os.path.join(folder, name), os.path.join(entry.committed, name)
      state = (
        "missing" if not os.path.exists(made) else "same" if filecmp.cmp(made, committed, shallow=False) else "differs"
      )
      report.append((committed, state))
  return report


def define(values) -> None:
  flags.DEFINE_string("out", None, "a scratch folder for the files made again", flag_values=values)
  flags.mark_flag_as_required("out", flag_values=values)


def run(values) -> None:
  report = remake(values.out)
  for path, state in report:
    print(f"{state:8s} {path}")
  bad = [path for path, state in report if state != "same"]
  print(f"{len(report) - len(bad)} of {len(report)} committed files made again byte for byte")
  if bad:
    raise SystemExit(1)


def main(argv=None):
  return cli.run("studies.remake", define, run, argv)


if __name__ == "__main__":
  main()
