#!/usr/bin/env bash
# EXPORT stage of the shipped-model pipeline (CPU): trained weights from scripts/train_stage.py -> models/.
#
#   scripts/export_stage.sh [DIR_WITH_TRAIN_STAGE_PARTS]
#
# 1. unpacks <stage>.tar.gz.part-* from DIR (if given) into runs/ship/
# 2. sage-ros ablate on runs/ship/ablate: reuses the trained L{n} weights, quantizes fp32/int8/int4, evaluates on
#    the held-out test split, writes the table + figure + recommendation
# 3. exports TinyVAE at the recommended L in fp32 / int8 / int4, the distilled TinyVAE32 (fp32) and
#    VisionPuzzleVAE in fp32 / int8 as bundles under models/, each measured with onnxruntime (--evaluate)
# 4. sage-ros evaluate for each shipped family (PCA baseline, reconstruction grids, rate-distortion plot)
# 5. copies the reports to models/reports/ and records every command (train stage included) in
#    models/reports/COMMANDS.md
# Env: PY (python, default .venv/bin/python), ROOT (default runs/ship), MODELS (default models).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ROOT=${ROOT:-runs/ship}
MODELS=${MODELS:-models}
REPORTS=$MODELS/reports
mkdir -p "$REPORTS"
CMDLOG=$REPORTS/COMMANDS.md

if [ -n "${1:-}" ]; then
  for stage in tinyvae_ablation puzzle distill; do
    ls "$1"/$stage.tar.gz.part-* >/dev/null 2>&1 || { echo "missing $stage parts in $1"; exit 1; }
    cat "$1"/$stage.tar.gz.part-* | tar -xz
  done
  cp "$1/train_stage.json" "$ROOT/train_stage.json"
fi
[ -f "$ROOT/train_stage.json" ] || { echo "no $ROOT/train_stage.json: run scripts/train_stage.py first"; exit 1; }

{
  echo "# Commands that made the shipped models"
  echo
  echo "## Train stage ($(date -u +%F), from $ROOT/train_stage.json)"
  echo
  "$PY" - "$ROOT/train_stage.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"device {r.get('gpu') or r['device']}, torch {r.get('torch')}, python {r['python']}, total {r['wall_s']} s")
print()
for s in r["stages"]:
    print(f"    {s['command']}    # {s['wall_s']} s, rc {s['returncode']}")
print()
print("| run | steps | images/s | train s | held-out PSNR (torch) |\n|---|---|---|---|---|")
for k, v in r["rates"].items():
    print(f"| {k} | {v['steps']} | {v['images_per_s']:.0f} | {v['train_time_s']:.1f} | {v['psnr']:.2f} |")
PYEOF
  echo
  echo "## Export stage (CPU)"
  echo
} > "$CMDLOG"

run() {  # echo, record, run
  echo "+ $*"
  echo "    $*" >> "$CMDLOG"
  "$@"
}
SAGE=("$PY" -m sage_ros.cli)

# the latents the train stage trained (ablate would train any other with its default budget)
LATENTS=$(cd "$ROOT/ablate" && ls -d L*/ | tr -d 'L/' | sort -n | tr '\n' ' ')
run "${SAGE[@]}" ablate --run-dir "$ROOT/ablate" --latents $LATENTS --no-progress
L=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['recommendation']['latent'])" "$ROOT/ablate/ablation.json")
echo "recommended latent: $L"

# 224 px images through onnxruntime: batches of 256 grew the ORT arena past 20 GB here (OOM-killed)
SMALL_BATCH=(--batch-size 16)
export_bundle() {  # run_dir precision bundle_name [extra options]
  rm -rf "${MODELS:?}/$3"
  run "${SAGE[@]}" export --model "$1" --precision "$2" --out "$MODELS/$3" --metrics "$1/metrics.json" --evaluate \
    "${@:4}"
}
for precision in fp32 int8; do
  export_bundle "$ROOT/ablate/L$L" $precision "tinyvae_l${L}_$precision"
done
# INT4: GPTQ on the Linear layers (val-split calibration) + INT8 convolutions: the best INT4 trade-off measured in
# docs/quantization.md (mu drift 0.026 vs 0.18 for plain INT4, for ~13 KB)
export_bundle "$ROOT/ablate/L$L" int4 "tinyvae_l${L}_int4" --rounding gptq --conv-scheme int8
export_bundle "$ROOT/distill/student" fp32 tinyvae32_l64_distilled_fp32
for precision in fp32 int8; do
  export_bundle "$ROOT/puzzle" $precision puzzle_l64_$precision "${SMALL_BATCH[@]}"
done

run "${SAGE[@]}" evaluate --model "$ROOT/ablate/L$L" --out "$ROOT/eval_tinyvae_l$L" \
  --bundle "$MODELS/tinyvae_l${L}_fp32" --bundle "$MODELS/tinyvae_l${L}_int8" --bundle "$MODELS/tinyvae_l${L}_int4"
run "${SAGE[@]}" evaluate --model "$ROOT/puzzle" --out "$ROOT/eval_puzzle" \
  --bundle "$MODELS/puzzle_l64_fp32" --bundle "$MODELS/puzzle_l64_int8" "${SMALL_BATCH[@]}"
run "${SAGE[@]}" evaluate --model "$ROOT/distill/student" --out "$ROOT/eval_tinyvae32_distilled" \
  --bundle "$MODELS/tinyvae32_l64_distilled_fp32"

# reports: small files only (no weights), so models/ stays a few MB
copy() { [ -d "$1" ] || return 0; mkdir -p "$REPORTS/$2"; for f in "${@:3}"; do [ -f "$1/$f" ] && cp "$1/$f" "$REPORTS/$2/"; done; return 0; }
copy "$ROOT/ablate" ablation ablation.md ablation.json ablation.png
for n in 4 8 16 32 64; do copy "$ROOT/ablate/L$n" "ablation/L$n" report.md report.json; done
copy "$ROOT/distill" distill report.md report.json
for sub in teacher student baseline; do copy "$ROOT/distill/$sub" "distill/$sub" report.md report.json; done
copy "$ROOT/puzzle" puzzle report.md report.json
for e in "eval_tinyvae_l$L" eval_puzzle eval_tinyvae32_distilled; do
  copy "$ROOT/$e" "$e" report.md report.json recon_grid.png rate_distortion.png
done
cp "$ROOT/train_stage.json" "$REPORTS/"
du -sh "$MODELS"
echo "done: bundles under $MODELS/, reports and commands under $REPORTS/"
