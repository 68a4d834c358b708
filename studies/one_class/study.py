"""The one-class study (VJE paper Section 5.3): for each class ``c`` one model
is pretrained on class ``c`` only (``config.dataset.train_classes = (c,)``)
and the registered ``one_class`` evaluator (:mod:`gjax.eval.one_class`)
scores every test example, the other classes' being the anomalies.

  python -m studies.one_class.study --config configs/vje_fashion_mnist.py:one_class \
      --workdir workdirs/one_class --grid vje.nu=0.5,1,3

Runs are resumable (one sub-directory per grid point and class, through
:func:`studies.sweep.run_sweep`); ``results.md`` holds the per-class rows
and ``summary.md`` the mean AUROC per grid point (:func:`write_tables`).
``--raw_pixel_reference`` scores raw pixels instead (no training), as a check
on the protocol itself.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import flags

from gjax import data as gdata
from gjax.eval.anomaly import auroc, gaussian_density_score
from gjax.eval.one_class import ONE_CLASS, SCORES, check_one_class_settings, one_class_scores
from gjax.train.input_pipeline import load_in_memory
from gjax.train.metrics import read_metrics
from studies import cli
from studies.sweep import markdown_table, parse_grid, run_sweep

#: The training diagnostics kept per row (the last logged window of train.jsonl).
TRAIN_DIAGNOSTICS = (
  "loss",
  "directional_kernel",
  "directional_log_det",
  "radial",
  "kl",
  "var_mean",
  "var_cv",
  "z_std_min",
  "active_units",
  "mu_spread_ratio",
  "mu_cosine",
  "z_cosine",
  "z_dead_channels",
)


def score_one_class(config, workdir: str) -> dict[str, float]:
  """Pretrains on ``config.dataset.train_classes`` (one class) and returns the
  ``one_class`` evaluator's results (settings: ``config.eval.evaluators.one_class``,
  else its defaults), the training diagnostics at the end of training
  (``train_*``) and the wall time of the row."""
  from gjax.eval.evaluate import train_and_evaluate
  from gjax.eval.registry import EvalContext
  from gjax.eval.splits import eval_splits
  from gjax.train.state import build_method

  start = time.time()
  settings = (
    config.eval.evaluators.one_class
    if "one_class" in config.eval.evaluators.keys()
    else ml_collections.ConfigDict(dict(ONE_CLASS.defaults))
  )
  check_one_class_settings(settings, config)
  summary = train_and_evaluate(config, workdir)
  if summary.get("preempted"):
    # A stopped run is not a result: no row is written, the sweep ends, and
    # the same command resumes this class from its checkpoint.
    raise SystemExit(
      f"one-class training in {workdir} was stopped by {summary['preempted']} at step "
      f"{summary['final_step']}; rerun the same command to resume"
    )
  train_seconds = time.time() - start
  eval_config = config.copy_and_resolve_references()
  with eval_config.unlocked():
    eval_config.eval.num_train_examples = -1  # every training image of the normal class
  context = EvalContext(
    model=build_method(config)[2],
    variables=summary["state"].variables,
    config=eval_config,
    mesh=gdata.data_mesh(),
    splits=eval_splits(eval_config),
  )
  results = one_class_scores(context, settings)
  last = read_metrics(os.path.join(workdir, "train.jsonl"))[-1]
  return (
    results
    | {"final_loss": last["loss"]}
    | {f"train_{k}": last[k] for k in TRAIN_DIAGNOSTICS if k in last}
    | {"train_seconds": train_seconds, "wall_seconds": time.time() - start}
  )


def run_one_class(
  config, root: str, grid: Mapping[str, Sequence] | None = None, classes: Sequence[int] | None = None
) -> dict[str, Any]:
  """All classes (or ``classes``) at every point of ``grid``; writes the tables."""
  if config.method != "vje":
    raise ValueError(f"the one-class scores are VJE's posterior scores; config.method={config.method!r}")
  if classes is None:
    _, labels = load_in_memory(config, "test")
    classes = sorted(np.unique(labels).tolist())
  full_grid = dict(grid or {})
  full_grid["dataset.train_classes"] = [(int(c),) for c in classes]
  rows = run_sweep(config, full_grid, root, score_one_class)
  summary_rows = summary_table(rows, list(grid or {}))
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write(markdown_table(summary_rows))
  with open(os.path.join(root, "summary.json"), "w") as f:
    json.dump(summary_rows, f, indent=2, default=str)
  return {"rows": rows, "summary": summary_rows}


def summary_table(rows: list[dict[str, Any]], grid_fields: Sequence[str]) -> list[dict[str, Any]]:
  """The mean AUROC of every score over the classes, per point of the grid of
  ``grid_fields`` (in the order the points first appear in ``rows``)."""
  points = list(dict.fromkeys(tuple(r[f] for f in grid_fields) for r in rows))
  summary = []
  for values in points:
    point = dict(zip(grid_fields, values))
    matching = [r for r in rows if all(r[k] == v for k, v in point.items())]
    summary.append(
      {
        **point,
        **{
          f"mean_auroc_{s}": float(np.mean([r[f"auroc_{s}"] for r in matching]))
          for s in SCORES
          if f"auroc_{s}" in matching[0]
        },
        "classes": len(matching),
      }
    )
  return summary


#: Scores of the per-class bars and of the heat maps of a sweep's figures.
BAR_SCORES = ("joint", "variance_sum", "entropy", "gde_z", "gde_mu")
HEATMAP_SCORES = ("joint", "variance_sum", "gde_z")


def write_tables(rows_path: str, out: str, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """``results.md`` and ``summary.md`` of a finished study made again from its
  ``results.jsonl`` into ``out``: the grid fields are the columns before
  ``dataset.train_classes`` (the order :func:`run_one_class` writes). Also its
  figures: per grid point the per-class AUROC bars
  (``per_class_auroc_<varying fields>.png``, e.g. ``per_class_auroc_nu0.5.png``)
  and, for a grid of two fields, the heat map of each score of
  :data:`HEATMAP_SCORES` (``heatmap_beta_nu_<score>.png``)."""
  from studies.one_class.plots import plot_auroc_heatmap, plot_per_class_auroc
  from studies.sweep import read_rows

  rows = read_rows(rows_path)
  if not rows or "dataset.train_classes" not in rows[0]:
    raise cli.StudyError(f"{rows_path} holds no one-class rows (no dataset.train_classes column)")
  columns = list(rows[0])
  summary = summary_table(rows, columns[: columns.index("dataset.train_classes")])
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(markdown_table(rows))
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(markdown_table(summary))
  fields = columns[: columns.index("dataset.train_classes")]
  varying = [f for f in fields if len({r[f] for r in rows}) > 1]
  for point in summary:
    members = [r for r in rows if all(r[f] == point[f] for f in fields)]
    name = "".join(f"{f.rpartition('.')[2]}{point[f]:g}" for f in varying) or "all"
    plot_per_class_auroc(
      members,
      os.path.join(out, f"per_class_auroc_{name}.png"),
      class_names,
      scores=tuple(s for s in BAR_SCORES if f"auroc_{s}" in members[0]),
    )
  if len(fields) == 2:
    leaves = "_".join(f.rpartition(".")[2] for f in fields)
    for score in HEATMAP_SCORES:
      plot_auroc_heatmap(summary, os.path.join(out, f"heatmap_{leaves}_{score}.png"), *fields, score=score)
  return summary


def raw_pixel_reference(config, classes: Sequence[int] | None = None, knn_k: int = 5) -> list[dict[str, float]]:
  """The protocol with no learned features, as a check on the protocol itself:
  per normal class, an RBF OC-SVM (scikit-learn, ``gamma="scale"``,
  ``nu=0.1``; the published "raw-pixel OC-SVM" row), a Gaussian density
  (:func:`gaussian_density_score`) and the mean distance to the ``knn_k``
  nearest normal training images, all on raw pixels scaled to [0, 1]."""
  from sklearn.svm import OneClassSVM

  test_x, test_y = load_in_memory(config, "test")
  if classes is None:
    classes = sorted(np.unique(test_y).tolist())
  flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0
  test = flat(test_x)
  rows = []
  for c in classes:
    config = config.copy_and_resolve_references()
    config.dataset.train_classes = (int(c),)
    train = flat(load_in_memory(config, "train")[0])
    is_anomaly = test_y != c
    svm = OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(train)
    dist2 = np.sum(test**2, 1)[:, None] - 2 * test @ train.T + np.sum(train**2, 1)[None, :]
    knn = np.mean(np.sqrt(np.maximum(np.partition(dist2, knn_k, axis=1)[:, :knn_k], 0)), axis=1)
    rows.append(
      {
        "class": int(c),
        "auroc_ocsvm": auroc(-svm.decision_function(test), is_anomaly),
        "auroc_gde": auroc(np.asarray(gaussian_density_score(train, test)), is_anomaly),
        f"auroc_knn{knn_k}": auroc(knn, is_anomaly),
      }
    )
  return rows


def define(values) -> None:
  flags.DEFINE_multi_string("grid", [], "field=v1,v2,... (repeatable), e.g. vje.nu=0.5,1,3", flag_values=values)
  flags.DEFINE_list("classes", None, "normal classes to run (default: all)", flag_values=values)
  flags.DEFINE_bool(
    "raw_pixel_reference",
    False,
    "instead of training, score raw pixels (OC-SVM, Gaussian, k-NN) into WORKDIR/raw_pixel_reference.md",
    flag_values=values,
  )


def run_study(values, config, workdir: str):
  classes = [int(c) for c in values.classes] if values.classes else None
  if not values.raw_pixel_reference:
    return run_one_class(config, workdir, parse_grid(values.grid), classes)
  rows = raw_pixel_reference(config, classes)
  means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "class"}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "raw_pixel_reference.md"), "w") as f:
    f.write(markdown_table(rows + [{"class": "mean", **means}]))
  print(json.dumps(means))
  return rows


def main() -> None:
  cli.run_with_config(define, run_study, "Root directory of the protocol (one sub-directory per grid point and class).")


if __name__ == "__main__":
  main()
