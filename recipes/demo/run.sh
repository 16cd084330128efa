#!/usr/bin/env bash
# Demo recipe: the embedded voice-assistant corpus, teacher -> cache -> students -> WER table.
#
#   [RECIPE=demo] [EXP_DIR=exp/$RECIPE] bash recipes/demo/run.sh [--stage N] [--stop-stage M] [overrides...]
#
# The other recipes' run.sh call this one with their RECIPE (conf/recipe/<RECIPE>.yaml).
# Stages, numbered from 1 in the order of asr_kd.stages.PIPELINE (`asr-kd --help` lists them):
# 1 prepare, 2 features, 3 teacher, 4 cache, 5 student, 6 decode, 7 export, 8 score.
# Each stage skips itself when its outputs are up to date (add force=true to redo one).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x .venv/bin/asr-kd ]; then export PATH="$PWD/.venv/bin:$PATH"; fi  # the `make setup` venv
names=($(python -c 'from asr_kd.stages import PIPELINE; print(*PIPELINE)'))
stage=1
stop_stage=${#names[@]}
recipe=${RECIPE:-demo}
exp_dir=${EXP_DIR:-exp/${recipe}}
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    *) overrides+=("$1"); shift ;;
  esac
done

for n in $(seq "$stage" "$stop_stage"); do
  name=${names[$((n - 1))]}
  echo "=== stage $n: $name ($(date +%H:%M:%S))"
  asr-kd stage="$name" recipe="$recipe" exp_dir="$exp_dir" "${overrides[@]}"
done
echo "=== done: $exp_dir/report.md"
[ "$stop_stage" -lt "${#names[@]}" ] || cat "$exp_dir/report.md"
