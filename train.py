"""Pretrain an encoder with any gjax method.

  python train.py --config configs/vje_fashion_mnist.py --workdir workdirs/run
  python train.py --config configs/vje_fashion_mnist.py:smoke --workdir /tmp/smoke \
      --config.vje.nu=1.0 --config.batch_size=64
"""

from gjax.cli import run_with_config


def train(config, workdir):
  from gjax.eval import train_and_evaluate  # after flag parsing: jax starts here (evaluation during training)

  train_and_evaluate(config, workdir)


if __name__ == "__main__":
  run_with_config(train, "Directory for checkpoints, metrics and logs (resumes from it).")
