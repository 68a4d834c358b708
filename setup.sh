#!/usr/bin/env bash
# Installs everything gjax needs on a Debian/Ubuntu machine, in one command:
#   1. Fashion-MNIST, the offline real-data default, from Debian's package
#      dataset-fashion-mnist (apt-get; as root, or through sudo otherwise),
#      unless its files are already in $GJAX_FASHION_MNIST_DIR
#      (default /usr/share/datasets/fashion-mnist);
#   2. requirements.txt into the current Python ($PYTHON, default python).
#
#   bash setup.sh
set -euo pipefail
cd "$(dirname "$0")"
DATA_DIR=${GJAX_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
PYTHON=${PYTHON:-python}

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

"$PYTHON" -m pip install -r requirements.txt
