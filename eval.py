"""Evaluate the latest checkpoint of a gjax run (k-NN on z and mu, posterior statistics).

  python eval.py --config configs/vje_fashion_mnist.py --workdir workdirs/run
  python eval.py --config configs/vje_fashion_mnist.py:smoke --workdir /tmp/smoke

The config is the one the run was trained with (train.py prints this command at
its end). It writes <workdir>/eval_results.json and prints the same results as
a table, accuracies and AUROCs in percent.
"""

import logging

from gjax.cli import results_table, run_with_config


def evaluate(config, workdir):
  from gjax.eval import evaluate as evaluate_run  # after flag parsing: jax starts here

  results = evaluate_run(config, workdir)
  logging.getLogger("gjax.eval").info("%s", results_table(results))


if __name__ == "__main__":
  # A signal ends eval.py non-zero, its results unwritten (an earlier eval_results.json is left as it was).
  run_with_config(
    evaluate, "The training run's directory (checkpoints read, eval_results.json written).", interrupt_is_failure=True
  )
