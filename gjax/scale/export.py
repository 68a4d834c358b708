"""Lower gjax's train step for GPUs (or any platform) with ``jax.export``, on this machine.

  python -m gjax.scale.export --config configs/cifar10.py:method=vje --platforms cuda,rocm

The step is the trainer's (:func:`gjax.scale.compile.plan_on_devices`) over a
mesh of this host's devices (the exported program is for that many devices);
its inputs are abstract, so nothing is computed. Lowering checks that every
operation of the step has a GPU lowering (cuSOLVER kernels for the GJE
family's decompositions; convolutions stay StableHLO ops for XLA's GPU
compiler); compiling the result needs the GPU itself.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import re

import jax

from gjax.scale.compile import abstract_train_inputs, plan_on_devices


def export_train_step(config, platforms=("cuda",), devices=None) -> jax.export.Exported:
  """``jax.export`` of ``config``'s train step for ``platforms`` on ``devices`` (default: all of this host's)."""
  plan = plan_on_devices(config, jax.devices() if devices is None else devices)
  state, batch = abstract_train_inputs(plan, config.batch_size)
  return jax.export.export(plan.train_step, platforms=tuple(platforms))(state, batch)


def custom_call_targets(exported: jax.export.Exported) -> set[str]:
  """The custom calls (library kernels: cuSOLVER, LAPACK, ...) the exported module needs."""
  text = exported.mlir_module()
  return set(re.findall(r"stablehlo\.custom_call @([\w.]+)", text)) | set(
    re.findall(r'call_target_name = "([^"]+)"', text)
  )


def main(argv) -> None:
  from absl import flags

  f = flags.FLAGS
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  exported = export_train_step(f.config, tuple(p for p in f.platforms.split(",") if p))
  print(
    f"jax {jax.__version__}: lowered the train step for {exported.platforms} on {exported.nr_devices} "
    f"device(s): {len(exported.mlir_module_serialized):,} bytes of StableHLO; custom calls: "
    f"{sorted(custom_call_targets(exported)) or 'none'}"
  )
  if f.out:
    with open(f.out, "wb") as out:
      out.write(exported.serialize())
    print(f"serialized to {f.out} (jax.export.deserialize, then .call on the GPU)")


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file(
    "config", None, "Config file, path.py[:variant]; fields as --config.x=y.", lock_config=True
  )
  flags.DEFINE_string("platforms", "cuda", "Platforms to lower for, comma-separated (cuda, rocm, tpu, cpu).")
  flags.DEFINE_string("out", "", "Write the serialized export here.")
  flags.mark_flags_as_required(["config"])
  app.run(main)
