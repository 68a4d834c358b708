"""Plots written next to results (matplotlib, PNG).

  python -m gjax.eval.plots WORKDIR OUT.png   # training curves of a run
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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


if __name__ == "__main__":
  if len(sys.argv) not in (3, 4):
    sys.exit("usage: python -m gjax.eval.plots WORKDIR OUT.png [TITLE]")
  plot_training_curves(f"{sys.argv[1]}/train.jsonl", sys.argv[2], sys.argv[3] if len(sys.argv) == 4 else "")
