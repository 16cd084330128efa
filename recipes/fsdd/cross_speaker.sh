#!/usr/bin/env bash
# Leave-one-speaker-out on FSDD: the recipe once per held-out speaker (~13 min each on 2 CPU cores)
# with a study overlay, then one table over the folds (mean and spread; `stage=compare folds=true`:
# each comparison fold by fold and its six-fold mean tested by a stratified paired bootstrap). The default study,
# speaker_adapt, gives student_kd the held-out speaker's untranscribed audio (conf/study/speaker_adapt.yaml);
# STUDY=kd_plain EXP_ROOT=exp/fsdd_xval is the earlier run: plain frame KD beside the delayed-target default.
#
#   [SPEAKERS="george jackson"] [STUDY=speaker_adapt] [EXP_ROOT=exp/fsdd_$STUDY] bash recipes/fsdd/cross_speaker.sh [overrides...]
#
# Overrides go to every fold, e.g. another training seed for teacher and students:
#   EXP_ROOT=exp/fsdd_speaker_adapt_seed1 bash recipes/fsdd/cross_speaker.sh train.teacher.seed=1 train.student.seed=1
#
# Folds are independent experiment directories ($EXP_ROOT/<speaker>); re-running skips finished work.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x .venv/bin/asr-kd ]; then export PATH="$PWD/.venv/bin:$PATH"; fi  # the `make setup` venv
speakers=${SPEAKERS:-george jackson lucas nicolas theo yweweler}
study=${STUDY:-speaker_adapt}
root=${EXP_ROOT:-exp/fsdd_${study}}

for spk in $speakers; do
  echo "=== fold $spk ($(date +%H:%M:%S))"
  EXP_DIR="$root/$spk" bash recipes/fsdd/run.sh data.held_out_speaker="$spk" study="$study" "$@" > /dev/null
done
runs=$(printf "$root/%s," $speakers)
asr-kd stage=compare "runs=[${runs%,}]" folds=true score.resamples=2000 exp_dir="$root"
cat "$root/compare.md"
