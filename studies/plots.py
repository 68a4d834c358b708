"""Plots the studies share (matplotlib, PNG): a run's training curves, and a
logged quantity over training for several runs. The studies' own plots are in
their folders.

  python -m studies.plots --workdir workdirs/vje_fmnist --out curves.png   # training curves of a run
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from gjax.train.metrics import read_metrics  # noqa: E402
from studies import cli  # noqa: E402

CURVES = (
  ("loss", "loss (Eq. 38)"),
  ("directional", "directional NLL"),
  ("radial", "radial NLL"),
  ("kl", "KL"),
  ("var_mean", "posterior Var mean"),
  ("var_cv", "posterior Var CV"),
  ("z_std_min", "min per-dim std of z"),
  ("z_std_mean", "mean per-dim std of z"),
  ("learning_rate", "learning rate"),
)


def plot_training_curves(jsonl_path: str, out_png: str, title: str = "") -> None:
  """One panel per logged quantity of :data:`CURVES` against the epoch."""
  rows = read_metrics(jsonl_path)
  if not rows:
    raise ValueError(f"{jsonl_path} has no metric rows")
  present = [(k, label) for k, label in CURVES if k in rows[0]]
  cols = 3
  grid_rows = (len(present) + cols - 1) // cols
  fig, axes = plt.subplots(grid_rows, cols, figsize=(4 * cols, 3 * grid_rows))
  epochs = [r.get("epoch", r["step"]) for r in rows]
  for ax, (key, label) in zip(axes.ravel(), present):
    ax.plot(epochs, [float(r[key]) for r in rows])
    ax.set_title(label)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
  for ax in axes.ravel()[len(present) :]:
    ax.axis("off")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)


def run_colors(n: int) -> list:
  """One colour per run: matplotlib's default cycle, or tab20's when there are more than its 10."""
  default = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  return default[:n] if n <= len(default) else list(plt.get_cmap("tab20")(np.linspace(0, 1, 20))[:n])


def plot_over_training(
  runs: dict[str, str],
  out_png: str,
  metric,
  ylabel: str,
  scale: float = 1.0,
  every_metric: bool = False,
  skip_missing: bool = False,
) -> bool:
  """A logged quantity against the epoch for ``{label: jsonl path}`` (eval.jsonl or train.jsonl).

  ``metric`` is a name or a sequence of names; each run uses the first one it
  logged, or with ``every_metric`` each one it logged. A run that logged none
  is an error, or left out with ``skip_missing`` (no file when no run is left).
  Returns whether the plot was written."""
  metrics = (metric,) if isinstance(metric, str) else tuple(metric)
  fig, ax = plt.subplots(figsize=(6.5 + (2.5 if len(runs) > 4 else 0), 4.2))
  # One colour per line: a run per metric with every_metric (one run's four k-NN curves in one colour say nothing).
  ax.set_prop_cycle(color=run_colors(len(runs) * (len(metrics) if every_metric else 1)))
  for label, path in runs.items():
    logged = read_metrics(path)
    names = [m for m in metrics if any(m in r for r in logged)]
    if not names:
      if skip_missing:
        continue
      raise ValueError(f"{path} has none of the metrics {metrics}")
    for name in names if every_metric else names[:1]:
      rows = [r for r in logged if name in r]
      ax.plot(
        [r.get("epoch", r["step"]) for r in rows],
        [scale * r[name] for r in rows],
        marker="o" if len(rows) < 30 else None,
        label=label if len(metrics) == 1 else f"{label} ({name})",
      )
  if not ax.lines:
    plt.close(fig)
    return False
  ax.set_xlabel("epoch")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  if len(runs) > 4:  # many runs: the legend beside the axes, not over the curves
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
  else:
    ax.legend()
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)
  return True


def plot_knn_over_training(runs: dict[str, str], out_png: str, metric="knn30_z", every_metric: bool = False) -> None:
  """k-NN accuracy over training (VJE Fig. 3) for ``{label: eval.jsonl path}``
  (:func:`plot_over_training`; ``("knn30_h", "knn30_z")``: the backbone output
  where a projector makes it differ from z; VJE's Fig. 3 shows z and mu)."""
  metrics = (metric,) if isinstance(metric, str) else tuple(metric)
  plot_over_training(
    runs,
    out_png,
    metrics,
    f"{metrics[0]} accuracy (%)" if len(metrics) == 1 else "k-NN accuracy (%)",
    100.0,
    every_metric,
  )


def define(values) -> None:
  flags.DEFINE_string("workdir", None, "the run's directory (its train.jsonl is plotted)", flag_values=values)
  flags.DEFINE_string("out", None, "the PNG to write", flag_values=values)
  flags.DEFINE_string("title", "", "the figure's title", flag_values=values)
  flags.mark_flags_as_required(["workdir", "out"], flag_values=values)


def main(argv=None) -> None:
  cli.run(
    "studies.plots",
    define,
    lambda values: plot_training_curves(os.path.join(values.workdir, "train.jsonl"), values.out, values.title),
    argv,
  )


if __name__ == "__main__":
  main()
