"""Where the VJE train step's time goes on CPU: gjax's own train step (both views
augmented on the device, forward, backward, update) traced with
``jax.profiler`` and its XLA operations summed by kind.

  python benchmarks/step_profile.py --width 0.25 --batch 128
  GJAX_XLA_CPU_DEFAULTS=0 python benchmarks/step_profile.py ...   # XLA's default convolution path

Prints the wall time per step, the share of each kind of operation
(convolutions, the BatchNorm / element-wise fusions, reductions, copies and
transposes, ...) and the heaviest single operations. Times are summed over
XLA's thunks on all threads and divided by the number of steps, so the shares
are of the busy time, which on 2 cores can exceed the wall time.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import gjax  # noqa: E402,F401  (first: gjax's start-up settings reach jax before it starts)
from benchmarks.train_step import bench_config  # noqa: E402
from gjax import data as gdata  # noqa: E402
from gjax.train import create_train_state, make_optimizer, make_train_step  # noqa: E402
from gjax.train.input_pipeline import augment_config  # noqa: E402
from gjax.train.state import build_method  # noqa: E402

#: (kind, pattern on the XLA operation's name), first match wins.
KINDS = (
  ("convolution (ynn_fusion: YNNPACK)", r"convolution|conv|ynn|xnn|onednn"),
  ("dot (MLP heads)", r"^dot|custom-call"),
  ("reduce (BatchNorm statistics, sums)", r"reduce"),
  ("transpose / copy / layout", r"^(transpose|copy|bitcast|slice|concatenate|pad|dynamic)"),
  ("random numbers (augmentation, sampling)", r"rng|threefry|random"),
  ("element-wise fusion", r"fusion|add|multiply|subtract|divide|maximum|select|exp|log|rsqrt|sqrt"),
  ("other", r"."),
)


#: Events on XLA's threads that are not one operation (they enclose or mark operations).
NOT_OPERATIONS = ("ThunkExecutor", "ThreadpoolListener", "SlinkyThreadPool", "end: ", "$")


def kind_of(name: str) -> str:
  for kind, pattern in KINDS:
    if re.search(pattern, name):
      return kind
  return "other"


def profile_step(config, steps: int):
  mesh = gdata.data_mesh()
  objective, hparams, model = build_method(config)
  tx, _ = make_optimizer(config, 100, 1000)
  shape = (config.dataset.synthetic_image_size,) * 2 + (3,)
  state = create_train_state(jax.random.PRNGKey(0), model, tx, shape, gdata.replicated_sharding(mesh))
  images = np.random.default_rng(0).integers(0, 256, (config.batch_size,) + shape, dtype=np.uint8)
  batch = gdata.make_global_batch({"image": images, "label": np.zeros(config.batch_size, np.int32)}, mesh)
  step = make_train_step(model, objective, hparams, tx, augment_config(config, shape), jax.random.PRNGKey(1), mesh)
  for _ in range(3):  # compile and warm up
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  trace_dir = tempfile.mkdtemp(prefix="gjax-step-profile-")
  start = time.perf_counter()
  with jax.profiler.trace(trace_dir):
    for _ in range(steps):
      state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
  wall = (time.perf_counter() - start) / steps
  paths = [os.path.join(d, f) for d, _, fs in os.walk(trace_dir) for f in fs if f.endswith(".xplane.pb")]
  if not paths:
    raise RuntimeError(f"jax.profiler wrote no .xplane.pb under {trace_dir}")
  with open(paths[0], "rb") as f:
    data = jax.profiler.ProfileData.from_serialized_xspace(f.read())
  by_op = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLA"):  # XLA's worker threads (not the Python thread)
        continue
      for event in line.events:
        if not event.name.startswith(NOT_OPERATIONS):
          by_op[event.name] += event.duration_ns / 1e6 / steps
  return wall * 1e3, by_op


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--arch", default="resnet18")
  parser.add_argument("--stem", default="cifar")
  parser.add_argument("--image", type=int, default=32)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--width", type=float, default=0.25)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--top", type=int, default=15)
  args = parser.parse_args()
  config = bench_config(args.arch, args.stem, args.image, args.batch, args.width)
  wall_ms, by_op = profile_step(config, args.steps)
  total = sum(by_op.values())
  print(
    f"{args.arch} x{args.width} ({args.stem} stem, {args.image}x{args.image}), batch {args.batch}; "
    f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
  )
  print(f"wall {wall_ms:.1f} ms/step; XLA operations {total:.1f} ms/step summed over threads\n")
  by_kind = collections.Counter()
  for name, ms in by_op.items():
    by_kind[kind_of(name)] += ms
  print("| kind | ms/step | share |\n|---|---|---|")
  for kind, ms in by_kind.most_common():
    print(f"| {kind} | {ms:.1f} | {100 * ms / total:.1f} % |")
  print("\n| heaviest operations | kind | ms/step | share |\n|---|---|---|---|")
  for name, ms in by_op.most_common(args.top):
    print(f"| {name} | {kind_of(name)} | {ms:.1f} | {100 * ms / total:.1f} % |")


if __name__ == "__main__":
  main()
