"""What a run prints: the progress line (the loss, a few key metrics, speed,
ETA, within one terminal line), the eval.py command train.py ends with, and
eval.py's table in percent. The tiny runs that print them are in test_train.py."""

import shlex

import pytest

from gjax.cli import eval_command, results_table
from gjax.train import progress

# The metrics some methods report (train_step's, as logged to train.jsonl).
BYOL = (
  "grad_norm",
  "loss",
  "nonfinite",
  "online_target_cosine",
  "param_norm",
  "target_momentum",
  "z_effective_rank",
  "z_norm_mean",
  "z_std_mean",
  "z_std_min",
)
SIMCLR = ("grad_norm", "loss", "nonfinite", "param_norm", "z_effective_rank", "z_norm_mean", "z_std_mean", "z_std_min")
VJE = (
  "active_units",
  "directional",
  "grad_norm",
  "kl",
  "kl_loss",
  "loss",
  "mu_cosine",
  "nll",
  "nonfinite",
  "param_norm",
  "radial",
  "var_cv",
  "var_mean",
  "z_cosine",
  "z_dead_channels",
  "z_norm_mean",
  "z_std_mean",
  "z_std_min",
)


@pytest.mark.parametrize(
  "names,shown",
  [
    (BYOL, ["loss", "z_effective_rank", "z_std_min"]),
    (SIMCLR, ["loss", "z_effective_rank", "z_std_min"]),
    (VJE, ["loss", "nll", "kl", "z_std_min"]),
  ],
)
def test_the_progress_line_shows_the_loss_and_at_most_three_key_metrics(names, shown):
  metrics = {name: 0.5 for name in names}
  assert progress.key_metrics(metrics) == shown
  line = progress.progress_line(120, 1000, metrics, 1234.4, 3725.0)
  assert line == f"step 120/1000 (12.0%) {' '.join(f'{n} 0.5' for n in shown)} | 1234 img/s | ETA 1:02:05"


def test_the_progress_line_fits_one_terminal_line_and_keeps_the_loss():
  metrics = {
    "loss": -12345.678,
    "alignment": -0.99991234,
    "invariance": 1.5e-7,
    "z_effective_rank": 123.456,
    "z_std_min": 0.5,
  }
  line = progress.progress_line(4_000_000, 4_000_000, metrics, 12345.0, 123 * 3600.0)
  assert len(line) <= progress.PROGRESS_WIDTH == 120 - len("12:34:56 gjax.train] ")
  # The key metrics that did not fit are left out (they are in train.jsonl), the loss stays.
  assert line == "step 4000000/4000000 (100.0%) loss -1.235e+04 alignment -0.9999 | 12345 img/s | ETA 123:00:00"
  unknown = progress.progress_line(2, 4, {"loss": 1.0}, float("nan"), float("nan"))
  assert unknown == "step 2/4 (50.0%) loss 1 | ? img/s | ETA ?"


def test_train_py_ends_with_the_eval_command_of_the_same_flags():
  argv = [
    "/repo/train.py",
    "--config",
    "configs/vje_fashion_mnist.py:smoke",
    "--workdir=/tmp/a run",
    "--config.eval.run_only=('knn',)",
  ]
  command = eval_command(argv)
  assert command == (
    "python /repo/eval.py --config configs/vje_fashion_mnist.py:smoke '--workdir=/tmp/a run' "
    "'--config.eval.run_only=('\"'\"'knn'\"'\"',)'"
  )
  assert shlex.split(command) == ["python", "/repo/eval.py", *argv[1:]]
  assert eval_command(["train.py", "--workdir", "w"]) == "python eval.py --workdir w"


def test_eval_results_table_shows_accuracies_and_aurocs_in_percent():
  results = {
    "step": 4,
    "num_train": 2048,
    "num_test": 512,
    "knn20_z": 0.123,
    "knn200w_mu": 0.5,
    "linear_top1_h": 0.9,
    "linear_aug_top5_h": 0.25,
    "linear_aug_final_loss": 1.2345,
    "test_z_effective_rank": 3.21,
    "auroc_joint": 0.77,
    "sampling_gibbs_precision": 0.125,
    "sampling_gibbs_mmd2": 0.0123,
    "wall_seconds": 12.3,
  }
  table = results_table(results).splitlines()
  assert table[0] == "results at step 4 (2048 train / 512 test images, 12 s):"
  rows = {row.split()[0]: " ".join(row.split()[1:]) for row in table[1:]}
  assert rows == {
    "metric": "value",
    "knn20_z": "12.3 %",
    "knn200w_mu": "50.0 %",
    "linear_top1_h": "90.0 %",
    "linear_aug_top5_h": "25.0 %",
    "linear_aug_final_loss": "1.234",
    "test_z_effective_rank": "3.21",
    "auroc_joint": "77.0 %",
    "sampling_gibbs_precision": "12.5 %",
    "sampling_gibbs_mmd2": "0.0123",
  }
