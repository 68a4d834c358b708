"""benchmarks/accelerator.py at toy sizes on the CPU: the table it prints (the
GPU/TPU measurement is the same code at real sizes)."""

import math

import pytest

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
  assert [r[4] for r in rows] == [
    "jax step (views given)",
    "jax step (incl. augmentation)",
    "jax step (host batch each step)",
  ]
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


def test_throughput_report_puts_before_and_after_side_by_side():
  from benchmarks import throughput_report

  def table(gjax_ms, torch_ms):
    return (
      "1 cpu device(s); XLA_FLAGS=''; load 0.1\n"
      "| arch | stem | image | width | batch | step | ms/step | images/s | compile s | torch / this |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n"
      f"| resnet18 | cifar | 32 | 0.25 | 128 | jax step (views given) | 1.0 | 1 | 4.0 | 1.00 |\n"
      f"| resnet18 | cifar | 32 | 0.25 | 128 | jax step (incl. augmentation) | {gjax_ms} | 1 | 8.0 | 0.5 |\n"
      f"| resnet18 | cifar | 32 | 0.25 | 128 | torch step (views given) | {torch_ms} | 1 | nan | 1.00 |\n"
    )

  raw = (
    "# step: 2026 x86_64\n## train step, before: XLA's defaults\n"
    + table(500.0, 250.0)
    + "## train step, after: gjax's CPU flag\n"
    + table(400.0, 260.0)
    + "## the whole train step by kind\nwall 380.4 ms/step\n| kind | ms/step | share |\n|---|---|---|\n"
    + "| convolution | 1.0 | 100 % |\n"
  )
  out = throughput_report.report(raw)
  assert "| resnet18 (cifar stem) | 32 | 0.25 | 128 | 500.0 | 250.0 | 0.50 | 400.0 | 260.0 | 0.65 | 1.25x |" in out
  assert "## the whole train step by kind\n\n    wall 380.4 ms/step\n| kind |" in out
  with pytest.raises(ValueError, match="no 'train step, before:'"):
    throughput_report.report("## other\n")
