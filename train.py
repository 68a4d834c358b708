"""Pretrain an encoder with any gjax method.

  python train.py --config configs/vje_fashion_mnist.py --workdir workdirs/run
  python train.py --config configs/vje_fashion_mnist.py:smoke --workdir /tmp/smoke \
      --config.vje.nu=1.0 --config.batch_size=64

It prints one progress line per log window (the loss, a few key metrics, speed
and ETA; every metric goes to <workdir>/train.jsonl and TensorBoard), then what
it wrote where and the eval.py command that evaluates the run.
"""

import logging
import sys

from gjax.cli import eval_command, run_with_config


def train(config, workdir):
  from gjax.eval import train_and_evaluate  # after flag parsing: jax starts here (evaluation during training)

  summary = train_and_evaluate(config, workdir)
  if summary["final_step"] == summary["total_steps"]:
    logging.getLogger("gjax.train").info("evaluate it: %s", eval_command(sys.argv))


if __name__ == "__main__":
  run_with_config(train, "Directory for checkpoints, metrics and logs (resumes from it).")
