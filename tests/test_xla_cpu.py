"""gjax's XLA CPU flag (gjax/xla_cpu.py): when it is added, that XLA really
takes convolutions off YNNPACK with it, and that the train step computes the
same numbers with and without it."""

import json
import os
import subprocess
import sys

import pytest

from gjax import xla_cpu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flags_gjax_adds_here() -> list[str]:
  """What importing gjax adds on this machine with no setting of one's own:
  the platform choice first (JAX_PLATFORMS=cpu where libtpu has no TPU), then the flag."""
  platform = xla_cpu.cpu_only_platform({})[0]
  return xla_cpu.cpu_flags({"JAX_PLATFORMS": platform} if platform else {}, None, None)[0]


def test_the_flag_is_added_only_where_it_is_known():
  flag = xla_cpu.YNN_CONVOLUTION_FLAG
  assert xla_cpu.cpu_flags({}, "0.10.2", False)[0] == [flag]
  assert xla_cpu.cpu_flags({}, "0.12.0.1", False)[0] == [flag]
  assert xla_cpu.cpu_flags({"JAX_PLATFORMS": "cpu"}, "0.10.2", True)[0] == [flag]
  # Unknown jaxlib (XLA would abort on a flag it lacks), an accelerator that
  # may be the default backend, the user's own setting, the opt-out.
  for environ, version, accelerator in (
    ({}, "0.11.0", False),
    ({}, "0.9.2", False),
    ({}, "0.10.2", True),
    ({"JAX_PLATFORMS": "cuda,cpu"}, "0.10.2", True),
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=x"}, "0.10.2", False),
    ({xla_cpu.OPT_OUT_ENV: "0"}, "0.10.2", False),
  ):
    added, why = xla_cpu.cpu_flags(environ, version, accelerator)
    assert added == [] and why, (environ, version)
  with pytest.raises(ValueError, match=r"GJAX_XLA_CPU_DEFAULTS='yes' must be 0"):
    xla_cpu.cpu_flags({xla_cpu.OPT_OUT_ENV: "yes"}, "0.10.2", False)
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert xla_cpu.apply_cpu_flags(environ) == flags_gjax_adds_here()
  assert xla_cpu.apply_cpu_flags(environ) == []  # once only
  assert environ["XLA_FLAGS"].split()[0] == "--xla_force_host_platform_device_count=8"


# One 3x3 convolution's kernel gradient, traced with jax.profiler: the names of
# XLA's thunks show whether YNNPACK ran it; then a tiny VJE train step's loss
# and gradient norm.
PROBE = r"""
import glob, json, os, sys, tempfile
import gjax  # applies the flag
import jax, jax.numpy as jnp, numpy as np, optax
from gjax.train import base_config
from gjax.train.state import build_method

def f(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
grad = jax.jit(jax.grad(f, argnums=1))
x, w = jnp.ones((128, 16, 16, 16)), jnp.ones((3, 3, 16, 16))  # small ones stay off YNNPACK anyway
grad(x, w).block_until_ready()
trace = tempfile.mkdtemp()
with jax.profiler.trace(trace):
  grad(x, w).block_until_ready()
(path,) = glob.glob(os.path.join(trace, "**", "*.xplane.pb"), recursive=True)
data = jax.profiler.ProfileData.from_serialized_xspace(open(path, "rb").read())
names = sorted({e.name for p in data.planes for l in p.lines for e in l.events})

c = base_config("vje")
c.model.encoder, c.model.width_multiplier, c.model.bottleneck = "resnet10", 0.125, 16
objective, hparams, model = build_method(c)
views = [jnp.asarray(np.random.default_rng(i).normal(size=(8, 16, 16, 3)), jnp.float32) for i in (0, 1)]
variables = model.init(jax.random.PRNGKey(0), *views, train=False)
def loss_fn(params):
  out, _ = model.apply({**variables, "params": params}, *views, train=True, mutable=["batch_stats"])
  return objective.loss_fn(out, jax.random.PRNGKey(1), hparams)[0]
loss, g = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
print(json.dumps({"xla_flags": os.environ.get("XLA_FLAGS", ""), "ynn": any("ynn" in n for n in names),
                  "loss": float(loss), "grad_norm": float(optax.global_norm(g))}))
"""


def run_probe(**env):
  environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_cpu.OPT_OUT_ENV)}
  environ["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
  out = subprocess.run(
    [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300, env={**environ, **env}
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not flags_gjax_adds_here(), reason="the flag is not applied with this jaxlib")
def test_the_flag_reaches_xla_and_leaves_the_numbers_unchanged():
  with_flag = run_probe()
  without = run_probe(**{xla_cpu.OPT_OUT_ENV: "0"})
  assert xla_cpu.YNN_CONVOLUTION_FLAG in with_flag["xla_flags"].split()
  assert xla_cpu.YNN_CONVOLUTION_FLAG not in without["xla_flags"]
  # XLA's default sends the convolution to YNNPACK; with the flag it does not.
  assert without["ynn"] and not with_flag["ynn"]
  for key in ("loss", "grad_norm"):
    assert abs(with_flag[key] - without[key]) <= 1e-5 * abs(without[key]), (key, with_flag, without)


def test_the_cpu_platform_is_chosen_only_where_libtpu_has_no_tpu(tmp_path):
  choose = xla_cpu.cpu_only_platform
  assert choose({}, True, False, False)[0] == "cpu"
  for environ, libtpu, gpu, tpu in (
    ({}, False, False, False),
    ({}, True, True, False),
    ({}, True, False, True),
    ({"JAX_PLATFORMS": "tpu"}, True, False, False),
    ({xla_cpu.OPT_OUT_ENV: "0"}, True, False, False),
  ):
    platform, why = choose(environ, libtpu, gpu, tpu)
    assert platform == "" and why, (environ, libtpu, gpu, tpu)
  # A TPU chip on the PCI bus (Google's vendor id) or /dev/accel*; other vendors are not TPUs.
  for vendor in ("0x1af4", "0x8086"):
    (tmp_path / "sys/bus/pci/devices" / vendor).mkdir(parents=True)
    (tmp_path / "sys/bus/pci/devices" / vendor / "vendor").write_text(vendor + "\n")
  assert not xla_cpu.tpu_chip_present(str(tmp_path))
  (tmp_path / "dev").mkdir()
  (tmp_path / "dev/accel0").write_text("")
  assert xla_cpu.tpu_chip_present(str(tmp_path))
  (tmp_path / "dev/accel0").unlink()
  (tmp_path / "sys/bus/pci/devices/0000:00:05.0").mkdir()
  (tmp_path / "sys/bus/pci/devices/0000:00:05.0/vendor").write_text("0x1ae0\n")
  assert xla_cpu.tpu_chip_present(str(tmp_path))


def test_importing_gjax_on_a_cpu_host_with_libtpu_starts_jax_on_the_cpu_quietly():
  """libtpu is installed for the TPU compiles; without gjax's choice jax would try
  the TPU backend first and libtpu would print its initialisation errors."""
  environ = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", xla_cpu.OPT_OUT_ENV)}
  code = "import gjax, jax, os; print(jax.devices()[0].platform, os.environ.get('JAX_PLATFORMS'))"
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=environ)
  assert out.returncode == 0, out.stderr[-2000:]
  if xla_cpu.cpu_only_platform({})[0] != "cpu":
    pytest.skip(f"not a CPU host with libtpu: {xla_cpu.cpu_only_platform({})[1]}")
  assert out.stdout.split() == ["cpu", "cpu"]
  assert "TPU" not in out.stderr, out.stderr[-2000:]
