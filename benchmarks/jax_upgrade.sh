#!/usr/bin/env bash
# The VJE train step on this CPU before and after the move to jax 0.12 / Python 3.12, each against
# PyTorch, in one run (about 15 minutes on 2 cores; run it on an otherwise idle machine):
#
#   BEFORE_PYTHON=/path/to/py311/bin/python benchmarks/jax_upgrade.sh BEFORE_COMMIT > results/jax_upgrade_raw.txt 2>&1
#
# before: the checkout at BEFORE_COMMIT (jax 0.10.2 on Python 3.11, gjax's XLA CPU flag on, as it shipped) run
#         by BEFORE_PYTHON (a venv with that commit's requirements.txt and torch==2.13.0), the PyTorch
#         reference in the same process, right after the JAX rows (benchmarks/train_step.py);
# after:  this checkout in .venv (jax 0.12, Python 3.12) twice, with XLA's defaults (GJAX_XLA_CPU_DEFAULTS=0)
#         and with the flag set by hand in XLA_FLAGS; the PyTorch reference from BEFORE_PYTHON in its own
#         process right after each (torch's CPU build for Python 3.12 is not on this machine: pip would fetch
#         a CUDA build of several GB).
# Sizes: ResNet-18 (CIFAR stem, 32x32) at a quarter and at full width, batch 128.
set -uo pipefail
cd "$(dirname "$0")/.."
before_commit=${1:?usage: BEFORE_PYTHON=... benchmarks/jax_upgrade.sh BEFORE_COMMIT}
before_python=${BEFORE_PYTHON:?set BEFORE_PYTHON to a Python with jax 0.10.2 and torch}
after_python=${AFTER_PYTHON:-.venv/bin/python}
export OPENBLAS_NUM_THREADS=2
flag=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution
before_dir=$(mktemp -d)
trap 'git worktree remove --force "$before_dir" >/dev/null 2>&1; rm -rf "$before_dir"' EXIT
git worktree add --detach "$before_dir" "$before_commit" >/dev/null 2>&1 || { echo "cannot check out $before_commit"; exit 1; }
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores; before: $before_commit ($(git -C "$before_dir" log --oneline -1 | cut -c1-60)); after: $(git log --oneline -1 | cut -c1-60) + working tree"
lscpu | grep -E "Model name" || true
echo "before: $("$before_python" -c 'import sys, jax, torch; print("Python", sys.version.split()[0], "jax", jax.__version__, "torch", torch.__version__)')"
echo "after:  $("$after_python" -c 'import sys, jax; print("Python", sys.version.split()[0], "jax", jax.__version__)')"
for width_steps in "0.25 5" "1.0 3"; do
  set -- $width_steps
  width=$1 steps=$2
  args=(--arch resnet18 --stem cifar --image 32 --width "$width" --batch 128 --steps "$steps")
  echo "## ResNet-18 x$width, batch 128: before (jax 0.10.2, gjax's flag on, torch in the same process)"
  (cd "$before_dir" && "$before_python" benchmarks/train_step.py "${args[@]}")
  echo "## ResNet-18 x$width, batch 128: after, XLA's defaults (GJAX_XLA_CPU_DEFAULTS=0); then torch alone"
  GJAX_XLA_CPU_DEFAULTS=0 "$after_python" benchmarks/train_step.py "${args[@]}" --no-torch
  "$before_python" benchmarks/train_step.py "${args[@]}" --torch-only
  echo "## ResNet-18 x$width, batch 128: after, with $flag; then torch alone"
  XLA_FLAGS=$flag "$after_python" benchmarks/train_step.py "${args[@]}" --no-torch
  "$before_python" benchmarks/train_step.py "${args[@]}" --torch-only
done
