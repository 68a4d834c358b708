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
