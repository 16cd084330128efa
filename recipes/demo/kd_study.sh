#!/usr/bin/env bash
# The distillation study on the demo recipe (issues #3 and #4): one student_kd variant per run,
# everything else (teacher, features, student_ctc) re-used from `bash recipes/demo/run.sh`.
#
#   bash recipes/demo/kd_study.sh            # after run.sh; ~2-3 min per variant on 2 CPU cores
#
# Each variant is a system name of its own (models/<name>/, decode/<name>*/); the last step scores
# every student in models/ into one report.md. Cache variants rebuild cache/ with their k; the final `stage=cache`
# restores the default k=16 cache, whose fingerprint the main student_kd was trained against.
set -euo pipefail
exp_dir=${EXP_DIR:-exp/demo}
run() { echo "=== $* ($(date +%H:%M:%S))"; asr-kd stage=all exp_dir="$exp_dir" "$@"; }

# top-k of the cache (k=16 is student_kd itself); 'full' keeps the whole distribution
run cache.k=1 'student_systems=[student_kd_k1]'
run cache.k=4 'student_systems=[student_kd_k4]'
run cache.k=null 'student_systems=[student_kd_kfull]'
asr-kd stage=cache exp_dir="$exp_dir"

# temperature (T=4 is student_kd), as a Hydra sweep
asr-kd --multirun stage=all exp_dir="$exp_dir" distill.temperature=1,2 \
  'student_systems=[student_kd_T${distill.temperature}]'

# weight of the KD term (alpha 0.5 is student_kd), fixed lower or moved from 0.9 to 0.1 in training
run distill.alpha=0.2 'student_systems=[student_kd_a02]'
run distill.alpha=0.9 distill.alpha_final=0.1 'student_systems=[student_kd_sched]'

# blank handling and offline-to-streaming alignment (conf/distill/*.yaml)
run distill=kd_spikes 'student_systems=[student_kd_spikes]'
run distill=kd_delayed 'student_systems=[student_kd_delayed]'
run distill=guided_ctc 'student_systems=[student_guided_ctc]'
# sequence-level KD: CTC on the teacher's 1-best instead of the transcripts, plus frame KD
run distill.sequence_kd=true 'student_systems=[student_kd_seq]'

# run-to-run noise: CTC only, the default and alpha 0.2 again from two more seeds (init and batch order)
asr-kd --multirun stage=all exp_dir="$exp_dir" train.student.seed=1,2 distill.alpha=0 \
  'student_systems=[student_ctc_seed${train.student.seed}]'
asr-kd --multirun stage=all exp_dir="$exp_dir" train.student.seed=1,2 \
  'student_systems=[student_kd_seed${train.student.seed}]'
asr-kd --multirun stage=all exp_dir="$exp_dir" train.student.seed=1,2 distill.alpha=0.2 \
  'student_systems=[student_kd_a02_seed${train.student.seed}]'

# score every student in the experiment (the variants above, the seeds, and run.sh's two)
students=$(cd "$exp_dir/models" && ls -d student_* | paste -sd, -)
asr-kd stage=score exp_dir="$exp_dir" "student_systems=[$students]"
cat "$exp_dir/report.md"
