"""Where the JAX / PyTorch gap of the train step lies on CPU: encoder forward
against forward + backward, and one 3x3 convolution's forward, input gradient
and kernel gradient, JAX and PyTorch timed in the same process.

  python benchmarks/conv_profile.py --width 0.25 --batch 128

Medians of ``--steps`` timed calls after a warm-up (compilation excluded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

import gjax  # noqa: E402,F401  (first: gjax's start-up settings reach jax before it starts)
from gjax.models.resnet import build_encoder  # noqa: E402


def median_ms(fn, steps: int) -> float:
  fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def jax_encoder(width: float, batch: int, steps: int) -> tuple[float, float]:
  model = build_encoder("resnet18", stem="cifar", width_multiplier=width)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, 32, 32, 3)).astype(np.float32))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)

  def forward(params, stats, x):
    out, new = model.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
    return jnp.sum(out**2), new

  fwd = jax.jit(forward)
  fwd_bwd = jax.jit(jax.value_and_grad(forward, has_aux=True))
  args = (variables["params"], variables["batch_stats"], x)
  return (
    median_ms(lambda: jax.block_until_ready(fwd(*args)), steps),
    median_ms(lambda: jax.block_until_ready(fwd_bwd(*args)), steps),
  )


def torch_encoder(width: float, batch: int, steps: int) -> tuple[float, float]:
  import torch

  from benchmarks.train_step import bench_config, torch_resnet

  encoder = torch_resnet(bench_config("resnet18", "cifar", 32, batch, width))
  x = torch.randn(batch, 3, 32, 32)
  encoder.train()

  def fwd():
    with torch.no_grad():
      encoder(x)

  def fwd_bwd():
    encoder.zero_grad(set_to_none=True)
    (encoder(x) ** 2).sum().backward()

  return median_ms(fwd, steps), median_ms(fwd_bwd, steps)


def conv_rows(batch: int, steps: int):
  import torch

  dn = ("NHWC", "HWIO", "NHWC")
  rows = []
  for size, channels in ((32, 16), (16, 32), (8, 64), (32, 64)):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, size, size, channels)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, channels, channels)).astype(np.float32))
    conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)  # noqa: E731
    g = jax.jit(conv)(x, w)
    fwd = jax.jit(conv)
    dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    j = [
      median_ms(lambda f=f: jax.block_until_ready(f(*a)), steps)
      for f, a in ((fwd, (x, w)), (dx, (x, w, g)), (dw, (x, w, g)))
    ]
    tx = torch.randn(batch, channels, size, size)
    tw = torch.randn(channels, channels, 3, 3)
    tg = torch.nn.functional.conv2d(tx, tw, padding=1)
    t = [
      median_ms(lambda: torch.nn.functional.conv2d(tx, tw, padding=1), steps),
      median_ms(lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tg, padding=1), steps),
      median_ms(lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tg, padding=1), steps),
    ]
    rows.append((f"{batch}x{size}x{size}x{channels}", j, t))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--width", type=float, default=0.25)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()
  print(f"ResNet-18 x{args.width} encoder (CIFAR stem), batch {args.batch}, one view; load {os.getloadavg()[0]:.2f}")
  print("| | forward ms | forward + backward ms | backward alone ms |")
  print("|---|---|---|---|")
  for name, (f, fb) in (
    ("jax", jax_encoder(args.width, args.batch, args.steps)),
    ("torch", torch_encoder(args.width, args.batch, args.steps)),
  ):
    print(f"| {name} | {f:.1f} | {fb:.1f} | {fb - f:.1f} |")
  print("\none 3x3 convolution, stride 1 (ms; jax / torch)")
  print("| input NHWC | forward | input gradient | kernel gradient |")
  print("|---|---|---|---|")
  for shape, j, t in conv_rows(args.batch, args.steps):
    print(f"| {shape} | " + " | ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(j, t)) + " |")


if __name__ == "__main__":
  main()
