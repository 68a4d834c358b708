"""Plots written next to results (matplotlib, PNG).

  python -m gjax.eval.plots WORKDIR OUT.png   # training curves of a run
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gjax.train.metrics import read_metrics  # noqa: E402

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
  fig, axes = plt.subplots((len(present) + cols - 1) // cols, cols, figsize=(4 * cols, 3 * ((len(present) + cols - 1) // cols)))
  epochs = [r.get("epoch", r["step"]) for r in rows]
  for ax, (key, label) in zip(axes.ravel(), present):
    ax.plot(epochs, [float(r[key]) for r in rows])
    ax.set_title(label)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
  for ax in axes.ravel()[len(present):]:
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


def plot_over_training(runs: dict[str, str], out_png: str, metric, ylabel: str, scale: float = 1.0,
                       every_metric: bool = False, skip_missing: bool = False) -> bool:
  """A logged quantity against the epoch for ``{label: jsonl path}`` (eval.jsonl or train.jsonl).

  ``metric`` is a name or a sequence of names; each run uses the first one it
  logged, or with ``every_metric`` each one it logged. A run that logged none
  is an error, or left out with ``skip_missing`` (no file when no run is left).
  Returns whether the plot was written."""
  metrics = (metric,) if isinstance(metric, str) else tuple(metric)
  fig, ax = plt.subplots(figsize=(6.5 + (2.5 if len(runs) > 4 else 0), 4.2))
  ax.set_prop_cycle(color=run_colors(len(runs)))
  for label, path in runs.items():
    logged = read_metrics(path)
    names = [m for m in metrics if any(m in r for r in logged)]
    if not names:
      if skip_missing:
        continue
      raise ValueError(f"{path} has none of the metrics {metrics}")
    for name in names if every_metric else names[:1]:
      rows = [r for r in logged if name in r]
      ax.plot([r.get("epoch", r["step"]) for r in rows], [scale * r[name] for r in rows],
              marker="o" if len(rows) < 30 else None, label=label if len(metrics) == 1 else f"{label} ({name})")
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
  plot_over_training(runs, out_png, metrics,
                     f"{metrics[0]} accuracy (%)" if len(metrics) == 1 else "k-NN accuracy (%)", 100.0, every_metric)


SAMPLING_PANELS = (("heldout_nll_per_dim", "held-out NLL (nats/dim)"), ("recall", "k-NN recall"),
                   ("dispersion", "dispersion (1 = matched)"))


def _sampler_of(key: str, metric: str) -> str:
  """``sampling_learned_density_recall`` -> ``learned_density`` (for ``metric="recall"``)."""
  return key[len("sampling_"):-len(metric) - 1]


def plot_density_over_training(runs: dict[str, str], out_png: str) -> None:
  """The ``sampling`` evaluator's numbers over training for ``{label: eval.jsonl}``:
  held-out NLL, recall and dispersion of the learned density (solid) against
  the Gaussian and the GMM fitted afterwards to the same embeddings (dashed,
  dotted) at each evaluation (GJE issue: do the densities lag the embeddings?)."""
  fig, axes = plt.subplots(1, len(SAMPLING_PANELS), figsize=(5 * len(SAMPLING_PANELS), 3.8))
  styles = {"learned_density": "-", "gaussian_fitted_afterwards": "--"}
  for color, (label, path) in zip(run_colors(len(runs)), runs.items()):
    logged = [r for r in read_metrics(path) if "sampling_learned_density_recall" in r]
    if not logged:
      raise ValueError(f"{path} has no sampling_learned_density_* rows (run with the sampling evaluator online)")
    for ax, (metric, title) in zip(axes, SAMPLING_PANELS):
      samplers = sorted({_sampler_of(k, metric) for k in logged[0]
                         if k.startswith("sampling_") and k.endswith("_" + metric) and "train_mode" not in k
                         and "floor" not in k})
      for sampler in samplers:
        rows = [r for r in logged if f"sampling_{sampler}_{metric}" in r]
        ax.plot([r.get("epoch", r["step"]) for r in rows], [r[f"sampling_{sampler}_{metric}"] for r in rows],
                styles.get(sampler, ":"), color=color, marker="o", markersize=3,
                label=f"{label}: {sampler.replace('_', ' ')}")
      ax.set_title(title)
      ax.set_xlabel("epoch")
      ax.grid(alpha=0.3)
  axes[-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
  fig.tight_layout()
  fig.savefig(out_png, dpi=100)
  plt.close(fig)


def plot_per_class_auroc(rows: list[dict], out_png: str, class_names=None,
                         scores=("joint", "variance_sum", "entropy")) -> None:
  """Grouped bars: AUROC of each score for each normal class (one-class protocol)."""
  import numpy as np

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


def plot_auroc_heatmap(summary_rows: list[dict], out_png: str, rows_field: str, columns_field: str,
                       score: str = "joint") -> None:
  """Mean AUROC over classes on the grid of two swept config fields (e.g. VJE
  Fig. 4's beta x nu: ``rows_field`` / ``columns_field`` are the dotted names)."""
  import numpy as np

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


if __name__ == "__main__":
  if len(sys.argv) not in (3, 4):
    sys.exit("usage: python -m gjax.eval.plots WORKDIR OUT.png [TITLE]")
  plot_training_curves(f"{sys.argv[1]}/train.jsonl", sys.argv[2], sys.argv[3] if len(sys.argv) == 4 else "")


def plot_alignment_panels(train, fitted: dict, labels, contexts, out_png: str, title: str,
                          samples_per_context: int = 40, seed: int = 0) -> None:
  """GJE Fig. 4: training pairs in grey, each method's predictive samples at a
  grid of contexts in colour, one panel per method."""

  rng = np.random.default_rng(seed)
  columns = 3
  rows = -(-len(fitted) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), sharex=True, sharey=True)
  for ax, (method, predictive), label in zip(np.ravel(axes), fitted.items(), labels):
    ax.scatter(train.x, train.y, s=2, c="0.75", label="data")
    samples = predictive(contexts).sample(samples_per_context, rng)
    ax.scatter(np.repeat(contexts, samples_per_context), samples.ravel(), s=3, c="C3", alpha=0.5,
               label="predictive samples")
    ax.set_title(label, fontsize=10)
  for ax in np.ravel(axes)[len(fitted):]:
    ax.axis("off")
  np.ravel(axes)[0].legend(loc="lower left", fontsize=7, markerscale=3)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)


def plot_mdn_routing(name: str, predictive, out_png: str) -> None:
  """GJE Fig. 5: the MDN's mixing weights, means (against the true branches)
  and standard deviations (against the noise std) over the context."""
  from gjax.data.multimodal import NOISE_STD, branch_values


  x = np.linspace(-1, 1, 201)
  pred = predictive(x)
  weights = np.exp(pred.logits - pred.logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  for k in range(weights.shape[1]):
    axes[0].plot(x, weights[:, k], label=f"component {k}")
    axes[1].plot(x, pred.means[:, k], label=f"mean {k}")
    axes[2].plot(x, np.sqrt(pred.var[:, k]), label=f"std {k}")
  branches = branch_values(name, x)
  axes[0].axhline(1 / branches.shape[1], ls="--", c="k", lw=1, label=f"1/{branches.shape[1]}")
  for j in range(branches.shape[1]):
    axes[1].plot(x, branches[:, j], "k--", lw=1, label="true branches" if j == 0 else None)
  axes[2].axhline(NOISE_STD, ls="--", c="k", lw=1, label=f"noise std {NOISE_STD}")
  axes[2].set_yscale("log")
  for ax, title in zip(axes, ("mixing weights π_k(x)", "means μ_k(x)", "standard deviations σ_k(x)")):
    ax.set_title(title)
    ax.set_xlabel("context x")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)
