#!/usr/bin/env bash
# Open-English recipe on the embedded corpus (conf/recipe/synthetic_large.yaml): the demo's
# stages, on a ~3,300-word vocabulary; <= 60 min on 2 CPU cores.
#
#   bash recipes/synthetic_large/run.sh [--stage N] [--stop-stage M] [hydra overrides...]
set -euo pipefail
RECIPE=synthetic_large exec bash "$(dirname "$0")/../demo/run.sh" "$@"
