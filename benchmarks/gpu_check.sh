#!/usr/bin/env bash
# One GPU check for docs/scaling.md, < 10 min on one H100/H200: on recipe=synthetic_large (a subset of
# its utterances: throughput does not depend on corpus size) it times
#   teacher   conformer_large (110M) training steps in bf16: steps/s, x real time, peak GPU memory
#             (benchmarks/bench_train.py --systems teacher)
#   cache     the cache stage with that teacher on the GPU: x real time (its summary.json)
#   student   the distilling student's training steps on that cache (bench_train.py --systems student_kd)
# and writes one JSON (default benchmarks/results/gpu_check.json) with the GPU's name.
#
# Usage (repository root):  bash benchmarks/gpu_check.sh [OUT.json]
#   PY=.venv/bin/python  the interpreter (default: .venv/bin/python, else python)
#   EXP=/tmp/gpu_check   scratch experiment directory (removed first)
#   TINY=1               a CPU dry run of the same code paths in ~2 min (tiny models, fp32, a few steps)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
EXP=${EXP:-/tmp/gpu_check}
OUT=${1:-benchmarks/results/gpu_check.json}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} TQDM_DISABLE=1
rm -rf "$EXP" && mkdir -p "$EXP"

if [ "${TINY:-0}" = 1 ]; then
  N=80 STEPS=8 WARMUP=2 MAXF=1000 DEVICE=cpu PRECISION=fp32
  MODELS=(teacher=conformer_small 'teacher.model={d_model:64,num_heads:2,ffn_dim:128,num_layers:2}'
          'student.model={d_model:32,num_heads:2,ffn_dim:64,num_layers:2}')
else
  N=1500 STEPS=20 WARMUP=5 MAXF=20000 DEVICE=cuda PRECISION=bf16  # ~4500 s of audio: 22 batches of 200 s
  MODELS=(teacher=conformer_large)
fi
COMMON=(recipe=synthetic_large "exp_dir=$EXP" "data.num_train=$N" data.num_dev=20 data.num_test=20 data.on_error=skip
        data.num_unlabeled=0 "${MODELS[@]}" "train.teacher.precision=$PRECISION" "train.student.precision=$PRECISION"
        "train.teacher.device=$DEVICE" "train.student.device=$DEVICE" "cache.device=$DEVICE"
        "train.teacher.max_frames=$MAXF" "train.student.max_frames=$MAXF"
        "train.teacher.steps=$STEPS" "train.teacher.eval_every=$STEPS" train.teacher.warmup_steps=1)
OVERRIDES=()
for o in "${COMMON[@]}"; do OVERRIDES+=(--override "$o"); done
asr() { timeout 300 "$PY" -m asr_kd.cli "$@" "${COMMON[@]}" > "$EXP/$1.log" 2>&1 || { tail -20 "$EXP/$1.log"; exit 1; }; }

start=$(date +%s)
asr stage=prepare
asr stage=features
timeout 200 "$PY" benchmarks/bench_train.py --exp-dir "$EXP" --systems teacher --steps "$STEPS" --warmup "$WARMUP" \
  --repeats 1 --loader-batches 50 --threads 4 "${OVERRIDES[@]}" --json "$EXP/teacher.json"
asr stage=teacher          # $STEPS steps: a checkpoint for the cache (throughput does not depend on weights)
asr stage=cache
timeout 200 "$PY" benchmarks/bench_train.py --exp-dir "$EXP" --systems student_kd --steps "$STEPS" --warmup "$WARMUP" \
  --repeats 1 --loader-batches 50 --threads 4 "${OVERRIDES[@]}" --json "$EXP/student.json"

"$PY" - "$EXP" "$OUT" "$start" "${TINY:-0}" <<'PY'
import json, sys, time
from pathlib import Path

import torch

exp, out, start, tiny = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
teacher = json.loads((exp / "teacher.json").read_text())["systems"]["teacher"]
student = json.loads((exp / "student.json").read_text())["systems"]["student_kd"]
cache = json.loads((exp / "cache/teacher_k16/train/summary.json").read_text())
def row(r):
    step = r["median"]["step"]
    return {"params": r["params"], "max_frames": r["max_frames"], "audio_s_per_batch": r["audio_s_per_batch"],
            "steps_per_s": step["steps_per_s"], "x_rt": step["x_rt"], "train_loop_x_rt": r["median"]["train"]["x_rt"],
            "max_memory_gb": step.get("max_memory_gb"), "loader_headroom": r["loader_headroom"],
            "device": r["runs"]["step"][0]["device"]}
result = {
    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_s": time.time() - start,
    "tiny": tiny, "teacher": {"config": "tiny" if tiny else "conformer_large", **row(teacher)},
    "student_kd": row(student),
    "cache": {"x_rt": cache["x_realtime"], "audio_hours": cache["audio_hours"], "bytes_per_frame":
              cache["bytes_per_frame"], "utterances": cache["utterances"]},
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
PY
