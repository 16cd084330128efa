#!/usr/bin/env bash
# FSDD recipe: real recorded digits (Free Spoken Digit Dataset) joined into connected digit strings;
# five speakers train, the sixth (theo) is the test set. Teacher -> cache -> students -> WER table.
#
#   [FSDD_ROOT=/data/fsdd] [EXP_DIR=exp/fsdd] bash recipes/fsdd/run.sh [--stage N] [--stop-stage M] [overrides...]
#
# Stages: 1 prepare, 2 features, 3 teacher, 4 cache, 5 student, 6 decode, 7 score.
# Each stage skips itself when its outputs are up to date (add force=true to redo one).
# The corpus is read in place from $FSDD_ROOT (default ../shared/data/fsdd from the repository root).
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=1
stop_stage=7
recipe=fsdd
exp_dir=${EXP_DIR:-exp/${recipe}}
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    *) overrides+=("$1"); shift ;;
  esac
done

names=(prepare features teacher cache student decode score)
for n in $(seq "$stage" "$stop_stage"); do
  name=${names[$((n - 1))]}
  echo "=== stage $n: $name ($(date +%H:%M:%S))"
  asr-kd stage="$name" recipe="$recipe" exp_dir="$exp_dir" "${overrides[@]}"
done
echo "=== done: $exp_dir/report.md"
[ "$stop_stage" -lt 7 ] || cat "$exp_dir/report.md"
