"""benchmarks/accelerator.py at toy sizes on the CPU: the table it prints (the
GPU/TPU measurement is the same code at real sizes)."""

import math

from benchmarks import accelerator


def test_peak_flops_table():
  assert accelerator.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
  assert accelerator.peak_flops("NVIDIA H100 PCIe") == 756e12
  assert accelerator.peak_flops("TPU v5 lite") == 197e12
  assert math.isnan(accelerator.peak_flops("cpu"))


def test_accelerator_benchmark_prints_its_table_at_toy_sizes(capsys):
  accelerator.main(["--model", "r18", "--tiny", "--no-torch"])
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("device: 8 x cpu (cpu)") and "MFU nan" in lines[0]
  header = [c.strip() for c in lines[1].strip("|").split("|")]
  assert header[:6] == ["model", "image", "width", "batch", "step", "ms/step"] and "MFU %" in header
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[3:]]
  assert [r[4] for r in rows] == ["jax step (views given)", "jax step (incl. augmentation)",
                                  "jax step (host batch each step)"]
  for row in rows:
    ms, images_per_second, compile_s, tflops = (float(row[i]) for i in (5, 6, 7, 9))
    assert ms > 0 and images_per_second > 0 and compile_s > 0 and tflops > 0
    assert abs(images_per_second - 8 / (ms / 1e3)) / images_per_second < 0.01


def test_step_profile_sums_the_traced_operations_by_kind():
  from benchmarks import step_profile, train_step

  assert step_profile.kind_of("ynn_fusion.3").startswith("convolution")
  assert step_profile.kind_of("transpose_copy_fusion.69") == "transpose / copy / layout"
  assert step_profile.kind_of("multiply_bitcast_fusion") == "element-wise fusion"
  assert step_profile.kind_of("add_maximum_fusion.2") == "element-wise fusion"
  config = train_step.bench_config("resnet10", "cifar", 16, 8, 0.125)
  wall_ms, by_op = step_profile.profile_step(config, steps=1)
  assert wall_ms > 0 and by_op and all(ms >= 0 for ms in by_op.values())
  assert not any(name.startswith(step_profile.NOT_OPERATIONS) for name in by_op)
  kinds = {step_profile.kind_of(name) for name in by_op}
  assert "element-wise fusion" in kinds and any(k.startswith("convolution") for k in kinds), kinds
