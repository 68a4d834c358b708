"""Input pipeline throughput alone, next to the train step it feeds (same process).

  python benchmarks/input_pipeline.py --config configs/vje_fashion_mnist.py --steps 20

Measures, after a warm-up (compilation excluded):
  host      the host side alone: ArrayDataset batches (uint8 numpy);
  pipeline  host batch -> global sharded array -> both augmented views on the
            device (jitted, block_until_ready): everything the step consumes;
  step      the full jitted train step (forward + backward + update) on
            pre-built batches, for the ratio pipeline / step.
The pipeline is not the bottleneck when its images/s is well above the step's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

import gjax  # noqa: E402,F401  (first: gjax's start-up settings reach jax before it starts)
from gjax import data as gdata  # noqa: E402
from gjax.cli import load_config  # noqa: E402
from gjax.train import create_train_state, make_optimizer, make_train_step  # noqa: E402
from gjax.train.input_pipeline import build_train_input  # noqa: E402
from gjax.train.state import build_method  # noqa: E402


def timed(fn, steps: int) -> float:
  fn()  # warm-up / compile
  start = time.perf_counter()
  for _ in range(steps):
    fn()
  return (time.perf_counter() - start) / steps


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/vje_fashion_mnist.py")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--skip-step", action="store_true", help="time only the input pipeline")
  args = parser.parse_args()
  config = load_config(args.config)
  mesh = gdata.data_mesh()
  train_input = build_train_input(config)
  host_iter = train_input.batches(0)
  augment = train_input.augment
  views = jax.jit(lambda rng, images: gdata.two_views(rng, images, augment))
  batch_size = config.batch_size
  print(
    f"config {args.config}: batch {batch_size}, image {train_input.image_shape}, "
    f"{jax.device_count()} {jax.devices()[0].platform} device(s), load {os.getloadavg()[0]:.2f}"
  )

  host_s = timed(lambda: next(host_iter), args.steps)
  rng = jax.random.PRNGKey(0)

  def pipeline():
    batch = gdata.make_global_batch(next(host_iter), mesh)
    jax.block_until_ready(views(rng, batch["image"]))

  pipe_s = timed(pipeline, args.steps)
  rows = [("host (ArrayDataset)", host_s), ("pipeline (host + device augmentation)", pipe_s)]
  if not args.skip_step:
    objective, hparams, model = build_method(config)
    tx, _ = make_optimizer(config, train_input.steps_per_epoch, 1000)
    state = create_train_state(
      jax.random.PRNGKey(0), model, tx, train_input.image_shape, gdata.replicated_sharding(mesh)
    )
    step = make_train_step(model, objective, hparams, tx, augment, rng, mesh)
    batches = [gdata.make_global_batch(next(host_iter), mesh) for _ in range(2)]
    holder = {"state": state, "i": 0}

    def train_step():
      holder["state"], metrics = step(holder["state"], batches[holder["i"] % 2])
      holder["i"] += 1
      jax.block_until_ready(metrics)

    rows.append(("train step (incl. its augmentation)", timed(train_step, args.steps)))
  print(f"{'stage':40s} {'ms/batch':>10s} {'images/s':>10s}")
  for name, seconds in rows:
    print(f"{name:40s} {1e3 * seconds:10.1f} {batch_size / seconds:10.0f}")
  if not args.skip_step:
    print(
      f"pipeline / step throughput ratio: {rows[2][1] / rows[1][1]:.1f}x "
      f"(the pipeline alone delivers that many times what the step consumes)"
    )
  print(f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
