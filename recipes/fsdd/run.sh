#!/usr/bin/env bash
# FSDD recipe: real recorded digits (Free Spoken Digit Dataset) joined into connected digit strings;
# five speakers train, the sixth (theo) is the test set. Teacher -> cache -> students -> WER table.
#
#   [FSDD_ROOT=/data/fsdd] [EXP_DIR=exp/fsdd] bash recipes/fsdd/run.sh [--stage N] [--stop-stage M] [overrides...]
#
# Stages: 1 prepare, 2 features, 3 teacher, 4 cache, 5 student, 6 decode, 7 export, 8 score.
# Each stage skips itself when its outputs are up to date (add force=true to redo one).
# The corpus is read in place from $FSDD_ROOT (default ../shared/data/fsdd from the repository root).
set -euo pipefail
RECIPE=fsdd exec bash "$(dirname "$0")/../demo/run.sh" "$@"
