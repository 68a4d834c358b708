"""Compile gjax's steps for a TPU slice ahead of time, on this machine, and size them.

  python -m gjax.scale.compile --config configs/imagenet.py:method=vje --topology v5e-256 \\
      --config.model.compute_dtype=bfloat16
  python -m gjax.scale.compile --config configs/imagenet.py:method=vje --topology v5e:2x2,v4-8 --search_batch

The train step is the one ``train.py`` runs, built by the trainer's own code
(:func:`gjax.train.plan.plan_run`: model, method, compute dtype, optimiser
and schedule, the mesh over all chips, the shardings) from the config alone:
the state comes from ``jax.eval_shape`` of the trainer's initialisation and
the batch from the data set's geometry (:func:`dataset_geometry`), so no
data and no TPU are needed. The evaluation steps are compiled likewise: the
feature step of ``eval.py`` (:func:`gjax.eval.features.make_embed_step`) and
one step of the linear probe (:func:`gjax.eval.linear_probe.make_probe_step`).

For each (config, slice, step) the report has: compiled or the compiler's
error; bytes per chip (arguments, outputs, temporaries, generated code)
against the chip's HBM; flops and bytes accessed per chip per step (XLA's cost
analysis); a step-time **estimate** — the compiler's own (``optimal_seconds``)
where it is sane (finite and no faster than the chip's peak FLOP/s allows),
else a roofline ``max(flops / peak, bytes / HBM bandwidth)`` — labelled which;
and the images/s per chip and model-flops utilisation that estimate implies.
Every time here is a compiler estimate, not a measurement.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # compile only: never start a local accelerator (set before jax is imported)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import contextlib
import copy
import dataclasses
import json
import math
import time
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp

from gjax import data as gdata
from gjax.data.datasets import spec_from_config
from gjax.scale.topology import GIB, Slice, tpu_slice
from gjax.train import config as config_lib
from gjax.train.input_pipeline import tfds_image_shape, view_augments
from gjax.train.plan import RunPlan, abstract_batch, plan_run
from gjax.train.state import abstract_train_state

STEPS = ("train", "embed", "probe")


@dataclasses.dataclass
class StepReport:
  """What the compiler says of one step on one slice (bytes and flops per chip)."""

  step: str
  slice: str
  chips: int
  hosts: int
  per_chip_batch: int
  global_batch: int
  compiled: bool
  error: str = ""
  compile_seconds: float = math.nan
  argument_bytes: int = 0
  output_bytes: int = 0
  alias_bytes: int = 0
  temp_bytes: int = 0
  code_bytes: int = 0
  hbm_bytes: int = 0
  flops: float = math.nan
  bytes_accessed: float = math.nan
  compiler_seconds: float = math.nan
  estimate_seconds: float = math.nan
  estimate_source: str = ""
  peak_flops: float = math.nan

  @property
  def total_bytes(self) -> int:
    """Peak bytes per chip the program holds: arguments + outputs - donated (aliased) + temporaries + code."""
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes

  @property
  def fits(self) -> bool:
    return self.compiled and self.total_bytes <= self.hbm_bytes

  @property
  def images_per_second_per_chip(self) -> float:
    return self.per_chip_batch / self.estimate_seconds if self.estimate_seconds > 0 else math.nan

  @property
  def mfu(self) -> float:
    """Model-flops utilisation the estimate implies: XLA's flops / (time x the chip's peak)."""
    return self.flops / (self.estimate_seconds * self.peak_flops) if self.estimate_seconds > 0 else math.nan

  def as_dict(self) -> dict[str, Any]:
    return dict(
      dataclasses.asdict(self),
      total_bytes=self.total_bytes,
      fits=self.fits,
      images_per_second_per_chip=self.images_per_second_per_chip,
      mfu=self.mfu,
    )


def step_time_estimate(flops: float, bytes_accessed: float, compiler_seconds: float, chip) -> tuple[float, str]:
  """``(seconds, source)``: the compiler's estimate where it is sane (finite,
  and not faster than ``flops`` at the chip's peak allow), else the roofline
  ``max(flops / peak, bytes_accessed / bandwidth)``."""
  compute_bound = flops / chip.peak_bf16_flops
  if math.isfinite(compiler_seconds) and compiler_seconds > 0 and compiler_seconds >= compute_bound:
    return compiler_seconds, "compiler"
  return max(compute_bound, bytes_accessed / chip.hbm_bytes_per_second), "roofline"


def _cost(compiled) -> dict[str, float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  return dict(cost or {})


def _first_lines(message: str, limit: int = 3) -> str:
  lines = [line.strip() for line in str(message).splitlines() if line.strip()]
  return " / ".join(lines[:limit])[:600]


@contextlib.contextmanager
def _no_persistent_cache_writes():
  """jax's persistent compilation cache cannot load a TPU executable without a
  TPU client (measured: "PjRtCompiler must be constructed with a Client to call
  DeserializeLoadedExecutable" at every read), so ahead-of-time compiles are
  not written to it: nothing to gain, only disk and a warning per read."""
  previous = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1e9)
  try:
    yield
  finally:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous)


def compile_step(name: str, jitted, args: tuple, tpu: Slice, per_chip_batch: int) -> StepReport:
  """Lowers and compiles ``jitted(*args)`` (``ShapeDtypeStruct`` args sharded on
  ``tpu``'s devices); a compiler error (e.g. out of HBM) is reported, not raised."""
  report = StepReport(
    step=name,
    slice=tpu.label,
    chips=tpu.num_chips,
    hosts=tpu.num_hosts,
    per_chip_batch=per_chip_batch,
    global_batch=per_chip_batch * tpu.num_chips,
    compiled=False,
    hbm_bytes=tpu.chip.hbm_bytes,
    peak_flops=tpu.chip.peak_bf16_flops,
  )
  start = time.perf_counter()
  try:
    with _no_persistent_cache_writes():
      compiled = jitted.lower(*args).compile()
  except Exception as e:  # the compiler's message is the result
    report.error = f"{type(e).__name__}: {_first_lines(e)}"
    report.compile_seconds = time.perf_counter() - start
    return report
  report.compile_seconds = time.perf_counter() - start
  report.compiled = True
  memory = compiled.memory_analysis()
  report.argument_bytes = int(memory.argument_size_in_bytes)
  report.output_bytes = int(memory.output_size_in_bytes)
  report.alias_bytes = int(memory.alias_size_in_bytes)
  report.temp_bytes = int(memory.temp_size_in_bytes)
  report.code_bytes = int(memory.generated_code_size_in_bytes)
  cost = _cost(compiled)
  report.flops = float(cost.get("flops", math.nan))
  report.bytes_accessed = float(cost.get("bytes accessed", math.nan))
  report.compiler_seconds = float(cost.get("optimal_seconds", math.nan))
  report.estimate_seconds, report.estimate_source = step_time_estimate(
    report.flops, report.bytes_accessed, report.compiler_seconds, tpu.chip
  )
  return report


def dataset_geometry(config) -> tuple[tuple[int, int, int], int, int]:
  """``(image shape on the host, pretraining examples, classes)`` of
  ``config.dataset`` without reading its images: from the data set's spec (and
  ``config.dataset.num_train_examples``, which a one-class run restricted by
  ``dataset.train_classes`` should set to its class's size for its schedule to
  be the run's); a ``tfds:NAME`` data set of stored size reads its TFDS
  metadata. ``ValueError`` naming what is unknown."""
  d = config.dataset
  spec = spec_from_config(d)
  channels = len(spec.mean)
  if spec.host_square:
    shape = (spec.host_square, spec.host_square, channels)
  elif d.name == "synthetic":
    shape = (d.synthetic_image_size, d.synthetic_image_size, d.synthetic_channels)
  elif spec.image_size:
    shape = (spec.image_size, spec.image_size, channels)
  elif spec.source == "tfds":
    shape = tfds_image_shape(spec, d.data_dir or None)
  else:
    raise ValueError(
      f"config.dataset.name={d.name!r}: its image shape is not known without loading it "
      "(give the DatasetSpec an image_size)"
    )
  examples = d.num_train_examples if d.num_train_examples > 0 else spec.num_pretrain_examples
  if examples <= 0:
    raise ValueError(
      f"config.dataset.name={d.name!r}: the number of pretraining examples is not known ahead of "
      "time; set config.dataset.num_train_examples"
    )
  return tuple(int(x) for x in shape), int(examples), int(spec.num_classes)


def plan_on_devices(config, devices) -> RunPlan:
  """The trainer's run of ``config`` on ``devices`` (a TPU slice's, or this host's
  for an export), the config checked as train.py checks it."""
  devices = tuple(devices)
  config_lib.validate_config(config, len(devices), len({d.process_index for d in devices}))
  image_shape, examples, _ = dataset_geometry(config)
  steps_per_epoch = examples // config.batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"config.batch_size={config.batch_size} exceeds the {examples} examples of {config.dataset.name}")
  return plan_run(
    config,
    steps_per_epoch=steps_per_epoch,
    image_shape=image_shape,
    augment=view_augments(config, image_shape),
    mesh=gdata.data_mesh(devices),
  )


def abstract_train_inputs(plan: RunPlan, global_batch: int):
  """``(state, batch)`` of ``plan``'s train step as sharded ``ShapeDtypeStruct`` trees."""
  state = abstract_train_state(
    plan.model, plan.tx, plan.image_shape, gdata.replicated_sharding(plan.mesh), with_target=plan.with_target
  )
  return state, abstract_batch(plan.mesh, global_batch, plan.image_shape)


def with_per_chip_batch(config, per_chip_batch: int | None, num_chips: int):
  """A copy of ``config`` with the global batch ``per_chip_batch * num_chips`` (None: as configured)."""
  config = copy.deepcopy(config)
  if per_chip_batch is not None:
    if per_chip_batch < 1:
      raise ValueError(f"per_chip_batch={per_chip_batch} must be >= 1")
    config.batch_size = per_chip_batch * num_chips
  return config


def _per_chip(global_batch: int, chips: int, what: str) -> int:
  if global_batch % chips:
    raise ValueError(
      f"{what}={global_batch} is not divisible by the {chips} chips of the slice "
      f"(give a batch that is, or --per_chip_batch)"
    )
  return global_batch // chips


def compile_run(
  config, topology: str, *, per_chip_batch: int | None = None, steps: Iterable[str] = STEPS
) -> list[StepReport]:
  """Compiles ``steps`` (of :data:`STEPS`) of ``config``'s run for the TPU slice ``topology``."""
  steps = tuple(steps)
  unknown = sorted(set(steps) - set(STEPS))
  if unknown:
    raise ValueError(f"unknown steps {unknown}; known: {STEPS}")
  tpu = tpu_slice(topology)
  config = with_per_chip_batch(config, per_chip_batch, tpu.num_chips)
  per_chip = _per_chip(config.batch_size, tpu.num_chips, "config.batch_size")
  plan = plan_on_devices(config, tpu.devices)
  mesh = plan.mesh
  replicated = gdata.replicated_sharding(mesh)
  state, batch = abstract_train_inputs(plan, config.batch_size)
  reports = []
  if "train" in steps:
    reports.append(compile_step("train", plan.train_step, (state, batch), tpu, per_chip))
  if "embed" in steps or "probe" in steps:
    from gjax.eval.features import make_embed_step  # the evaluation layer, only when its steps are asked for
    from gjax.eval.linear_probe import make_probe_optimizer, make_probe_step

    variables = {"params": state.params, **state.model_state}
    augment = view_augments(config, plan.image_shape)[0]
    embed = make_embed_step(plan.model, augment, mesh)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated)
    # eval.py's feature batch: config.eval.batch_size rounded down to a multiple of the chips (at least one each)
    eval_batch = max(tpu.num_chips, config.eval.batch_size - config.eval.batch_size % tpu.num_chips)
    images = abstract_batch(mesh, eval_batch, plan.image_shape)["image"]
    if "embed" in steps:
      reports.append(compile_step("embed", embed, (variables, images, key, False), tpu, eval_batch // tpu.num_chips))
    if "probe" in steps:
      features = jax.eval_shape(lambda v, b, k: embed(v, b, k, False), variables, images, key)
      dim = features["h"].shape[-1]
      _, _, num_classes = dataset_geometry(config)
      if num_classes < 1:
        raise ValueError(
          f"config.dataset.name={config.dataset.name!r}: its number of classes is not known ahead "
          "of time, which the linear-probe step needs: give its DatasetSpec num_classes, or leave "
          "'probe' out of the steps"
        )
      optimizer = make_probe_optimizer(0.05, 0.9, 5e-6, 100)
      params = {
        "weights": jax.ShapeDtypeStruct((dim, num_classes), jnp.float32, sharding=replicated),
        "bias": jax.ShapeDtypeStruct((num_classes,), jnp.float32, sharding=replicated),
      }
      opt_state = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), jax.eval_shape(optimizer.init, params)
      )
      # the probe's global batch (256 in run_linear_probe) rounded up to a multiple of the chips
      probe_batch = -(-256 // tpu.num_chips) * tpu.num_chips
      batch_sharding = gdata.batch_sharding(mesh)
      x = jax.ShapeDtypeStruct((probe_batch, dim), jnp.float32, sharding=batch_sharding)
      y = jax.ShapeDtypeStruct((probe_batch,), jnp.int32, sharding=batch_sharding)
      reports.append(
        compile_step(
          "probe", make_probe_step(optimizer, mesh), (params, opt_state, x, y), tpu, probe_batch // tpu.num_chips
        )
      )
  return reports


def largest_per_chip_batch(
  config, topology: str, *, start: int = 8, limit: int = 4096, log=None
) -> tuple[int, list[StepReport]]:
  """The largest power-of-two per-chip batch whose train step compiles and fits
  in the chip's HBM (0 if even ``start`` does not), by doubling from ``start``
  up to ``limit``; returns it with every compile's report."""
  reports, best, batch = [], 0, start
  while batch <= limit:
    report = compile_run(config, topology, per_chip_batch=batch, steps=("train",))[0]
    reports.append(report)
    if log:
      log(report)
    if not report.fits:
      break
    best, batch = batch, batch * 2
  return best, reports


def recipe_chip_hours(report: StepReport, config, examples: int) -> float:
  """Chip-hours of the whole recipe at this step time: steps x estimate x chips / 3600."""
  steps = (
    config.num_train_steps
    if config.num_train_steps > 0
    else math.ceil(config.num_epochs * (examples // report.global_batch))
  )
  return steps * report.estimate_seconds * report.chips / 3600


def format_bytes(n: float) -> str:
  return f"{n / GIB:.2f}"


TABLE_HEADER = (
  "| step | slice | chips / hosts | batch per chip | compiled | GiB per chip (args / temp / total) "
  "of HBM | TFLOP per chip per step | estimate s (source) | img/s per chip | MFU |\n"
  "|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(r: StepReport) -> str:
  if not r.compiled:
    return f"| {r.step} | {r.slice} | {r.chips} / {r.hosts} | {r.per_chip_batch} | **no**: {r.error} | | | | | |"
  memory = (
    f"{format_bytes(r.argument_bytes)} / {format_bytes(r.temp_bytes)} / "
    f"{format_bytes(r.total_bytes)} of {format_bytes(r.hbm_bytes)}{'' if r.fits else ' **does not fit**'}"
  )
  return (
    f"| {r.step} | {r.slice} | {r.chips} / {r.hosts} | {r.per_chip_batch} | yes ({r.compile_seconds:.0f} s) | "
    f"{memory} | {r.flops / 1e12:.3g} | {r.estimate_seconds:.3g} ({r.estimate_source}) | "
    f"{r.images_per_second_per_chip:.4g} | {100 * r.mfu:.0f} % |"
  )


def main(argv) -> None:
  from absl import flags

  f = flags.FLAGS
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  config = f.config
  steps = tuple(s for s in f.steps.split(",") if s)
  out = open(f.json, "a") if f.json else None
  print(f"jax {jax.__version__}; every time below is a compiler estimate, not a measurement", flush=True)
  print(TABLE_HEADER, flush=True)

  def emit(report: StepReport, **extra):
    print(table_row(report), flush=True)
    if out:
      out.write(json.dumps(dict(report.as_dict(), label=f.config_label, **extra)) + "\n")
      out.flush()

  for topology in (t for t in f.topology.split(",") if t):
    for report in compile_run(config, topology, per_chip_batch=f.per_chip_batch, steps=steps):
      emit(report)
    if f.search_batch:
      best, _ = largest_per_chip_batch(
        config, topology, start=f.search_start, limit=f.search_limit, log=lambda r: emit(r, search=True)
      )
      print(f"largest power-of-two batch per chip that fits on {topology}: {best or 'none'}", flush=True)
  if out:
    out.close()


def _define_flags():
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file(
    "config", None, "Config file, path.py[:variant]; fields as --config.x=y.", lock_config=True
  )
  flags.DEFINE_string("config_label", "", "A label for the JSON rows (default: none).")
  flags.DEFINE_string("topology", "v5e:2x2", "TPU topologies or slice names, comma-separated (v5e:16x16, v4-32).")
  flags.DEFINE_integer("per_chip_batch", None, "Global batch = this x chips (default: the config's batch_size).")
  flags.DEFINE_string("steps", ",".join(STEPS), f"Which steps to compile, of {STEPS}.")
  flags.DEFINE_boolean("search_batch", False, "Also find the largest power-of-two per-chip batch that fits.")
  flags.DEFINE_integer("search_start", 8, "First per-chip batch of the search.")
  flags.DEFINE_integer("search_limit", 4096, "Largest per-chip batch the search tries.")
  flags.DEFINE_string("json", "", "Append one JSON row per compile to this file.")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  from absl import app

  _define_flags()
  app.run(main)
