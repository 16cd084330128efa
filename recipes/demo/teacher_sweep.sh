#!/usr/bin/env bash
# Teacher-strength sweep for the strong-teacher regime (conf/study/teacher_knows_more.yaml): the same
# distilled students from teachers trained for fewer steps, each in an experiment directory of its own
# that shares the corpus, features and CTC-only baseline of $BASE (hard links: one file system; no
# export), then `stage=compare sweep=student_ctc_q` over them all: each teacher's dev gap to the
# CTC-only student against each distilled student's dev gain (compare.md, compare_sweep.png;
# recipes/demo/RESULTS.md, "Teacher-strength sweep").
#
#   [BASE=exp/demo] [STEPS="400 800"] [DROP="student_both_aligned_q"] bash recipes/demo/teacher_sweep.sh [overrides...]
#
# $BASE must have run `asr-kd stage=all study=teacher_knows_more` (its teacher is the strongest point);
# DROP names systems of the study not trained at the weaker teachers.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x .venv/bin/asr-kd ]; then export PATH="$PWD/.venv/bin:$PATH"; fi  # the `make setup` venv
base=${BASE:-exp/demo}
drop=(student_ctc student_kd ${DROP-student_both_aligned_q})
runs="$base"
for steps in ${STEPS:-400 800}; do
  exp="$base/teacher_steps$steps"
  for part in data features stamps/prepare.json stamps/features.json models/student_ctc_q \
              stamps/student/student_ctc_q.json; do  # the corpus, and the baseline (it reads no teacher)
    [ -e "$exp/$part" ] || { mkdir -p "$(dirname "$exp/$part")"; cp -al "$base/$part" "$exp/$part"; }
  done
  echo "=== teacher at $steps steps: $exp ($(date +%H:%M:%S))"
  asr-kd stage=all study=teacher_knows_more exp_dir="$exp" train.teacher.steps="$steps" \
    train.teacher.eval_every="$steps" "${drop[@]/#/\~systems.}" "export.systems=[]" "score.compare=[]" "$@" > /dev/null
  runs="$runs,$exp"
done
asr-kd stage=compare "runs=[$runs]" sweep=student_ctc_q exp_dir="$base/teacher_sweep"
cat "$base/teacher_sweep/compare.md"
