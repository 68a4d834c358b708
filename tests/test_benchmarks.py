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
