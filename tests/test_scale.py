"""Scale checks on this CPU (gjax.scale): the trainer's own train step compiled
ahead of time for TPU slices by XLA's TPU compiler (one host and several), the
evaluation steps with it, and the train step lowered for CUDA with jax.export.
A change that breaks TPU or GPU compilation fails here."""

import math
import os
import subprocess
import sys

import jax
import pytest

from gjax.scale import compile as scale_compile
from gjax.scale import topology as topo
from gjax.train import base_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(method: str, batch_size: int = 32):
  c = base_config(method)
  c.dataset.name = "synthetic"
  c.dataset.synthetic_image_size = 16
  c.model.encoder = "resnet10"
  c.model.width_multiplier = 0.125
  c.model.bottleneck = 16
  c.model.compute_dtype = "bfloat16"  # as on accelerators
  c.batch_size = batch_size
  return c


def test_topology_names_and_errors():
  assert topo.parse_topology("v5e-256") == ("v5e:16x16", topo.CHIPS["v5e"])
  assert topo.parse_topology("v4:2x2x4")[0] == "v4:2x2x4"
  for bad, message in (
    ("v9:2x2", "unknown TPU topology 'v9:2x2'"),
    ("v5e:2x2x2", "have 2 positive dimensions"),
    ("v4:2x2", "have 3 positive dimensions"),
    ("tpu", "slice names"),
  ):
    with pytest.raises(ValueError, match=message):
      topo.parse_topology(bad)
  # Cloud's v4 and v5p slice names count TensorCores (two per chip): v4-32 is 16 chips on 4 hosts.
  v4_32 = topo.tpu_slice("v4-32")
  assert (v4_32.num_chips, v4_32.num_hosts, v4_32.label) == (16, 4, "v4-32 (v4:2x2x4)")
  v5e = topo.tpu_slice("v5e-256")
  assert (v5e.num_chips, v5e.num_hosts) == (256, 64)
  assert {d.platform for d in v5e.devices} == {"tpu"}


def test_step_time_estimate_uses_the_compiler_only_where_it_is_sane():
  chip = topo.CHIPS["v5e"]
  flops, bytes_accessed = 1.97e12, 8.19e9  # 10 ms at peak compute and 10 ms at full bandwidth
  assert scale_compile.step_time_estimate(flops, bytes_accessed, 0.02, chip) == (0.02, "compiler")
  # Negative (seen for ResNet-50), non-finite, or faster than the chip's peak allows: the roofline.
  for bad in (-2.0, math.nan, math.inf, 0.005):
    seconds, source = scale_compile.step_time_estimate(flops, bytes_accessed, bad, chip)
    assert source == "roofline" and seconds == pytest.approx(0.01)
  seconds, _ = scale_compile.step_time_estimate(flops, 4 * bytes_accessed, -1.0, chip)
  assert seconds == pytest.approx(0.04)  # memory-bound


@pytest.mark.parametrize("method,topology,hosts", [("vje", "v5e:2x2", 1), ("gmje", "v4:2x2x2", 2)])
def test_the_train_step_compiles_and_fits_on_a_tpu_slice(method, topology, hosts):
  """The trainer's train step (plan_run: model, method, bf16, optimiser, mesh,
  shardings) for one host and for two hosts, with the evaluation steps."""
  reports = scale_compile.compile_run(tiny_config(method), topology)
  assert [r.step for r in reports] == ["train", "embed", "probe"]
  for r in reports:
    assert r.compiled, r.error
    assert r.fits and 0 < r.total_bytes < r.hbm_bytes
    assert r.hosts == hosts and r.chips == topo.tpu_slice(topology).num_chips
    assert r.flops > 0 and r.bytes_accessed > 0
    assert r.estimate_seconds > 0 and r.estimate_source in ("compiler", "roofline")
    assert 0 < r.mfu <= 1
  train = reports[0]
  assert train.global_batch == 32 and train.per_chip_batch == 32 // train.chips
  # The flops per chip: a ResNet's forward and backward on both views of each of its images.
  row = scale_compile.table_row(train)
  assert f"| train | {topology} | {train.chips} / {hosts} |" in row and "yes" in row


def test_a_step_that_does_not_fit_reports_the_compilers_message():
  """A ResNet at 224 x 224 with 4096 images per v5e chip (16 GiB) cannot fit: the
  compiler says so, the report carries its message and compile_run does not raise."""
  c = tiny_config("vje")
  c.dataset.synthetic_image_size = 224
  c.dataset.num_train_examples = 100_000  # a data set that has that many images
  c.model.stem = "imagenet"
  report = scale_compile.compile_run(c, "v5e:2x2", per_chip_batch=4096, steps=("train",))[0]
  assert not report.compiled and not report.fits
  assert "RESOURCE_EXHAUSTED" in report.error or "memory" in report.error.lower(), report.error
  assert "**no**" in scale_compile.table_row(report)


def test_bad_input_is_named():
  with pytest.raises(ValueError, match="not divisible by the 4 chips"):
    scale_compile.compile_run(tiny_config("vje", batch_size=30), "v5e:2x2", steps=("train",))
  with pytest.raises(ValueError, match=r"unknown steps \['backward'\]"):
    scale_compile.compile_run(tiny_config("vje"), "v5e:2x2", steps=("backward",))
  with pytest.raises(ValueError, match="per_chip_batch=0"):
    scale_compile.compile_run(tiny_config("vje"), "v5e:2x2", per_chip_batch=0)


def test_dataset_geometry_is_known_without_the_data():
  from configs import cifar10, imagenet

  assert scale_compile.dataset_geometry(imagenet.get_config("method=vje")) == ((256, 256, 3), 1_281_167, 1000)
  assert scale_compile.dataset_geometry(cifar10.get_config("method=vje")) == ((32, 32, 3), 50_000, 10)
  c = cifar10.get_config("method=vje")
  c.dataset.num_train_examples = 5000
  assert scale_compile.dataset_geometry(c)[1] == 5000


@pytest.mark.parametrize("method", ["vje", "gje"])
def test_the_train_step_lowers_for_cuda(method):
  """jax.export for CUDA of the step over this host's 8 devices; the GJE step's
  log-determinant needs a cuSOLVER kernel, the VJE step no solver."""
  from gjax.scale.export import custom_call_targets, export_train_step

  exported = export_train_step(tiny_config(method), platforms=("cuda",))
  assert exported.platforms == ("cuda",) and exported.nr_devices == jax.device_count() == 8
  targets = custom_call_targets(exported)
  if method == "gje":
    assert any(t.startswith("cusolver") for t in targets), targets
  else:
    assert not any(t.startswith("cusolver") for t in targets), targets


def test_the_compile_command(tmp_path):
  """python -m gjax.scale.compile prints the table and appends JSON rows."""
  out = tmp_path / "rows.jsonl"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "gjax.scale.compile",
      "--config",
      "configs/cifar10.py:method=vje,variant=smoke",
      "--config.model.width_multiplier=0.0625",
      "--config.model.encoder=resnet10",
      "--topology",
      "v5e-4",
      "--steps",
      "embed,probe",
      "--json",
      str(out),
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "compiler estimate, not a measurement" in result.stdout
  assert result.stdout.count("| v5e-4 (v5e:2x2) | 4 / 1 |") == 2
  rows = [line for line in out.read_text().splitlines() if line]
  assert len(rows) == 2 and '"fits": true' in rows[0]


@pytest.mark.parametrize(
  "method", sorted(m for m in __import__("gjax.objectives", fromlist=["x"]).registered_methods() if m != "toy")
)
def test_every_method_traces_with_bfloat16_compute(method):
  """The train step of every method with the accelerators' compute dtype,
  traced abstractly over a TPU slice's devices (the TPU compile found SimCLR,
  BYOL and prototype GMJE failing there: jax's SVD takes no bfloat16, and their
  projectors output bf16). Tracing only: no lowering, no compile."""
  from gjax.objectives import get_objective
  from gjax.scale.compile import abstract_train_inputs, plan_on_devices

  config = tiny_config(method, batch_size=96)  # 192 embeddings: more than the GJE family's joint dimension
  if get_objective(method).model_defaults.get("encoder"):  # a method on a ViT's patch tokens (I-JEPA)
    config.model.encoder, config.model.width_multiplier = "vit_smoke", 1.0
    config.dataset.synthetic_image_size = 32  # an 8 x 8 patch grid, where I-JEPA's target blocks fit
  else:  # a projector in the compute dtype, as the baselines' recipes have (the pooled output is float32)
    config.model.projector, config.model.projector_hidden, config.model.projector_dim = True, 64, 32
    config.model.projector_norm = "batch"
  plan = plan_on_devices(config, topo.tpu_slice("v5e:2x2").devices)
  state, batch = abstract_train_inputs(plan, config.batch_size)
  new_state, metrics = jax.eval_shape(plan.train_step, state, batch)
  same = jax.tree_util.tree_map(lambda a, b: a.dtype == b.dtype and a.shape == b.shape, new_state, state)
  assert all(jax.tree_util.tree_leaves(same))
  assert metrics["loss"].dtype == jax.numpy.float32
