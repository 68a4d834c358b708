"""Pretrain an encoder with any gjax method.

  python train.py --config configs/vje_fashion_mnist.py --workdir workdirs/run
  python train.py --config configs/vje_fashion_mnist.py:smoke --workdir /tmp/smoke \
      --config.vje.nu=1.0 --config.batch_size=64
"""

import logging

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (file.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and logs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  absl_logging.set_verbosity(absl_logging.WARNING)  # library chatter (Orbax) off
  gjax_log = logging.getLogger("gjax")
  gjax_log.setLevel(logging.INFO)
  handler = logging.StreamHandler()
  handler.setFormatter(logging.Formatter("%(asctime)s %(name)s] %(message)s", "%H:%M:%S"))
  gjax_log.addHandler(handler)
  gjax_log.propagate = False
  from gjax.train import train_and_evaluate  # after flag parsing: jax starts here

  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
