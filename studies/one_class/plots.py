"""The one-class study's plots (matplotlib, PNG): per-class AUROC bars, the
mean AUROC over a grid of two config fields, the diagnostics over training."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gjax.train.metrics import read_metrics  # noqa: E402

#: Curves of the diagnostics-over-training plot.
CURVES = ("active_units", "mu_spread_ratio", "mu_cosine", "directional_kernel", "directional_log_det", "kl")


def plot_per_class_auroc(
  rows: list[dict], out_png: str, class_names=None, scores=("joint", "variance_sum", "entropy")
) -> None:
  """Grouped bars: AUROC of each score for each normal class (one-class protocol)."""
  classes = [r["dataset.train_classes"][0] for r in rows]
  fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
  width = 0.8 / len(scores)
  for i, score in enumerate(scores):
    ax.bar(np.arange(len(rows)) + i * width, [100 * r[f"auroc_{score}"] for r in rows], width, label=score)
  ax.set_xticks(np.arange(len(rows)) + width * (len(scores) - 1) / 2)
  ax.set_xticklabels([class_names[c] if class_names else str(c) for c in classes], rotation=30, ha="right")
  ax.set_ylabel("AUROC (%)")
  ax.set_ylim(0, 100)
  ax.axhline(50, color="grey", linestyle="--", linewidth=1, label="chance")
  ax.grid(axis="y", alpha=0.3)
  ax.legend(ncol=3, fontsize="small", loc="lower right")
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)


def plot_auroc_heatmap(
  summary_rows: list[dict], out_png: str, rows_field: str, columns_field: str, score: str = "joint"
) -> None:
  """Mean AUROC over classes on the grid of two swept config fields (e.g. VJE
  Fig. 4's beta x nu: ``rows_field`` / ``columns_field`` are the dotted names)."""
  betas = sorted({r[rows_field] for r in summary_rows})
  nus = sorted({r[columns_field] for r in summary_rows})
  grid = np.full((len(betas), len(nus)), np.nan)
  for r in summary_rows:
    grid[betas.index(r[rows_field]), nus.index(r[columns_field])] = 100 * r[f"mean_auroc_{score}"]
  fig, ax = plt.subplots(figsize=(1.2 * len(nus) + 2, 0.8 * len(betas) + 1.5))
  image = ax.imshow(grid, cmap="viridis", aspect="auto")
  for i in range(len(betas)):
    for j in range(len(nus)):
      if np.isfinite(grid[i, j]):
        ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="white")
  ax.set_xticks(range(len(nus)), [str(n) for n in nus])
  ax.set_yticks(range(len(betas)), [str(b) for b in betas])
  ax.set_xlabel(columns_field.rpartition(".")[2])
  ax.set_ylabel(rows_field.rpartition(".")[2])
  fig.colorbar(image, ax=ax, label=f"mean AUROC, {score} (%)")
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)


def plot_diagnostics_over_training(rows: list[dict[str, Any]], out_png: str, title: str) -> None:
  """One panel per diagnostic of :data:`CURVES`, one line per normal class."""
  fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
  for row in rows:
    metrics = read_metrics(os.path.join(row["dir"], "train.jsonl"))
    steps = [m["step"] for m in metrics]
    for ax, key in zip(axes.flat, CURVES):
      ax.plot(steps, [m.get(key, np.nan) for m in metrics], label=f"class {row['class']}")
  for ax, key in zip(axes.flat, CURVES):
    ax.set_title(key)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes.flat[0].legend(fontsize="small")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out_png, dpi=100)
  plt.close(fig)
