#!/usr/bin/env bash
# Issue 9: ship VisionPuzzleVAE from the long run of scripts/studies/puzzle_study.py (runs/p9/long):
#   fp32 + one INT8 bundle per target (onnxruntime CPU: uint8 activations; TensorRT: symmetric Q/DQ at layer inputs),
#   each measured on the test split with onnxruntime (--evaluate), then `sage-ros evaluate` (palette baseline row,
#   code usage, per-code statistics, 400 windows of the test sources), the study summary, and the int8 bench.
#   Reports land in models/reports/{puzzle,eval_puzzle}; the commands are appended to models/reports/COMMANDS.md.
#
#   scripts/shipping/export_puzzle.sh            # env: PY (default .venv/bin/python), RUN (default runs/p9/long), BENCH (1)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-runs/p9/long}
ROOT=$(dirname "$RUN")
MODELS=${MODELS:-models}
CMDLOG=$MODELS/reports/COMMANDS.md
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

{
  echo
  echo "## VisionPuzzleVAE, issue 9 ($(date -u +%F)): codebook study, long run, per-target INT8"
  echo
  echo "Training (study and shipped run; summary in models/reports/puzzle/README.md):"
  echo
  echo "    $PY scripts/studies/puzzle_study.py run --root $ROOT"
  echo
  echo "Export and evaluation (scripts/shipping/export_puzzle.sh):"
  echo
} >> "$CMDLOG"

run() {  # echo, record, run
  echo "+ $*"
  echo "    $*" >> "$CMDLOG"
  "$@"
}
SAGE=("$PY" -m sage_ros.cli)

rm -rf "$MODELS/puzzle_l64_int8"  # replaced by one bundle per target
run "${SAGE[@]}" export --model "$RUN" --precision fp32 --out "$MODELS/puzzle_l64_fp32" \
  --metrics "$RUN/metrics.json" --evaluate --batch-size 16
run "${SAGE[@]}" export --model "$RUN" --precision int8 --int8-target cpu --out "$MODELS/puzzle_l64_int8_cpu" \
  --metrics "$RUN/metrics.json" --evaluate --batch-size 16
run "${SAGE[@]}" export --model "$RUN" --precision int8 --int8-target tensorrt --out "$MODELS/puzzle_l64_int8_tensorrt" \
  --metrics "$RUN/metrics.json" --evaluate --batch-size 16
run "${SAGE[@]}" evaluate --model "$RUN" --out "$ROOT/eval_puzzle" --bundle "$MODELS/puzzle_l64_fp32" \
  --bundle "$MODELS/puzzle_l64_int8_cpu" --bundle "$MODELS/puzzle_l64_int8_tensorrt" --batch-size 16 --windows 400
run "$PY" scripts/studies/puzzle_study.py summarize --root "$ROOT" --out "$MODELS/reports/puzzle"
if [ "${BENCH:-1}" = 1 ]; then  # BENCH=0: leave the timing for a quiet machine (then run this line by hand)
  run "$PY" bench/int8_trained.py --out bench/results/int8_trained.json
fi

mkdir -p "$MODELS/reports/eval_puzzle"
rm -f "$MODELS/reports/eval_puzzle/"*
cp "$ROOT/eval_puzzle/report.md" "$ROOT/eval_puzzle/report.json" "$ROOT/eval_puzzle/recon_grid.png" \
   "$ROOT/eval_puzzle/rate_distortion.png" "$MODELS/reports/eval_puzzle/"
rm -f "$MODELS/reports/puzzle/report.md" "$MODELS/reports/puzzle/report.json"  # the pre-issue-9 run's
cp "$RUN/report.md" "$MODELS/reports/puzzle/train_report.md"
cp "$RUN/report.json" "$MODELS/reports/puzzle/train_report.json"
cp "$RUN/curve.json" "$MODELS/reports/puzzle/train_curve.json"
echo "done: $MODELS/puzzle_l64_{fp32,int8_cpu,int8_tensorrt}, $MODELS/reports/{puzzle,eval_puzzle}"
