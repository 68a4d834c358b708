#!/usr/bin/env bash
# Prepares what a run on a lent GPU machine must carry (those machines have
# jax, flax, optax, orbax-checkpoint, chex and PyTorch, but no ml-collections,
# TensorFlow or TFDS, and no network): the ml-collections wheel (no
# dependencies: absl-py and PyYAML are there) and the Fashion-MNIST IDX files,
# into .device_carry/ (git-ignored, about 31 MiB of the 64 MiB allowed).
#
#   bash benchmarks/prepare_device_carry.sh
# then, on the device (carry: .device_carry):
#   pip install --no-deps --no-index .device_carry/wheels/*.whl && \
#   GJAX_FASHION_MNIST_DIR=.device_carry/fashion-mnist python benchmarks/accelerator.py
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.device_carry
DATA_DIR=${GJAX_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
PYTHON=${PYTHON:-python}
rm -rf "$OUT"
mkdir -p "$OUT/wheels" "$OUT/fashion-mnist"
version=$(grep -m1 '^ml-collections==' requirements.txt | cut -d= -f3)
"$PYTHON" -m pip download --no-deps --only-binary=:all: -d "$OUT/wheels" "ml-collections==$version"
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$DATA_DIR/$name.gz" ] || { echo "missing $DATA_DIR/$name.gz: run setup.sh first" >&2; exit 1; }
  cp "$DATA_DIR/$name.gz" "$OUT/fashion-mnist/"
done
du -sh "$OUT"
