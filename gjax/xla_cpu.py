"""XLA CPU options that gjax sets before jax starts (issue 15: the step's speed on CPU).

XLA:CPU in jaxlib 0.10 and 0.12 sends every convolution to YNNPACK, whose kernel
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

The same start-up picks the CPU platform where ``libtpu`` is installed (the
requirements have it, for ``gjax.scale``'s TPU compiles) but this host has no
TPU: without it jax tries the TPU backend first on every start and libtpu
prints its initialisation errors before jax falls back to the CPU.
:func:`cpu_only_platform` sets ``JAX_PLATFORMS=cpu`` only when ``JAX_PLATFORMS``
is unset, no GPU plugin is installed and no TPU chip is on the PCI bus (vendor
``0x1ae0``, the check jax's own Cloud TPU start-up makes) nor ``/dev/accel*``;
``GJAX_XLA_CPU_DEFAULTS=0`` leaves it to jax too.

XLA reads ``XLA_FLAGS`` when jax creates its first backend, so this must run
before the first computation; importing :mod:`gjax` calls
:func:`apply_cpu_flags`, which is early enough for ``train.py``, ``eval.py``,
the ``python -m gjax...`` scripts, the benchmarks and the tests. This module
imports no jax.
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
from collections.abc import MutableMapping

YNN_CONVOLUTION_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
#: jaxlib versions whose XLA knows the flag and where it was measured to help
#: (0.10: results/throughput.md; 0.12: results/jax_upgrade/README.md, the
#: full-width ResNet-18 step 1.35x faster with it). 0.11 was never measured.
KNOWN_JAXLIB_PREFIXES = ("0.10.", "0.12.")
#: ``GJAX_XLA_CPU_DEFAULTS=0`` keeps XLA's own defaults.
OPT_OUT_ENV = "GJAX_XLA_CPU_DEFAULTS"
#: Distributions whose presence means an accelerator backend may be the default.
GPU_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm60-plugin", "jax-rocm7-plugin")
ACCELERATOR_PLUGINS = GPU_PLUGINS + ("libtpu", "libtpu-nightly")
#: PCI vendor id of Google's TPU chips.
TPU_PCI_VENDOR = "0x1ae0"


def _installed(distribution: str) -> str | None:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def cpu_flags(
  environ: MutableMapping[str, str] | None = None,
  jaxlib_version: str | None = None,
  accelerator_installed: bool | None = None,
) -> tuple[list[str], str]:
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


def tpu_chip_present(sys_root: str = "/") -> bool:
  """Whether this host has a TPU chip: a PCI device of Google's vendor id, or ``/dev/accel*`` (TPU v2/v3 VMs)."""
  for path in glob.glob(os.path.join(sys_root, "sys/bus/pci/devices/*/vendor")):
    try:
      with open(path) as f:
        if f.read().strip() == TPU_PCI_VENDOR:
          return True
    except OSError:
      continue
  return bool(glob.glob(os.path.join(sys_root, "dev/accel*")))


def cpu_only_platform(
  environ: MutableMapping[str, str] | None = None,
  libtpu_installed: bool | None = None,
  gpu_plugin_installed: bool | None = None,
  tpu_present: bool | None = None,
) -> tuple[str, str]:
  """``("cpu", why)`` when gjax should set ``JAX_PLATFORMS=cpu`` (libtpu
  installed on a host without a TPU or a GPU plugin), else ``("", why)``."""
  environ = os.environ if environ is None else environ
  if environ.get(OPT_OUT_ENV, "1") == "0":
    return "", f"{OPT_OUT_ENV}=0: jax chooses the platform"
  if environ.get("JAX_PLATFORMS", ""):
    return "", f"JAX_PLATFORMS={environ['JAX_PLATFORMS']!r} is set"
  if libtpu_installed is None:
    libtpu_installed = any(_installed(name) for name in ("libtpu", "libtpu-nightly"))
  if not libtpu_installed:
    return "", "libtpu is not installed"
  if gpu_plugin_installed is None:
    gpu_plugin_installed = any(_installed(name) for name in GPU_PLUGINS)
  if gpu_plugin_installed:
    return "", "a GPU plugin is installed"
  if tpu_present is None:
    tpu_present = tpu_chip_present()
  if tpu_present:
    return "", "this host has a TPU"
  return "cpu", "libtpu is installed (for gjax.scale's compiles) but this host has no TPU and no GPU plugin"


def apply_cpu_flags(environ: MutableMapping[str, str] | None = None) -> list[str]:
  """Sets ``JAX_PLATFORMS=cpu`` where :func:`cpu_only_platform` says so, then
  appends :func:`cpu_flags` to ``environ["XLA_FLAGS"]``; returns the flags it added."""
  environ = os.environ if environ is None else environ
  platform, _ = cpu_only_platform(environ)
  if platform:
    environ["JAX_PLATFORMS"] = platform
  added, _ = cpu_flags(environ)
  if added:
    environ["XLA_FLAGS"] = " ".join([environ.get("XLA_FLAGS", "").strip(), *added]).strip()
  return added
