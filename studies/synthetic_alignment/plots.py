"""The synthetic alignment study's figures (matplotlib, PNG): GJE Figs. 4 and 5."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gjax.data.multimodal import NOISE_STD, branch_values  # noqa: E402


def plot_alignment_panels(
  train, fitted: dict, labels, contexts, out_png: str, title: str, samples_per_context: int = 40, seed: int = 0
) -> None:
  """GJE Fig. 4: training pairs in grey, each method's predictive samples at a
  grid of contexts in colour, one panel per method."""

  rng = np.random.default_rng(seed)
  columns = 3
  rows = -(-len(fitted) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), sharex=True, sharey=True)
  for ax, predictive, label in zip(np.ravel(axes), fitted.values(), labels):
    ax.scatter(train.x, train.y, s=2, c="0.75", label="data")
    samples = predictive(contexts).sample(samples_per_context, rng)
    ax.scatter(
      np.repeat(contexts, samples_per_context), samples.ravel(), s=3, c="C3", alpha=0.5, label="predictive samples"
    )
    ax.set_title(label, fontsize=10)
  for ax in np.ravel(axes)[len(fitted) :]:
    ax.axis("off")
  np.ravel(axes)[0].legend(loc="lower left", fontsize=7, markerscale=3)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)


def plot_mdn_routing(name: str, predictive, out_png: str) -> None:
  """GJE Fig. 5: the MDN's mixing weights, means (against the true branches)
  and standard deviations (against the noise std) over the context."""
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
