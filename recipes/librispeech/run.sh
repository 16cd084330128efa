#!/usr/bin/env bash
# LibriSpeech 960 h recipe for a GPU box: BPE-500, the 110M-parameter Conformer teacher, speed
# perturbation 0.9/1.0/1.1, SpecAugment; WER on dev-clean, dev-other, test-clean and test-other.
#
#   LIBRISPEECH_ROOT=/data/LibriSpeech [EXP_DIR=exp/librispeech] bash recipes/librispeech/run.sh \
#       [--stage N] [--stop-stage M] [overrides...]
#
# Stages: 1 prepare, 2 features, 3 teacher, 4 cache, 5 student, 6 decode, 7 export, 8 score.
# Each stage skips itself when its outputs are up to date (add force=true to redo one).
set -euo pipefail
RECIPE=librispeech exec bash "$(dirname "$0")/../demo/run.sh" "$@"
