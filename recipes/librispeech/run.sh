#!/usr/bin/env bash
# LibriSpeech 960 h recipe for a GPU box: BPE-500, the 110M-parameter Conformer teacher, speed
# perturbation 0.9/1.0/1.1, SpecAugment; WER on dev-clean, dev-other, test-clean and test-other.
#
#   LIBRISPEECH_ROOT=/data/LibriSpeech [EXP_DIR=exp/librispeech] bash recipes/librispeech/run.sh \
#       [--stage N] [--stop-stage M] [overrides...]
#
# Stages: 1 prepare, 2 features, 3 teacher, 4 cache, 5 student, 6 decode, 7 score.
# Each stage skips itself when its outputs are up to date (add force=true to redo one).
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=1
stop_stage=7
recipe=librispeech
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
