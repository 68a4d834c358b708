"""What ``train.py``, ``eval.py`` and the scripts share: the two flags, the log
set-up, and loading a ``file.py[:variant]`` config outside of flags."""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Callable

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags


def load_config(spec: str):
  """``get_config(variant)`` of the config file named by ``path.py[:variant]``."""
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("gjax_loaded_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant)


def run_with_config(action: Callable[[object, str], object], workdir_help: str) -> None:
  """Defines ``--config`` (a config file, overridable as ``--config.x=y``) and
  ``--workdir``, then runs ``action(config, workdir)`` under ``absl.app``."""
  main_module = sys.argv[0]  # so that --help lists the flags as the script's own
  config_flag = config_flags.DEFINE_config_file(
      "config", None, "Path to a config file (file.py[:variant]).", lock_config=True)
  flags.FLAGS.register_flag_by_module(main_module, flags.FLAGS["config"])
  workdir_flag = flags.DEFINE_string("workdir", None, workdir_help, module_name=main_module)
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
    action(config_flag.value, workdir_flag.value)

  app.run(main)
