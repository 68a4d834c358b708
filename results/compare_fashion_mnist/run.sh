#!/usr/bin/env bash
# The same-budget comparison on Fashion-MNIST (configs/_fashion_mnist.py, variant "compare"):
# ResNet-18 x1/8, 5 epochs, batch 256, SGD lr 0.05, the same augmentations and seed, k-NN after
# every epoch (bank: 10 000 training images); then eval.py on the full splits (k-NN k=30 and
# weighted k=200, linear probe 30 epochs). Usage: results/compare_fashion_mnist/run.sh vje gmje ...
# A method whose workdir already has eval_results.json is skipped; an interrupted one resumes.
set -euo pipefail
for method in "$@"; do
  workdir=workdirs/compare/$method
  if [ -f $workdir/eval_results.json ]; then echo "$method: done, skipped"; continue; fi
  /usr/bin/time -v python train.py --config configs/${method}_fashion_mnist.py:compare --workdir $workdir \
      > workdirs/compare_${method}_train.log 2>&1
  /usr/bin/time -v python eval.py --config configs/${method}_fashion_mnist.py:compare --workdir $workdir \
      --config.eval.num_train_examples=-1 > workdirs/compare_${method}_eval.log 2>&1
done
