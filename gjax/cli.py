"""What ``train.py``, ``eval.py`` and the scripts share: the flags (config,
workdir, multi-host), the log set-up, ``jax.distributed`` start-up, loading
a ``file.py[:variant]`` config outside of flags, and what the scripts print
at the end (:func:`eval_command`, :func:`results_table`)."""

from __future__ import annotations

import difflib
import importlib.util
import logging
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from gjax import startup_signals


def load_config(spec: str):
  """``get_config(variant)`` of the config file named by ``path.py[:variant]``."""
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("gjax_loaded_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant)


#: Environment variables by which JAX's cluster detection recognises a multi-host
#: job (Cloud TPU VMs / pod slices, SLURM, Open MPI); see ``jax._src.clusters``.
CLUSTER_ENV_VARS = (
  "TPU_WORKER_HOSTNAMES",
  "TPU_ACCELERATOR_TYPE",
  "MEGASCALE_COORDINATOR_ADDRESS",
  "SLURM_JOB_ID",
  "OMPI_MCA_orte_hnp_uri",
)


#: ``jax.distributed.initialize`` timeouts (seconds). Start-up waits long for
#: peers that are slow to import or start (JAX's default is 300 s); a peer that
#: stops sending heartbeats (it died) ends the others after HEARTBEAT_TIMEOUT_S
#: (default 100 s); a process that finished waits at most SHUTDOWN_TIMEOUT_S for
#: its peers at exit (default 300 s, which left a job hanging ~5 min after a
#: failure).
INITIALIZATION_TIMEOUT_S = 900
HEARTBEAT_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 120


def _use_coordination_barriers() -> None:
  """Orbax's barriers through the coordination service (timeout 300 s) rather
  than a device collective: a collective's first use sets up a Gloo context on
  CPU, which gives up after 30 s when one process is still compiling or
  loading (seen on a loaded 2-core machine: DEADLINE_EXCEEDED in
  CheckpointManager -> sync_global_devices)."""
  import orbax.checkpoint  # noqa: F401  (defines the flag)

  flags.FLAGS["experimental_orbax_use_distributed_barrier"].value = True


def initialize_distributed(
  mode: str, coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> bool:
  """Starts ``jax.distributed`` when the job spans several processes.

  ``mode="auto"``: with ``coordinator_address`` the three values are passed
  explicitly; otherwise JAX's own detection runs when a cluster environment is
  present (:data:`CLUSTER_ENV_VARS`: TPU pod slices, SLURM, Open MPI) and a
  single process runs alone. ``"on"`` always initialises, ``"off"`` never.
  The timeouts are :data:`INITIALIZATION_TIMEOUT_S`, :data:`HEARTBEAT_TIMEOUT_S`
  and :data:`SHUTDOWN_TIMEOUT_S`; Orbax then synchronises through the
  coordination service. Returns whether it initialised.
  """
  if mode not in ("auto", "on", "off"):
    raise ValueError(f"--distributed={mode!r} must be 'auto', 'on' or 'off'")
  explicit = (coordinator_address, num_processes, process_id)
  if any(value is not None for value in explicit) and not all(value is not None for value in explicit):
    raise ValueError(
      "--coordinator_address, --num_processes and --process_id go together; got "
      f"{coordinator_address!r}, {num_processes!r}, {process_id!r}"
    )
  if mode == "off":
    if coordinator_address is not None:
      raise ValueError(f"--coordinator_address={coordinator_address!r} given with --distributed=off")
    return False
  if coordinator_address is None and mode == "auto" and not any(v in os.environ for v in CLUSTER_ENV_VARS):
    return False
  import jax

  timeouts = dict(
    initialization_timeout=INITIALIZATION_TIMEOUT_S,
    heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
    shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
  )
  if coordinator_address is None:
    jax.distributed.initialize(**timeouts)
  else:
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} must be in [0, --num_processes={num_processes})")
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **timeouts)
  _use_coordination_barriers()
  return True


def _suggest(name: str, known: list[str]) -> list[str]:
  """Known fields that ``name`` may have meant: close spellings, and fields of
  the same section whose last words it abbreviates (``optim.lr`` ->
  ``optim.base_learning_rate``) or contains."""
  section, _, leaf = name.rpartition(".")
  out = []
  for field in known:
    field_section, _, field_leaf = field.rpartition(".")
    words = field_leaf.split("_")
    if field_section == section and (
      any("".join(w[:1] for w in words[i:]) == leaf for i in range(len(words)))
      or (len(leaf) >= 3 and leaf in field_leaf)
    ):
      out.append(field)
  return out + [f for f in difflib.get_close_matches(name, known, n=3, cutoff=0.6) if f not in out]


def _config_spec(argv: list[str]) -> str | None:
  """The value of ``--config`` in ``argv`` (the last one given), or None."""
  spec = None
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      spec = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      spec = argv[i + 1]
  return spec


def check_config_file(argv: list[str]) -> str | None:
  """Why the ``--config`` of ``argv`` cannot be loaded (the file is missing, or
  its ``get_config`` refuses the ``:variant``), as a one-line message naming the
  file or the variant; None when it loads, or when none is given (absl says so)."""
  spec = _config_spec(argv)
  if spec is None:
    return None
  path = spec.partition(":")[0]
  if not os.path.isfile(path):
    what = "is a directory, not a config file" if os.path.isdir(path) else "does not exist"
    return (
      f"--config {spec}: {path} {what} (relative paths are from {os.getcwd()}); pass a config file such as "
      "configs/vje_fashion_mnist.py or configs/vje_fashion_mnist.py:smoke"
    )
  try:
    load_config(spec)
  except Exception as error:  # noqa: BLE001 - any failure of the config file: named in one line
    first = (str(error).splitlines() or [""])[0]
    return f"--config {spec}: {path} could not build its config ({type(error).__name__}: {first})"
  return None


def out_of_memory_message(error: BaseException, config) -> str | None:
  """For a device out of memory (XLA's ``RESOURCE_EXHAUSTED``): one line naming
  the sizes that set the memory and how to lower them; None for other errors."""
  text = str(error)
  if "RESOURCE_EXHAUSTED" not in text:
    return None
  first = next((line.strip() for line in text.splitlines() if "RESOURCE_EXHAUSTED" in line), text)[:300]
  sizes = []
  for name in ("batch_size", "model.width_multiplier", "eval.batch_size"):
    try:
      value = config
      for part in name.split("."):
        value = value[part]
    except (KeyError, TypeError, AttributeError):
      continue
    sizes.append(f"config.{name}={value!r}")
  return (
    f"out of device memory ({first}) with {', '.join(sizes) or 'this config'}: lower them, e.g. "
    "--config.batch_size (training), --config.model.width_multiplier (the network), "
    "--config.eval.batch_size (evaluation)"
  )


def check_config_overrides(argv: list[str]) -> str | None:
  """The first ``--config.<field>=...`` of ``argv`` that the config file does not
  have, as a message with suggestions; None when all exist (or no config file
  is given, which absl reports)."""
  spec = _config_spec(argv)
  fields = [arg[len("--config.") :].split("=", 1)[0] for arg in argv if arg.startswith("--config.")]
  if spec is None or not fields or not os.path.exists(spec.partition(":")[0]):
    return None
  try:
    config = load_config(spec)
  except Exception:  # noqa: BLE001 - a config that does not load: absl's parsing reports it
    return None
  from gjax.train.config import config_fields  # loaded already: config files build on base_config

  known = [name for name, _ in config_fields(config)]
  for field in fields:
    if field not in known:
      section = field.rpartition(".")[0]
      suggestions = _suggest(field, known)
      hint = f"; did you mean {' or '.join(f'--config.{s}' for s in suggestions)}?" if suggestions else ""
      listing = [k for k in known if k.rpartition(".")[0] == section]
      where = f" (the fields of {section or 'the top level'}: {', '.join(listing)})" if listing else ""
      return f"unknown config field --config.{field}{hint}{where}"
  return None


def eval_command(argv: list[str]) -> str:
  """The command that evaluates the run ``train.py``'s command line ``argv``
  (``sys.argv``) trains: ``eval.py`` beside ``train.py``, with the same flags
  (the config, its overrides, the workdir, the multi-host ones): eval.py builds
  the same config, whose checkpoints it then reads."""
  script = os.path.join(os.path.dirname(argv[0]), "eval.py")
  return shlex.join(["python", script, *argv[1:]])


#: The evaluation metrics that are fractions, shown in percent by :func:`results_table`:
#: accuracies (``knn20_z``, ``knn200w_mu``, ``linear_top1_h``, ``linear_aug_top5_h``), AUROCs,
#: a sampler's precision and recall. The others (ranks, variances, losses, MMD) are shown as they are.
PERCENT_METRICS = re.compile(r"^knn\d+w?_|_top\d+(_|$)|auroc|(^|_)(precision|recall)$")

#: What ``eval.py``'s results hold besides the metrics; named in the table's title.
RESULTS_BOOKKEEPING = ("step", "num_train", "num_test", "wall_seconds")


def results_table(results: Mapping[str, float]) -> str:
  """``eval.py``'s results as a small table, one metric a row, fractions in
  percent (:data:`PERCENT_METRICS`), under a title naming the step, the
  images and the time they took."""
  rows = [
    (name, f"{100 * value:.1f} %" if PERCENT_METRICS.search(name) else f"{value:.4g}  ")
    for name, value in results.items()
    if name not in RESULTS_BOOKKEEPING
  ]  # the digits aligned
  width = max([len(name) for name, _ in rows] + [len("metric")])
  seconds = results.get("wall_seconds", math.nan)
  title = (
    f"results at step {results.get('step', '?')} ({results.get('num_train', '?')} train / "
    f"{results.get('num_test', '?')} test images, {seconds:.0f} s):"
  )
  return "\n".join(
    [title, f"  {'metric':<{width}}  {'value':>10}"] + [f"  {name:<{width}}  {value:>10}" for name, value in rows]
  )


#: Exceptions that report a user's mistake (a config value or field, the data,
#: the workdir, a missing package): one line, no traceback, exit status 2.
def _user_errors() -> tuple[type[BaseException], ...]:
  from gjax.train.lock import WorkdirInUseError

  return (ValueError, FileNotFoundError, PermissionError, ImportError, WorkdirInUseError)


def run_with_config(
  action: Callable[[object, str], object], workdir_help: str, *, interrupt_is_failure: bool = False
) -> None:
  """Defines ``--config`` (a config file, overridable as ``--config.x=y``) and
  ``--workdir``, then runs ``action(config, workdir)`` under ``absl.app``.
  ``interrupt_is_failure``: a signal before training starts exits non-zero
  (``eval.py``, which saves nothing part-way), not 0 (``train.py``)."""
  main_module = sys.argv[0]  # so that --help lists the flags as the script's own
  config_flag = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (file.py[:variant]).", lock_config=True
  )
  flags.FLAGS.register_flag_by_module(main_module, flags.FLAGS["config"])
  workdir_flag = flags.DEFINE_string("workdir", None, workdir_help, module_name=main_module)
  flags.mark_flags_as_required(["config", "workdir"])
  distributed = flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "on", "off"],
    "Multi-host start-up (jax.distributed.initialize): auto = with --coordinator_address, or when a "
    "TPU pod / SLURM / Open MPI environment is detected.",
    module_name=main_module,
  )
  coordinator = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0's coordinator.", module_name=main_module
  )
  num_processes = flags.DEFINE_integer(
    "num_processes", None, "Number of processes in the job.", module_name=main_module
  )
  process_id = flags.DEFINE_integer(
    "process_id", None, "This process's index in [0, num_processes).", module_name=main_module
  )

  debug = flags.DEFINE_boolean(
    "debug",
    False,
    "Show the Python traceback of a user error (a bad config value or field, missing data, a workdir in use).",
    module_name=main_module,
  )
  program = os.path.basename(main_module)
  unknown = None if "--debug" in sys.argv[1:] else check_config_file(sys.argv[1:])
  unknown = unknown or check_config_overrides(sys.argv[1:])
  if unknown:
    print(f"{program}: error: {unknown}", file=sys.stderr)
    sys.exit(2)

  def run_action():
    try:
      action(config_flag.value, workdir_flag.value)
    except _user_errors() as error:
      if debug.value:
        raise
      logging.getLogger("gjax").debug("user error", exc_info=True)
      print(f"{program}: error: {error}\n(--debug shows where it was raised)", file=sys.stderr)
      return 2
    except Exception as error:  # noqa: BLE001 - a device out of memory is the config's size, not a bug
      message = out_of_memory_message(error, config_flag.value)
      if message is None or debug.value:
        raise
      logging.getLogger("gjax").debug("out of memory", exc_info=True)
      print(f"{program}: error: {message}\n(--debug shows where it was raised)", file=sys.stderr)
      return 2
    return 0

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # SIGTERM / SIGINT / SIGHUP before the first step: exit at once, with a message
    startup_signals.install(interrupt_is_failure)
    absl_logging.set_verbosity(absl_logging.WARNING)  # library chatter (Orbax) off
    gjax_log = logging.getLogger("gjax")
    gjax_log.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s] %(message)s", "%H:%M:%S"))
    gjax_log.addHandler(handler)
    gjax_log.propagate = False
    if not initialize_distributed(distributed.value, coordinator.value, num_processes.value, process_id.value):
      sys.exit(run_action())
    import jax

    if jax.process_index() != 0:  # only process 0 logs progress; warnings still show
      gjax_log.setLevel(logging.WARNING)
    try:
      status = run_action()
      if status:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(status)  # as below: the peers are ended by the coordination service
    except BaseException:  # pylint: disable=broad-except
      # A normal exit would wait at jax.distributed's shutdown barrier for peers
      # that may be blocked in a collective with this process; exiting at once
      # lets the coordination service see this process gone and end the peers
      # (within HEARTBEAT_TIMEOUT_S) instead of every process hanging.
      gjax_log.exception(
        "process %d of %d failed; exiting without waiting for its peers", jax.process_index(), jax.process_count()
      )
      logging.shutdown()
      sys.stderr.flush()
      os._exit(1)

  app.run(main)
