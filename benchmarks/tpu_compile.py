"""The TPU sizing table: the papers' recipes compiled ahead of time for TPU slices on this CPU.

  python benchmarks/tpu_compile.py            # compiles what results/tpu_compile.jsonl lacks, writes the table
  python benchmarks/tpu_compile.py --report   # the table from the JSONL alone

Every recipe's train step (the trainer's own, ``gjax.scale.compile``), with
bf16 compute, on v4-8, v4-32 (4 hosts), v5p-128 (16 hosts) and v5e-256 (64
hosts) at the paper's global batch; the evaluation steps of VJE ResNet-50;
the largest power-of-two batch per chip that fits for VJE ResNet-50 on v5e and
v4; the whole recipe's cost in chip-hours at the estimated step time. Each
compile is one JSON row in ``results/tpu_compile.jsonl``, keyed by recipe,
slice, batch, step and the jax / libtpu versions: jax's persistent cache cannot
hold TPU executables without a TPU client, so the rows are the cache, and a
rerun compiles only what is missing (``--fresh`` recompiles all). Every
time and throughput in the table is a compiler estimate, not a measurement.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from gjax.scale import compile as scale_compile  # noqa: E402
from gjax.scale.topology import GIB  # noqa: E402
from studies.sweep import apply_overrides  # noqa: E402

SLICES = ("v4-8", "v4-32", "v5p-128", "v5e-256")
#: Where the largest batch per chip is searched: one host of each generation (the per-chip program is the
#: same on a larger slice but for its collectives; a v5e-256 search is also in the JSONL, see the report).
SEARCH_SLICES = ("v5e-4", "v4-8")


def _config(module: str, spec: str = "", overrides=None):
  """``configs/<module>.py:<spec>`` with bf16 compute and the dotted ``overrides``."""
  config = importlib.import_module(f"configs.{module}").get_config(spec)
  return apply_overrides(config, {"model.compute_dtype": "bfloat16", **(overrides or {})})


#: name -> (what it is, config builder). All at the paper's global batch, bf16 compute.
RECIPES = {
  "vje_r50_imagenet": (
    "VJE, ResNet-50, ImageNet-1K, 100 epochs, batch 256 (configs/imagenet.py:method=vje)",
    lambda: _config("imagenet", "method=vje"),
  ),
  "vje_r18_cifar10": (
    "VJE, ResNet-18, CIFAR-10, 800 epochs, batch 256 (configs/cifar10.py:method=vje)",
    lambda: _config("cifar10", "method=vje"),
  ),
  "vje_r18_cifar10_one_class": (
    "VJE one-class, ResNet-18, one CIFAR-10 class (5,000 images), 800 epochs, batch 64, lr 5e-6 "
    "(configs/cifar10.py:method=vje with those overrides; one model per class)",
    lambda: _config(
      "cifar10",
      "method=vje",
      overrides={"dataset.num_train_examples": 5000, "batch_size": 64, "optim.base_learning_rate": 5e-6 * 256 / 64},
    ),
  ),
  "gmje_r50_imagenet": (
    "prototype GMJE, ResNet-50, ImageNet-1K, 100 epochs, batch 256 (configs/gmje_imagenet.py "
    "fitted by gradient, no barrier: the defaults when it was compiled)",
    lambda: _config(
      "gmje_imagenet", overrides={"gmje.fit": "gradient", "gmje.log_det_weight": 0.0, "gmje.log_det_form": "batch"}
    ),
  ),
  "ijepa_vitb16_imagenet": (
    "I-JEPA, ViT-B/16 at 224 (14 x 14 patches), ImageNet-1K, 100 epochs, batch 256, predictor 384 wide and 6 deep "
    "(configs/imagenet.py:method=ijepa)",
    lambda: _config("imagenet", "method=ijepa"),
  ),
  "simclr_r50_imagenet": (
    "SimCLR, ResNet-50, ImageNet-1K, 100 epochs, batch 256 (configs/imagenet.py:method=simclr)",
    lambda: _config("imagenet", "method=simclr"),
  ),
  "byol_r50_imagenet": (
    "BYOL, ResNet-50, ImageNet-1K, 100 epochs, batch 256 (configs/imagenet.py:method=byol)",
    lambda: _config("imagenet", "method=byol"),
  ),
}
#: Recipes whose evaluation steps (feature extraction, linear-probe step) are compiled too.
WITH_EVAL = ("vje_r50_imagenet",)
SEARCH = "vje_r50_imagenet"
#: The search's first batch per chip (ResNet-50 at 64 per chip takes 5.6 GiB of a v4's 32: smaller ones fit).
SEARCH_START = 64


def versions() -> dict[str, str]:
  return {"jax": jax.__version__, "libtpu": importlib.metadata.version("libtpu")}


def key(row: dict) -> tuple:
  """A compile's identity: recipe, slice, step, batch per chip (searches only), versions."""
  return (
    row["recipe"],
    row["slice_name"],
    row["step"],
    bool(row.get("search")),
    row["per_chip_batch"] if row.get("search") else None,
    row["jax"],
    row["libtpu"],
  )


def load_rows(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def run(path: str, fresh: bool, only: tuple[str, ...]) -> None:
  rows = [] if fresh else load_rows(path)
  done = {key(r) for r in rows}
  v = versions()
  mode = "w" if fresh else "a"
  with open(path, mode) as out:

    def record(recipe, slice_name, reports, search=False):
      for r in reports:
        row = dict(r.as_dict(), recipe=recipe, slice_name=slice_name, search=search, **v)
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(f"{recipe} {scale_compile.table_row(r)}", flush=True)

    def missing(recipe, slice_name, steps):
      return [s for s in steps if (recipe, slice_name, s, False, None, v["jax"], v["libtpu"]) not in done]

    for recipe, (_, build) in RECIPES.items():
      if only and recipe not in only:
        continue
      for slice_name in SLICES:
        todo = missing(recipe, slice_name, ("train", "embed", "probe") if recipe in WITH_EVAL else ("train",))
        if not todo:
          continue
        start = time.time()
        try:
          reports = scale_compile.compile_run(build(), slice_name, steps=todo)
        except ValueError as e:  # the recipe cannot run on this slice (e.g. batch 64 on 256 chips)
          row = {
            "recipe": recipe,
            "slice_name": slice_name,
            "slice": slice_name,
            "per_chip_batch": "",
            "step": "train",
            "compiled": False,
            "error": f"ValueError: {e}",
            **v,
          }
          out.write(json.dumps(row) + "\n")
          out.flush()
          print(f"{recipe} {slice_name}: {e}", flush=True)
          continue
        record(recipe, slice_name, reports)
        print(f"  ({time.time() - start:.0f} s)", flush=True)
    for slice_name in SEARCH_SLICES:
      if only and SEARCH not in only:
        continue
      config = RECIPES[SEARCH][1]()
      batch = SEARCH_START
      previous = {
        r["per_chip_batch"]: r
        for r in rows
        if r["recipe"] == SEARCH
        and r["slice_name"] == slice_name
        and r["step"] == "train"
        and r.get("search")
        and (r["jax"], r["libtpu"]) == (v["jax"], v["libtpu"])
      }
      recipe_row = [
        r
        for r in rows
        if r["recipe"] == SEARCH
        and r["slice_name"] == slice_name
        and r["step"] == "train"
        and not r.get("search")
        and (r["jax"], r["libtpu"]) == (v["jax"], v["libtpu"])
      ]
      while batch <= 4096:
        if batch in previous:
          fits = previous[batch]["fits"]
        elif recipe_row and recipe_row[-1].get("per_chip_batch") == batch:  # the recipe's own compile
          out.write(json.dumps(dict(recipe_row[-1], search=True)) + "\n")
          fits = recipe_row[-1]["fits"]
        else:
          reports = scale_compile.compile_run(config, slice_name, per_chip_batch=batch, steps=("train",))
          record(SEARCH, slice_name, reports, search=True)
          fits = reports[0].fits
        if not fits:
          break
        batch *= 2


def chip_hours(row: dict, config) -> float:
  examples = scale_compile.dataset_geometry(config)[1]
  steps = math.ceil(config.num_epochs * (examples // row["global_batch"]))
  return steps * row["estimate_seconds"] * row["chips"] / 3600


def hours_text(hours: float) -> str:
  return f"{hours:,.0f}" if hours >= 10 else f"{hours:.2g}"


def fmt_row(row: dict) -> str:
  if not row.get("compiled"):
    return f"**does not compile**: {row.get('error', '')}"
  gib = lambda n: f"{n / GIB:.2f}"
  fit = "" if row["fits"] else " **over HBM**"
  return (
    f"{gib(row['argument_bytes'])} / {gib(row['temp_bytes'])} / {gib(row['total_bytes'])} of "
    f"{gib(row['hbm_bytes'])}{fit} | {row['flops'] / 1e12:.3g} | {row['estimate_seconds'] * 1e3:.3g} "
    f"({row['estimate_source']}) | {row['images_per_second_per_chip']:,.0f} | {100 * row['mfu']:.0f} %"
  )


def report(path: str) -> str:
  rows = load_rows(path)
  if not rows:
    raise SystemExit(f"{path} has no rows: run benchmarks/tpu_compile.py first")
  v = {(r["jax"], r["libtpu"]) for r in rows}
  lines = [
    "# TPU sizing: gjax's steps compiled for TPU slices on a 2-core CPU",
    "",
    "**Every time, throughput, MFU and chip-hour figure here is a compiler estimate, not a measurement**: "
    "XLA's TPU compiler (libtpu from PyPI) compiled each step for the slice's devices on a CPU machine with "
    "no TPU (`gjax.scale.compile`). Bytes and flops are the compiled program's own (`memory_analysis`, "
    "`cost_analysis`, per chip). The step time is the compiler's `optimal_seconds` where it is sane (finite and "
    "not faster than the chip's peak bf16 FLOP/s allow), else a roofline `max(flops / peak, bytes accessed / "
    "HBM bandwidth)` with the chips' published figures (`gjax/scale/topology.py`); the column says which. "
    "MFU = XLA's flops / (estimate x peak), so a roofline estimate that is compute-bound reads 100 % by "
    "construction: an upper bound, not a forecast.",
    "",
    "Command: `python benchmarks/tpu_compile.py` (compiles the rows `results/tpu_compile.jsonl` lacks, then "
    "writes this file; `--report` rewrites it from the JSONL alone). Versions: "
    + ", ".join(f"jax {a}, libtpu {b}" for a, b in sorted(v))
    + ". All recipes with bf16 compute "
    "(`--config.model.compute_dtype=bfloat16`), float32 parameters and optimiser state, replicated (pure data "
    "parallelism, as `train.py` runs).",
    "",
    "## The recipes at the paper's global batch",
    "",
  ]
  train = [r for r in rows if r["step"] == "train" and not r.get("search")]
  for recipe, (what, build) in RECIPES.items():
    config = build()
    lines += [
      f"### {recipe}: {what}",
      "",
      "| slice | chips / hosts | batch per chip | GiB per chip (args / temp / total) of HBM | TFLOP per chip "
      "per step | step ms (source) | img/s per chip | MFU | whole recipe, chip-hours |",
      "|---|---|---|---|---|---|---|---|---|",
    ]
    for slice_name in SLICES:
      found = [r for r in train if r["recipe"] == recipe and r["slice_name"] == slice_name]
      if not found:
        lines.append(f"| {slice_name} | | | not run | | | | | |")
        continue
      r = found[-1]
      hours = hours_text(chip_hours(r, config)) if r.get("compiled") and r.get("fits") else ""
      if not r.get("compiled"):
        lines.append(f"| {r['slice']} | | {r['per_chip_batch']} | {fmt_row(r)} | | | | | |")
      else:
        lines.append(f"| {r['slice']} | {r['chips']} / {r['hosts']} | {r['per_chip_batch']} | {fmt_row(r)} | {hours} |")
    lines.append("")
  lines += [
    "## Evaluation steps (VJE ResNet-50, ImageNet-1K)",
    "",
    "Feature extraction (`eval.py`'s feature step at `config.eval.batch_size` = 512, rounded down to a "
    "multiple of the chips, at least one image per chip) and one step of the linear probe on the 2048-d "
    "encoder features (global batch 256, rounded up to a multiple of the chips).",
    "",
    "| step | slice | chips / hosts | batch per chip | GiB per chip (args / temp / total) of HBM | "
    "TFLOP per chip per step | step ms (source) | items/s per chip | MFU |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    if r["step"] != "train" and r.get("compiled") is not None:
      lines.append(
        f"| {r['step']} | {r['slice']} | {r['chips']} / {r['hosts']} | {r['per_chip_batch']} | {fmt_row(r)} |"
      )
  lines += [
    "",
    f"## Largest batch per chip ({SEARCH})",
    "",
    f"Powers of two from {SEARCH_START}, doubled until the compiler runs out of HBM or the program does not fit "
    "(the first failing batch is shown with the compiler's message). A larger global batch changes the "
    "recipe (the learning rate scales linearly with it, `optim.lr_scaling`); the chip-hours assume the "
    "same 100 epochs.",
    "",
    "| slice | batch per chip | global batch | GiB per chip (args / temp / total) of HBM | TFLOP per chip "
    "per step | step ms (source) | img/s per chip | MFU | whole recipe, chip-hours |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  search_config = RECIPES[SEARCH][1]()
  searched = list(dict.fromkeys(r["slice_name"] for r in rows if r.get("search") and r["recipe"] == SEARCH))
  for slice_name in sorted(searched, key=lambda name: (name not in SEARCH_SLICES, name)):
    found = sorted(
      (r for r in rows if r["recipe"] == SEARCH and r["slice_name"] == slice_name and r.get("search")),
      key=lambda r: r["per_chip_batch"],
    )
    for r in found:
      hours = hours_text(chip_hours(r, search_config)) if r.get("fits") else ""
      lines.append(f"| {r['slice']} | {r['per_chip_batch']} | {r['global_batch']} | {fmt_row(r)} | {hours} |")
    fitting = [r["per_chip_batch"] for r in found if r.get("fits")]
    failed = [r for r in found if not r.get("fits")]
    why = (
      "the first that does not fit ran out of HBM"
      if failed and "RESOURCE_EXHAUSTED" in failed[0].get("error", "")
      else "the next one failed for another reason than memory (its message above)"
      if failed
      else f"none failed up to {found[-1]['per_chip_batch']}"
    )
    if found:
      lines.append(
        f"| **{slice_name}: largest power of two that compiles and fits: "
        f"{max(fitting) if fitting else 'none'}** ({why}) | | | | | | | | |"
      )
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--jsonl", default="results/tpu_compile.jsonl")
  parser.add_argument("--out", default="results/tpu_compile.md")
  parser.add_argument("--report", action="store_true", help="only write the table from the JSONL")
  parser.add_argument("--fresh", action="store_true", help="recompile every row")
  parser.add_argument("--only", default="", help="comma-separated recipes to compile (default: all)")
  args = parser.parse_args()
  if not args.report:
    run(args.jsonl, args.fresh, tuple(r for r in args.only.split(",") if r))
  text = report(args.jsonl)
  with open(args.out, "w") as f:
    f.write(text)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
