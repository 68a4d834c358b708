"""The figures of the VJE-on-Fashion-MNIST study, made from its committed logs:
the training curves of the 10-epoch run (``train.jsonl``) and the k-NN
accuracy over training of the same-budget run (``knn_over_training_eval.jsonl``,
VJE Fig. 3).

  python -m studies.vje_fashion_mnist.figures --rows results/vje_fashion_mnist --out results/vje_fashion_mnist
"""

from __future__ import annotations

import os

from absl import flags

from studies import cli
from studies.plots import plot_knn_over_training, plot_training_curves

TITLE = "VJE, Fashion-MNIST, ResNet-18 x0.25 (CIFAR stem), 10 epochs, batch 256"
#: The k-NN curves of VJE Fig. 3: on z and on the posterior mean mu, k = 30 and weighted k = 200.
KNN_METRICS = ("knn30_z", "knn30_mu", "knn200w_z", "knn200w_mu")


def write_figures(rows: str, out: str) -> None:
  """``training_curves.png`` and ``knn_over_training.png`` into ``out`` from the logs in ``rows``."""
  os.makedirs(out, exist_ok=True)
  plot_training_curves(os.path.join(rows, "train.jsonl"), os.path.join(out, "training_curves.png"), TITLE)
  plot_knn_over_training({"VJE": os.path.join(rows, "knn_over_training_eval.jsonl")},
                         os.path.join(out, "knn_over_training.png"), KNN_METRICS, every_metric=True)


def define(values) -> None:
  flags.DEFINE_string("rows", "results/vje_fashion_mnist", "the folder of train.jsonl and "
                      "knn_over_training_eval.jsonl", flag_values=values)
  flags.DEFINE_string("out", None, "where the PNGs go", flag_values=values)
  flags.mark_flag_as_required("out", flag_values=values)


def main(argv=None):
  return cli.run("studies.vje_fashion_mnist.figures", define, lambda values: write_figures(values.rows, values.out),
                 argv)


if __name__ == "__main__":
  main()
