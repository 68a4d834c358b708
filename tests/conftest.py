"""Shared pytest set-up: 8 fake CPU devices for the data-parallel tests.

The flag must be set before jax initialises its backend, so it lives here.
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
# The suite's programs are tiny and run a few steps: XLA's compilation, not
# their execution, is most of its time. LLVM optimisation level 0 halves a
# ResNet-18 train step's compilation (58 s -> 30 s for a 20-step train.py run on
# 2 cores, same losses to the printed digits). Subprocesses inherit the flag.
# GJAX_TESTS_XLA_OPTIMIZE=1 runs the suite with XLA's default level instead.
if os.environ.get("GJAX_TESTS_XLA_OPTIMIZE") != "1" and "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# scipy/OpenBLAS-backed LAPACK calls (Cholesky, triangular solves) stall for
# milliseconds each with threaded OpenBLAS on a busy 2-core box (see
# results/math_bench.md); one BLAS thread keeps the suite's timing stable.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# The same small programs (train steps, inits) are compiled by several tests and
# subprocesses; a persistent compilation cache shared by them saves minutes.
# It lives in the repository (.jax_cache/, git-ignored), not elsewhere on the machine.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_REPO, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# Temporary files that libraries make outside pytest's tmp_path (TFDS's mock
# data, tempfile users in subprocesses) go to one directory per test process,
# removed when it ends, so the suite leaves nothing of theirs behind.
import atexit
import shutil
import tempfile

_TMP = tempfile.mkdtemp(prefix="gjax-tests-")
os.environ["TMPDIR"] = _TMP
tempfile.tempdir = _TMP
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


# The slowest tests (end-to-end runs and subprocesses, 35-80 s each on 2 idle cores in
# `--durations`) run first: pytest-xdist hands out tests in collection order, so a long test
# collected last would run alone at the end while the other worker idles.
SLOWEST_FIRST = (
  "tests/test_multihost.py::test_two_processes_train_and_evaluate_like_one_process_with_as_many_devices",
  "tests/test_sampling.py::test_embeddings_and_density_of_a_trained_gmje",
  "tests/test_hardening.py::test_kill_9_loses_only_the_steps_since_the_checkpoint_and_resumes_exactly",
  "tests/test_multihost.py::test_a_signal_to_one_process_checkpoints_and_stops_all_of_them",
  "tests/test_registries.py::test_a_momentum_target_trains_on_8_devices_follows_the_ema_and_resumes_bitwise",
  "tests/test_ijepa.py::test_ijepa_step_compiles_once_and_8_devices_match_1",
  "tests/test_hardening.py::test_sigterm_saves_a_checkpoint_and_exits_cleanly",
  "tests/test_train.py::test_train_py_command_line_with_overrides",
  "tests/test_gmje.py::test_the_trace_trap_remedies_keep_every_direction",
  "tests/test_ijepa.py::test_ijepa_kill_and_resume_is_bitwise",
  "tests/test_benchmarks.py::test_accelerator_benchmark_prints_its_table_at_toy_sizes",
  "tests/test_hardening.py::test_injected_nan_stops_naming_the_step_and_keeps_the_last_checkpoint",
  "tests/test_gmje_remedies.py::test_remedies_train_through_the_shared_trainer_on_8_devices",
  "tests/test_hardening.py::test_skip_policy_skips_nonfinite_steps_and_keeps_training",
  "tests/test_faults.py::test_case01_a_torn_last_line_of_train_jsonl_is_dropped_with_a_warning",
)


def pytest_collection_modifyitems(config, items):
  def rank(item):
    name = item.nodeid.split("[", 1)[0]
    return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

  items.sort(key=rank)  # stable: the rest keep their order
