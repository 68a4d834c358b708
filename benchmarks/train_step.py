"""VJE train-step throughput: gjax (JAX) against a plain PyTorch reference of
the same step, timed in the same process so the figure is a ratio on one machine.

  python benchmarks/train_step.py --arch resnet18 --stem cifar --image 32 --batch 64,128 --width 0.25,1.0
  python benchmarks/train_step.py --arch resnet50 --stem imagenet --image 224 --batch 32 --width 1.0
  XLA_FLAGS=--xla_cpu_use_onednn=true python benchmarks/train_step.py ...   # an XLA CPU option
  python benchmarks/train_step.py --fake_devices 4 --no-torch                  # device scaling

The step: both views through the encoder (BatchNorm in training mode), the
VJE inference network, the loss of Eq. 38 (directional + radial Student-t NLL
with stop-gradient on the observed view, KL to N(0, I)), backward, SGD with
momentum 0.9 and weight decay. Rows:

* ``jax step (views given)``: that step under ``jax.jit`` on pre-made views;
* ``jax step (incl. augmentation)``: gjax's own train step, which also makes
  both augmented views on the device (what ``train.py`` runs);
* ``jax step (host batch each step)``: the same plus the host -> device copy
  of a fresh uint8 numpy batch every step (``make_global_batch``), i.e. the
  whole of ``train.py``'s step but the data set read;
* ``torch step (views given)``: the PyTorch reference (``torch.nn`` ResNet of
  the same shape, the same loss written with ``torch`` ops).

Compile time (JAX's first call) is reported apart. Medians over ``--steps``
timed steps after two warm-up steps. PyTorch is optional (``pip install
torch==2.13.0``); without it only the JAX rows are printed.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "--fake_devices" in sys.argv:  # must reach XLA before jax starts
  _count = sys.argv[sys.argv.index("--fake_devices") + 1]
  os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_count}"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import gjax  # noqa: E402,F401  (first: gjax's start-up settings reach jax before it starts)
from gjax import data as gdata  # noqa: E402
from gjax.train import base_config, create_train_state, make_optimizer, make_train_step  # noqa: E402
from gjax.train.input_pipeline import augment_config  # noqa: E402
from gjax.train.state import TrainState, build_method  # noqa: E402


def bench_config(arch: str, stem: str, image: int, batch: int, width: float, dtype: str = "float32"):
  c = base_config("vje")
  c.dataset.name = "synthetic"
  c.dataset.synthetic_image_size = image
  c.dataset.synthetic_channels = 3
  c.model.encoder, c.model.stem, c.model.width_multiplier = arch, stem, width
  c.model.bottleneck = 512 if arch == "resnet50" else 128
  c.model.compute_dtype = dtype
  c.batch_size = batch
  return c


def median_seconds(fn, steps: int) -> float:
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def step_flops(jitted, *args) -> float:
  """FLOPs of one call of ``jitted(*args)`` from XLA's cost analysis (nan if it has none)."""
  cost = jitted.lower(*args).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", math.nan))


def jax_rows(config, steps: int, with_flops: bool = False) -> list[tuple]:
  """``(row name, median seconds per step, compile seconds[, FLOPs per step])``;
  the FLOPs are those of the first row's step (on pre-made views) for every row."""
  mesh = gdata.data_mesh()
  objective, hparams, model = build_method(config)
  tx, _ = make_optimizer(config, 100, 1000)
  shape = (config.dataset.synthetic_image_size,) * 2 + (3,)
  state = create_train_state(jax.random.PRNGKey(0), model, tx, shape, gdata.replicated_sharding(mesh))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (config.batch_size,) + shape, dtype=np.uint8)
  batch = gdata.make_global_batch({"image": images, "label": np.zeros(config.batch_size, np.int32)}, mesh)
  views = [jnp.asarray(rng.normal(size=(config.batch_size,) + shape).astype(np.float32)) for _ in range(2)]

  def views_step(state, view_1, view_2, key):
    def loss_fn(params):
      outputs, model_state = model.apply(
        {"params": params, **state.model_state}, view_1, view_2, train=True, mutable=list(state.model_state)
      )
      return objective.loss_fn(outputs, key, hparams)[0], model_state

    (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(state.step + 1, optax.apply_updates(state.params, updates), model_state, opt_state), loss

  gjax_step = make_train_step(model, objective, hparams, tx, augment_config(config, shape), jax.random.PRNGKey(1), mesh)
  host_batch = {"image": images, "label": np.zeros(config.batch_size, np.int32)}
  rows = []
  for name, step, args in (
    ("jax step (views given)", jax.jit(views_step, donate_argnums=(0,)), lambda: (*views, jax.random.PRNGKey(1))),
    ("jax step (incl. augmentation)", gjax_step, lambda: (batch,)),
    ("jax step (host batch each step)", gjax_step, lambda: (gdata.make_global_batch(host_batch, mesh),)),
  ):
    holder = {"state": jax.tree_util.tree_map(jnp.copy, state)}

    def run():
      holder["state"], out = step(holder["state"], *args())
      jax.block_until_ready(out)

    start = time.perf_counter()  # compile time: the cost analysis's AOT compile, which the first call reuses
    flops = (step_flops(step, holder["state"], *args()) if not rows else rows[0][3]) if with_flops else None
    run()
    compile_s = time.perf_counter() - start
    run()
    run()
    rows.append((name, median_seconds(run, steps), compile_s) + ((flops,) if with_flops else ()))
  return rows


def torch_resnet(config):
  """The PyTorch ResNet of ``config.model``'s shape (``torch.nn``, NCHW), pooled features out."""
  import torch
  from torch import nn

  expansion = 4 if config.model.encoder == "resnet50" else 1
  stages = {"resnet10": (1, 1, 1, 1), "resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}[
    config.model.encoder
  ]

  class Block(nn.Module):
    def __init__(self, cin, width, stride):
      super().__init__()
      cout = width * expansion
      if expansion == 1:
        self.body = nn.Sequential(
          nn.Conv2d(cin, width, 3, stride, 1, bias=False),
          nn.BatchNorm2d(width),
          nn.ReLU(),
          nn.Conv2d(width, width, 3, 1, 1, bias=False),
          nn.BatchNorm2d(width),
        )
      else:
        self.body = nn.Sequential(
          nn.Conv2d(cin, width, 1, bias=False),
          nn.BatchNorm2d(width),
          nn.ReLU(),
          nn.Conv2d(width, width, 3, stride, 1, bias=False),
          nn.BatchNorm2d(width),
          nn.ReLU(),
          nn.Conv2d(width, cout, 1, bias=False),
          nn.BatchNorm2d(cout),
        )
      self.skip = (
        nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        if stride != 1 or cin != cout
        else nn.Identity()
      )

    def forward(self, x):
      return torch.relu(self.body(x) + self.skip(x))

  widths = [max(1, int(round(w * config.model.width_multiplier))) for w in (64, 128, 256, 512)]
  if config.model.stem == "imagenet":
    layers = [nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
  else:
    layers = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
  cin = widths[0]
  for i, (width, count) in enumerate(zip(widths, stages)):
    for j in range(count):
      layers.append(Block(cin, width, 2 if (i > 0 and j == 0) else 1))
      cin = width * expansion
  encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
  encoder.out_features = cin
  return encoder


def torch_row(config, steps: int):
  try:
    import torch
    from torch import nn
  except ImportError:
    return None

  encoder = torch_resnet(config)
  cin = encoder.out_features
  dim, bottleneck = cin, config.model.bottleneck
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
  mu_head, var_head = nn.Linear(dim, dim), nn.Linear(dim, dim)
  modules = nn.ModuleList([encoder, trunk, mu_head, var_head])
  opt = torch.optim.SGD(modules.parameters(), lr=0.05, momentum=0.9, weight_decay=config.optim.weight_decay)
  nu, beta, eps = config.vje.nu, config.vje.beta, 1e-6

  def directional(z, s, var):
    zh = z / z.norm(dim=-1, keepdim=True).clamp_min(eps)
    sh = s / s.norm(dim=-1, keepdim=True).clamp_min(eps)
    q = ((sh - zh) ** 2 / var).sum(-1)
    return 0.5 * (nu + dim) * torch.log1p(q / nu) + 0.5 * torch.log(var).sum(-1)

  def radial(z, s):
    return 0.5 * (nu + 1) * torch.log1p((z.norm(dim=-1) - s.norm(dim=-1)) ** 2 / nu)

  def step(v1, v2):
    opt.zero_grad(set_to_none=True)
    zs, posts = [], []
    for v in (v1, v2):
      z = encoder(v)
      h = trunk(z)
      zs.append(z)
      posts.append((mu_head(h), nn.functional.softplus(var_head(h)) + eps))
    loss = 0.0
    for i, j in ((0, 1), (1, 0)):
      mu, var = posts[i]
      s = mu + var.sqrt() * torch.randn_like(mu)
      target = zs[j].detach()
      kl = 0.5 * (var + mu**2 - 1 - torch.log(var)).sum(-1)
      loss = loss + 0.5 * (directional(target, s, var) + radial(target, s) + beta * kl).mean()
    loss.backward()
    opt.step()
    return loss

  size = config.dataset.synthetic_image_size
  views = [torch.randn(config.batch_size, 3, size, size) for _ in range(2)]
  modules.train()
  for _ in range(2):
    step(*views)
  return ("torch step (views given)", median_seconds(lambda: step(*views), steps), math.nan)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--arch", default="resnet18")
  parser.add_argument("--stem", default="cifar")
  parser.add_argument("--image", type=int, default=32)
  parser.add_argument("--batch", default="64")
  parser.add_argument("--width", default="0.25")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument(
    "--dtype",
    default="float32",
    choices=("float32", "bfloat16"),
    help="the JAX model's compute dtype (parameters stay float32)",
  )
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument(
    "--torch-only",
    action="store_true",
    help="only the PyTorch row (e.g. from another Python whose torch build is at hand)",
  )
  parser.add_argument("--fake_devices", type=int, default=0, help="CPU: split the host into this many devices")
  args = parser.parse_args()
  print(
    f"jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} device(s); "
    f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; Python {sys.version.split()[0]}; load {os.getloadavg()[0]:.2f}"
  )
  print("| arch | stem | image | width | batch | step | ms/step | images/s | compile s | torch / this |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for width in (float(w) for w in args.width.split(",")):
    for batch in (int(b) for b in args.batch.split(",")):
      config = bench_config(args.arch, args.stem, args.image, batch, width, args.dtype)
      rows = [] if args.torch_only else jax_rows(config, args.steps)
      torch_result = None if args.no_torch else torch_row(config, args.steps)
      if torch_result is not None:
        rows.append(torch_result)
      torch_s = torch_result[1] if torch_result else math.nan
      for name, seconds, compile_s in rows:
        print(
          f"| {args.arch} | {args.stem} | {args.image} | {width} | {batch} | {name} | {1e3 * seconds:.1f} | "
          f"{batch / seconds:.3g} | {compile_s:.1f} | {torch_s / seconds:.2f} |",
          flush=True,
        )
  print(f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
