#!/usr/bin/env bash
# Everything behind results/throughput.md (about 30 minutes on 2 CPU cores, nothing else running):
#   benchmarks/throughput.sh step > results/throughput_raw.txt 2>&1
#   benchmarks/throughput.sh rest [BEFORE_CHECKOUT] >> results/throughput_raw.txt 2>&1
# "step": train-step tables (ResNet-18 CIFAR stem, ResNet-50 ImageNet stem), each twice: "before"
# with XLA's defaults (GJAX_XLA_CPU_DEFAULTS=0) and "after" with gjax's CPU flag (gjax/xla_cpu.py:
# convolutions off YNNPACK), then other XLA CPU options; "rest": the per-layer conv profile and the
# whole step's profile by kind of operation (both ways), device scaling, the input pipeline, the
# before row of an older checkout (optional) and peak host memory. Each train-step table holds the
# PyTorch reference timed in the same process: its "torch / this" column is a ratio on one machine.
set -uo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_NUM_THREADS=2
part=${1:-step}
echo "# $part: $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, $(python -c 'import jax; print("jax", jax.__version__)'), $(python -c 'import torch; print("torch", torch.__version__)')"
lscpu | grep -E "Model name|^CPU\(s\)" || true
if [ "$part" = step ]; then
  for defaults in 0 1; do
    label=$([ $defaults = 0 ] && echo "before: XLA's defaults (GJAX_XLA_CPU_DEFAULTS=0)" || echo "after: gjax's CPU flag")
    echo "## train step, $label: ResNet-18 (CIFAR stem, 32x32), widths 1/8, 1/4 and 1, batch 64 and 128"
    GJAX_XLA_CPU_DEFAULTS=$defaults python benchmarks/train_step.py --arch resnet18 --stem cifar --image 32 \
        --width 0.125,0.25 --batch 64,128 --steps 5
    GJAX_XLA_CPU_DEFAULTS=$defaults python benchmarks/train_step.py --arch resnet18 --stem cifar --image 32 \
        --width 1.0 --batch 64,128 --steps 3
    echo "## train step, $label: ResNet-50 (ImageNet stem, 224x224), full width, batch 16"
    GJAX_XLA_CPU_DEFAULTS=$defaults python benchmarks/train_step.py --arch resnet50 --stem imagenet --image 224 \
        --width 1.0 --batch 16 --steps 3
  done
  echo "## glibc malloc settings (ResNet-18 x1/4, batch 128): large blocks kept in the heap instead of mmap/munmap per step"
  MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456 \
      python benchmarks/train_step.py --width 0.25 --batch 128 --steps 5
  echo "## XLA CPU options on top of gjax's flag (ResNet-18 x1/4, batch 128)"
  for flags in --xla_cpu_use_onednn=true --xla_cpu_use_xnnpack=true --xla_cpu_enable_fast_math=true \
               --xla_cpu_use_thunk_runtime=false --xla_cpu_multi_thread_eigen=false; do
    XLA_FLAGS=$flags python benchmarks/train_step.py --width 0.25 --batch 128 --steps 5
  done
  exit 0
fi
for defaults in 0 1; do
  echo "## where the gap lies (GJAX_XLA_CPU_DEFAULTS=$defaults): encoder forward / backward and single convolutions"
  GJAX_XLA_CPU_DEFAULTS=$defaults python benchmarks/conv_profile.py --width 0.25 --batch 128
  echo "## the whole train step by kind of XLA operation (GJAX_XLA_CPU_DEFAULTS=$defaults)"
  GJAX_XLA_CPU_DEFAULTS=$defaults python benchmarks/step_profile.py --width 0.25 --batch 128
done
echo "## device scaling: 1, 2, 4, 8 fake CPU devices (ResNet-18 x1/4, global batch 128)"
for n in 1 2 4 8; do
  python benchmarks/train_step.py --width 0.25 --batch 128 --steps 5 --fake_devices $n --no-torch
done
echo "## input pipeline alone (Fashion-MNIST default config)"
python benchmarks/input_pipeline.py --config configs/vje_fashion_mnist.py --steps 20
if [ $# -ge 2 ]; then
  echo "## before: $2 ($(git -C "$2" log --oneline -1))"
  (cd "$2" && python benchmarks/train_step.py --width 0.25 --batch 128 --steps 5)
fi
echo "## the offline default run (configs/vje_fashion_mnist.py: ResNet-18 x1/4, batch 256, 2340 steps): first 120 steps"
echo "(img/s of each log window, peak host memory)"
for defaults in 0 1; do
  workdir=$(mktemp -d)
  echo "# GJAX_XLA_CPU_DEFAULTS=$defaults"
  GJAX_XLA_CPU_DEFAULTS=$defaults /usr/bin/time -v python train.py --config configs/vje_fashion_mnist.py \
      --workdir "$workdir" --config.num_train_steps=120 --config.log_every_steps=40 2>&1 \
      | grep -E "step (40|80|120)/|Maximum resident|Elapsed" | sed -E 's/ loss .* \| ([0-9.]+ img\/s)/ ... \1/'
  rm -rf "$workdir"
done
