#!/usr/bin/env bash
# Installs everything gjax needs on a Debian/Ubuntu machine, in one command:
#   1. Fashion-MNIST, the offline real-data default, from Debian's package
#      dataset-fashion-mnist (apt-get; as root, or through sudo otherwise),
#      unless its files are already in $GJAX_FASHION_MNIST_DIR
#      (default /usr/share/datasets/fashion-mnist);
#   2. a virtual environment .venv (or $GJAX_VENV) made with Python 3.12 (jax 0.12
#      needs >= 3.12): $PYTHON if set, else python3.12 on PATH, else pyenv's
#      ($PYENV_ROOT/versions/3.12.*), and requirements.txt installed into it.
#
#   bash setup.sh
set -euo pipefail
cd "$(dirname "$0")"
DATA_DIR=${GJAX_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
VENV=${GJAX_VENV:-.venv}
PYENV_DIR=${PYENV_ROOT:-$HOME/.pyenv}

if [ -f "$DATA_DIR/train-images-idx3-ubyte.gz" ]; then
  echo "setup.sh: Fashion-MNIST found in $DATA_DIR"
else
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
  elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "setup.sh: Fashion-MNIST is not in $DATA_DIR and installing it (apt-get install dataset-fashion-mnist)" \
         "needs root or sudo; or put its four IDX .gz files in a directory named by GJAX_FASHION_MNIST_DIR" >&2
    exit 1
  fi
  $SUDO apt-get update
  $SUDO apt-get install -y dataset-fashion-mnist
fi

is_python312() {  # runs it: a pyenv shim for a version that is not selected fails here
  "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1
}

if [ -n "${PYTHON:-}" ]; then
  if ! is_python312 "$PYTHON"; then
    echo "setup.sh: PYTHON=$PYTHON is not a working Python 3.12 (jax 0.12 needs 3.12)" >&2
    exit 1
  fi
  PY=$PYTHON
else
  PY=""
  for candidate in python3.12 "$PYENV_DIR"/versions/3.12*/bin/python3.12; do
    if is_python312 "$candidate"; then
      PY=$candidate
      break
    fi
  done
  if [ -z "$PY" ]; then
    echo "setup.sh: no Python 3.12 found (not python3.12 on PATH, nor $PYENV_DIR/versions/3.12.*): install it" \
         "(apt-get install python3.12 python3.12-venv, or pyenv install 3.12) or set PYTHON=/path/to/python3.12" >&2
    exit 1
  fi
fi

if [ -x "$VENV/bin/python" ] && is_python312 "$VENV/bin/python"; then
  echo "setup.sh: using the Python 3.12 environment $VENV"
else
  echo "setup.sh: making the environment $VENV with $PY"
  "$PY" -m venv --clear "$VENV"
fi
"$VENV/bin/python" -m pip install -r requirements.txt
