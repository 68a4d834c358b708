#!/usr/bin/env bash
# The posterior-semantics study of the one-class protocol (VJE Section 5.3) on
# Fashion-MNIST: a 3-class screen (normal classes 0, 4, 8) of every setting,
# in priority order, each a resumable sweep root under $ROOT. Every row of every
# table records all scores, the diagnostics at the end of training and its wall
# time. Then: python -m studies.one_class.report --root $ROOT --out results/one_class_fashion_mnist
#
#   ROOT=workdirs/posterior_study bash studies/one_class/run_posterior_study.sh [NAME ...]
#
# With NAMEs, only those settings run (e.g. a 10-class rerun: CLASSES=0,1,2,3,4,5,6,7,8,9).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-workdirs/posterior_study}
CLASSES=${CLASSES:-0,4,8}
OC="python -m studies.one_class.study --classes $CLASSES"
CFG=configs/vje_fashion_mnist.py

declare -A RUNS=(
  [base_nu0.5]="--config $CFG:one_class --config.vje.nu=0.5"
  [paper_recipe]="--config $CFG:one_class_paper"
  [free_bits]="--config $CFG:one_class --config.vje.nu=0.5 --grid vje.free_bits=0.5"
  [beta_mean]="--config $CFG:one_class --config.vje.nu=0.5 --grid vje.beta=0.5"
  [beta_sum]="--config $CFG:one_class --config.vje.nu=0.5 --config.vje.kl_convention=sum --grid vje.beta=1.0"
  [base_nu1]="--config $CFG:one_class --config.vje.nu=1.0"
  [beta_mean_more]="--config $CFG:one_class --config.vje.nu=0.5 --grid vje.beta=0.75,1.25"
  [beta_sum_more]="--config $CFG:one_class --config.vje.nu=0.5 --config.vje.kl_convention=sum --grid vje.beta=0.75,1.25"
  [free_bits_more]="--config $CFG:one_class --config.vje.nu=0.5 --grid vje.free_bits=2.0"
  [paper_lr]="--config $CFG:one_class_paper --grid optim.base_learning_rate=0.0005,0.005"
  # Around the sweep's maximum (5e-4 gave the study's best Eq. 39): a factor 2 either side
  [paper_lr_more]="--config $CFG:one_class_paper --grid optim.base_learning_rate=0.001,0.00025"
  [width_quarter]="--config $CFG:one_class --config.vje.nu=0.5 --config.model.width_multiplier=0.25"
  [width_half]="--config $CFG:one_class --config.vje.nu=0.5 --config.model.width_multiplier=0.5"
  # Is the training budget the bound? The same model after 1 step (the encoder at
  # its initialisation: what training adds at all) and after 30 epochs instead of 10.
  [untrained]="--config $CFG:one_class --config.vje.nu=0.5 --config.num_train_steps=1"
  [epochs_30]="--config $CFG:one_class --config.vje.nu=0.5 --grid num_epochs=30.0"
  [epochs_30_beta0.5]="--config $CFG:one_class --config.vje.nu=0.5 --config.vje.beta=0.5 --grid num_epochs=30.0"
)
# beta = 0.5 under "sum" is beta = 1.0 under "mean" (base_nu0.5) to the last bit: not run twice.
ORDER=(base_nu0.5 paper_recipe free_bits beta_mean beta_sum base_nu1 beta_mean_more beta_sum_more free_bits_more
       paper_lr paper_lr_more width_quarter width_half untrained epochs_30 epochs_30_beta0.5)
[ $# -gt 0 ] && ORDER=("$@")
for name in "${ORDER[@]}"; do
  [ -n "${RUNS[$name]:-}" ] || { echo "unknown setting $name; known: ${!RUNS[*]}" >&2; exit 2; }
  echo "=== $name ($(date -Is)): $OC ${RUNS[$name]} --workdir $ROOT/$name"
  start=$(date +%s)
  $OC ${RUNS[$name]} --workdir "$ROOT/$name"
  echo "=== $name done in $(( $(date +%s) - start )) s"
done
