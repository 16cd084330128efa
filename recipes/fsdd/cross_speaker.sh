#!/usr/bin/env bash
# Leave-one-speaker-out on FSDD: the recipe once per held-out speaker (~13 min each on 2 CPU cores),
# with plain frame KD (system student_kd_plain, study=kd_plain) beside the recipe's delayed-target
# default in every fold, then one table over the folds (mean and spread).
#
#   [SPEAKERS="george jackson"] [EXP_ROOT=exp/fsdd_xval] bash recipes/fsdd/cross_speaker.sh
#
# Folds are independent experiment directories ($EXP_ROOT/<speaker>); re-running skips finished work.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x .venv/bin/asr-kd ]; then export PATH="$PWD/.venv/bin:$PATH"; fi  # the `make setup` venv
speakers=${SPEAKERS:-george jackson lucas nicolas theo yweweler}
root=${EXP_ROOT:-exp/fsdd_xval}

for spk in $speakers; do
  echo "=== fold $spk ($(date +%H:%M:%S))"
  EXP_DIR="$root/$spk" bash recipes/fsdd/run.sh data.held_out_speaker="$spk" study=kd_plain > /dev/null
done
python recipes/fsdd/summarize_folds.py "$root"
