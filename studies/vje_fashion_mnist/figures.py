"""The figures of the VJE-on-Fashion-MNIST study, made from committed logs:
the training curves of the 10-epoch run (``results/vje_fashion_mnist/train.jsonl``)
and the k-NN accuracy over training of VJE's same-budget run
(``results/compare_fashion_mnist/vje_eval.jsonl``, VJE Fig. 3).

  python -m studies.vje_fashion_mnist.figures --out results/vje_fashion_mnist
"""

from __future__ import annotations

import os

from absl import flags

from studies import cli
from studies.plots import plot_knn_over_training, plot_training_curves

TITLE = "VJE, Fashion-MNIST, ResNet-18 x0.25 (CIFAR stem), 10 epochs, batch 256"
#: The k-NN curves of VJE Fig. 3: on z and on the posterior mean mu, k = 30 and weighted k = 200.
KNN_METRICS = ("knn30_z", "knn30_mu", "knn200w_z", "knn200w_mu")


def write_figures(train_rows: str, eval_rows: str, out: str) -> None:
  """``training_curves.png`` (from ``train_rows``, a train.jsonl) and
  ``knn_over_training.png`` (from ``eval_rows``, an eval.jsonl) into ``out``."""
  os.makedirs(out, exist_ok=True)
  plot_training_curves(train_rows, os.path.join(out, "training_curves.png"), TITLE)
  plot_knn_over_training({"VJE": eval_rows}, os.path.join(out, "knn_over_training.png"), KNN_METRICS, every_metric=True)


def define(values) -> None:
  flags.DEFINE_string(
    "train_rows", "results/vje_fashion_mnist/train.jsonl", "the 10-epoch run's train.jsonl", flag_values=values
  )
  flags.DEFINE_string(
    "eval_rows",
    "results/compare_fashion_mnist/vje_eval.jsonl",
    "the same-budget run's eval.jsonl (k-NN after every epoch)",
    flag_values=values,
  )
  flags.DEFINE_string("out", None, "where the PNGs go", flag_values=values)
  flags.mark_flag_as_required("out", flag_values=values)


def main(argv=None):
  return cli.run(
    "studies.vje_fashion_mnist.figures",
    define,
    lambda values: write_figures(values.train_rows, values.eval_rows, values.out),
    argv,
  )


if __name__ == "__main__":
  main()
