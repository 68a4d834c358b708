"""XLA CPU options that gjax sets before jax starts (issue 15: the step's speed on CPU).

XLA:CPU in jaxlib 0.10 sends every convolution to YNNPACK, whose kernel
gradient is several times slower than the Eigen path on AVX2 machines
(``results/throughput.md``: a 3x3 convolution at 128x32x32x64, kernel gradient
172 ms -> 60 ms; the VJE step 1.03-1.56x faster depending on width). The experimental flag
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` takes
single convolutions off YNNPACK; it changes which kernels run, not what they
compute (the train step's loss and gradients agree to float32 rounding,
``tests/test_xla_cpu.py``).

XLA aborts the process on a flag it does not know, and the flag is
experimental, so it is added only when

* the installed jaxlib is one of :data:`KNOWN_JAXLIB_PREFIXES` (where it was
  measured),
* the CPU backend is the one that will run (no accelerator plugin installed,
  or ``JAX_PLATFORMS=cpu``),
* ``XLA_FLAGS`` does not already set it (the user's choice wins), and
* the opt-out ``GJAX_XLA_CPU_DEFAULTS=0`` is not set.

XLA reads ``XLA_FLAGS`` when jax creates its first backend, so this must run
before the first computation; importing :mod:`gjax` calls
:func:`apply_cpu_flags`, which is early enough for ``train.py``, ``eval.py``,
the ``python -m gjax...`` scripts, the benchmarks and the tests. This module
imports no jax.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import MutableMapping

YNN_CONVOLUTION_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
#: jaxlib versions whose XLA knows the flag and where it was measured to help.
KNOWN_JAXLIB_PREFIXES = ("0.10.",)
#: ``GJAX_XLA_CPU_DEFAULTS=0`` keeps XLA's own defaults.
OPT_OUT_ENV = "GJAX_XLA_CPU_DEFAULTS"
#: Distributions whose presence means an accelerator backend may be the default.
ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm60-plugin", "jax-rocm7-plugin",
                       "libtpu", "libtpu-nightly")


def _installed(distribution: str) -> str | None:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def cpu_flags(environ: MutableMapping[str, str] | None = None, jaxlib_version: str | None = None,
              accelerator_installed: bool | None = None) -> tuple[list[str], str]:
  """The flags gjax would add to ``XLA_FLAGS`` and why (one line)."""
  environ = os.environ if environ is None else environ
  opt_out = environ.get(OPT_OUT_ENV, "1")
  if opt_out not in ("0", "1"):
    raise ValueError(f"{OPT_OUT_ENV}={opt_out!r} must be 0 (XLA's defaults) or 1 (gjax's CPU flags)")
  if opt_out == "0":
    return [], f"{OPT_OUT_ENV}=0: XLA's defaults kept"
  if "xla_cpu_experimental_ynn_fusion_type" in environ.get("XLA_FLAGS", ""):
    return [], "XLA_FLAGS already sets xla_cpu_experimental_ynn_fusion_type"
  jaxlib_version = _installed("jaxlib") if jaxlib_version is None else jaxlib_version
  if jaxlib_version is None or not jaxlib_version.startswith(KNOWN_JAXLIB_PREFIXES):
    return [], f"jaxlib {jaxlib_version} is not one of {KNOWN_JAXLIB_PREFIXES} where the flag was measured"
  if accelerator_installed is None:
    accelerator_installed = any(_installed(name) for name in ACCELERATOR_PLUGINS)
  platforms = environ.get("JAX_PLATFORMS", "")
  if accelerator_installed and platforms.split(",")[0] != "cpu":
    return [], "an accelerator plugin is installed and JAX_PLATFORMS does not select the CPU"
  return [YNN_CONVOLUTION_FLAG], f"jaxlib {jaxlib_version} on the CPU backend"


def apply_cpu_flags(environ: MutableMapping[str, str] | None = None) -> list[str]:
  """Appends :func:`cpu_flags` to ``environ["XLA_FLAGS"]``; returns what it added."""
  environ = os.environ if environ is None else environ
  added, _ = cpu_flags(environ)
  if added:
    environ["XLA_FLAGS"] = " ".join([environ.get("XLA_FLAGS", "").strip(), *added]).strip()
  return added
