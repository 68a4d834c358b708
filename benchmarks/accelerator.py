"""The VJE train step on whatever accelerator is present, against PyTorch on the
same device in the same process: images/s, step time, compile time, peak device
memory and model FLOPs utilisation (MFU).

  python benchmarks/accelerator.py                      # GPU/TPU: ResNet-18 (CIFAR stem, 32x32) and ResNet-50 (224)
  python benchmarks/accelerator.py --model r50 --batch 128,256
  python benchmarks/accelerator.py --tiny               # CPU check at toy sizes (what the test runs)

The JAX rows are gjax's own step (``make_train_step``: both views augmented on
the device, forward, backward, SGD update) with ``model.compute_dtype =
bfloat16`` and float32 parameters, plus the same step on pre-made views (what
the PyTorch reference does). The PyTorch rows are the reference ResNet + VJE
loss of ``benchmarks/train_step.py`` on the same device, channels-last, under
``torch.autocast(bfloat16)``, eager and ``torch.compile``-d. FLOPs per step
come from XLA's cost analysis of the JAX step on pre-made views (so both
frameworks are credited the same work); MFU = FLOPs / step time / the device's
published dense bf16 peak (:data:`PEAK_BF16_FLOPS`; nan where unknown, e.g.
CPU). Peak memory is the device's ``peak_bytes_in_use`` (JAX) and
``torch.cuda.max_memory_allocated`` (JAX's is the process's peak so far: read
it from the first row of a fresh process). Medians over ``--steps`` steps after
warm-up. The last column is the step's speed relative to PyTorch eager
(> 1: faster than PyTorch).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

import gjax  # noqa: E402,F401  (first: gjax's start-up settings reach jax before it starts)
from benchmarks.train_step import bench_config, jax_rows, median_seconds, torch_resnet  # noqa: E402

#: Dense bf16 peak FLOP/s by device kind (vendors' data sheets), matched as a
#: lower-case substring of ``jax.devices()[0].device_kind``, first match wins.
PEAK_BF16_FLOPS = (
  ("h200", 989e12),
  ("h100 pcie", 756e12),
  ("h100", 989e12),
  ("a100", 312e12),
  ("l40s", 362e12),
  ("l4", 121e12),
  ("a10g", 70e12),
  ("v100", 125e12),  # V100: fp16 tensor cores (no bf16)
  ("tpu v6", 918e12),
  ("tpu v5p", 459e12),
  ("tpu v5 lite", 197e12),
  ("tpu v5e", 197e12),
  ("tpu v4", 275e12),
)

#: (arch, stem, image size, default batch sizes on an accelerator)
MODELS = {"r18": ("resnet18", "cifar", 32, "256,512,1024"), "r50": ("resnet50", "imagenet", 224, "64,128,256")}


def peak_flops(device_kind: str) -> float:
  kind = device_kind.lower()
  return next((flops for key, flops in PEAK_BF16_FLOPS if key in kind), math.nan)


def jax_peak_bytes() -> float:
  stats = jax.devices()[0].memory_stats() or {}
  return float(stats.get("peak_bytes_in_use", math.nan))


def torch_rows(config, steps: int, compile_modes=(False, True)) -> list[tuple[str, float, float, float]]:
  """``(name, seconds per step, compile/warm-up seconds, peak bytes)`` of the PyTorch
  reference step on the accelerator (CUDA) or the CPU, bf16 autocast, channels-last."""
  try:
    import torch
    from torch import nn
  except ImportError:
    return []
  device = "cuda" if torch.cuda.is_available() else "cpu"
  rows = []
  for compiled in compile_modes:
    torch.manual_seed(0)
    encoder = torch_resnet(config)
    dim, bottleneck = encoder.out_features, config.model.bottleneck
    trunk = nn.Sequential(
      nn.Linear(dim, bottleneck),
      nn.LayerNorm(bottleneck),
      nn.ReLU(),
      nn.Linear(bottleneck, bottleneck),
      nn.LayerNorm(bottleneck),
      nn.ReLU(),
      nn.Linear(bottleneck, dim),
      nn.LayerNorm(dim),
      nn.ReLU(),
    )
    heads = nn.Linear(dim, 2 * dim)
    modules = nn.ModuleList([encoder, trunk, heads]).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(modules.parameters(), lr=0.05, momentum=0.9, weight_decay=config.optim.weight_decay)
    nu, beta, eps = config.vje.nu, config.vje.beta, 1e-6

    def loss_of(v1, v2):
      with torch.autocast(device_type=device, dtype=torch.bfloat16):
        zs, posts = [], []
        for v in (v1, v2):
          z = encoder(v)
          mu, raw = heads(trunk(z)).float().chunk(2, dim=-1)
          zs.append(z.float())
          posts.append((mu, nn.functional.softplus(raw) + eps))
      loss = 0.0
      for i, j in ((0, 1), (1, 0)):
        mu, var = posts[i]
        s = mu + var.sqrt() * torch.randn_like(mu)
        target = zs[j].detach()
        zh = target / target.norm(dim=-1, keepdim=True).clamp_min(eps)
        sh = s / s.norm(dim=-1, keepdim=True).clamp_min(eps)
        q = ((sh - zh) ** 2 / var).sum(-1)
        directional = 0.5 * (nu + dim) * torch.log1p(q / nu) + 0.5 * torch.log(var).sum(-1)
        radial = 0.5 * (nu + 1) * torch.log1p((target.norm(dim=-1) - s.norm(dim=-1)) ** 2 / nu)
        kl = 0.5 * (var + mu**2 - 1 - torch.log(var)).sum(-1)
        loss = loss + 0.5 * (directional + radial + beta * kl).mean()
      return loss

    forward = torch.compile(loss_of) if compiled else loss_of

    def step(v1, v2):
      opt.zero_grad(set_to_none=True)
      loss = forward(v1, v2)
      loss.backward()
      opt.step()
      if device == "cuda":
        torch.cuda.synchronize()
      return loss

    size = config.dataset.synthetic_image_size
    views = [
      torch.randn(config.batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
      for _ in range(2)
    ]
    if device == "cuda":
      torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step(*views)
    warm = time.perf_counter() - start
    step(*views)
    seconds = median_seconds(lambda: step(*views), steps)
    peak = float(torch.cuda.max_memory_allocated()) if device == "cuda" else math.nan
    rows.append((f"torch {'compile' if compiled else 'eager'} bf16 (views given)", seconds, warm, peak))
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="r18,r50", help="comma-separated: r18 (CIFAR stem, 32x32), r50 (224x224)")
  parser.add_argument("--batch", default="", help="batch sizes (default: per model, sized for one 80 GB GPU)")
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument("--no-torch-compile", action="store_true")
  parser.add_argument(
    "--tiny",
    action="store_true",
    help="CPU check: ResNet-10-shaped toy sizes (width 1/16, 16x16 / 32x32, batch 8), 2 steps",
  )
  args = parser.parse_args(argv)
  device = jax.devices()[0]
  peak = peak_flops(device.device_kind)
  print(
    f"device: {jax.device_count()} x {device.device_kind} ({device.platform}); jax {jax.__version__}; "
    f"dense bf16 peak {peak / 1e12:.0f} TFLOP/s per device"
    if peak == peak
    else f"device: {jax.device_count()} x {device.device_kind} ({device.platform}); jax {jax.__version__}; "
    "no published bf16 peak known: MFU nan"
  )
  print(
    "| model | image | width | batch | step | ms/step | images/s | compile s | peak GiB | TFLOP/step | MFU % | "
    "speed vs torch eager |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for key in args.model.split(","):
    arch, stem, image, batches = MODELS[key]
    width, steps = args.width, args.steps
    if args.tiny:
      width, steps, batches, image = 1 / 16, 2, "8", (16 if key == "r18" else 32)
    for batch in (int(b) for b in (args.batch or batches).split(",")):
      config = bench_config(arch, stem, image, batch, width, "bfloat16")
      rows = [
        (name, seconds, compile_s, jax_peak_bytes(), flops)
        for name, seconds, compile_s, flops in jax_rows(config, steps, with_flops=True)
      ]
      flops = rows[0][4]  # the step on pre-made views: the work both frameworks do
      if not args.no_torch:
        modes = (False,) if args.no_torch_compile else (False, True)
        rows += [row + (flops,) for row in torch_rows(config, steps, modes)]
      torch_eager = next((r[1] for r in rows if r[0].startswith("torch eager")), math.nan)
      for name, seconds, compile_s, peak_bytes, row_flops in rows:
        mfu = 100 * row_flops / seconds / (peak * jax.device_count())
        print(
          f"| {arch} | {image} | {width:g} | {batch} | {name} | {1e3 * seconds:.2f} | {batch / seconds:.4g} | "
          f"{compile_s:.1f} | {peak_bytes / 2**30:.2f} | {row_flops / 1e12:.4g} | {mfu:.1f} | "
          f"{torch_eager / seconds:.2f} |",
          flush=True,
        )


if __name__ == "__main__":
  main()
