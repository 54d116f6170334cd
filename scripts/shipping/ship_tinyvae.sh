#!/usr/bin/env bash
# TinyVAE-family shipping pipeline (CPU): trained runs -> latent ablations with PCA rows -> bundles -> reports.
#
#   scripts/shipping/ship_tinyvae.sh            # ROOT=runs/s16 (see models/reports/tinyvae/COMMANDS_train.md for the train runs)
#
# Expects, under $ROOT, ordinary `sage-ros train` run directories:
#   seed_L{n}_b0.001/   TinyVAE        (the seed architecture), n in $SEED_LATENTS
#   lin_L{n}_b0.001/    TinyVAELinSkip (the variant),           n in $LIN_LATENTS
#   distill_s{k}/       `sage-ros distill` runs (student + baseline per seed) sharing teacher/
# 1. sage-ros ablate per architecture over those runs (reused, not retrained): fp32 / int8 / int4 files, PCA-L,
#    held-out crops + windows + whole frames, the recommendation rule;
# 2. exports the shipped bundles (seed L = 8 and 64 in fp32 / int8 / int4, TinyVAELinSkip L = 64 int8; int4: GPTQ
#    Linears + INT8 convolutions), each measured with onnxruntime (--evaluate);
# 3. the distillation summary over seeds (scripts/studies/distill_summary.py);
# 4. copies the small report files to models/reports/tinyvae/ and records every command.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
ROOT=${ROOT:-runs/s16}
MODELS=${MODELS:-models}
REPORTS=$MODELS/reports/tinyvae
SEED_LATENTS=${SEED_LATENTS:-8 64}
LIN_LATENTS=${LIN_LATENTS:-4 8 16 32 64}
STAGES=${STAGES:-ablate export distill}  # any of: ablate export distill (e.g. STAGES=distill after new distill runs)
SAGE=("$PY" -m sage_ros.cli)
stage() { [[ " $STAGES " == *" $1 "* ]]; }
mkdir -p "$REPORTS"
CMDLOG=$REPORTS/COMMANDS_export.md
[ -f "$CMDLOG" ] && stage ablate && stage export && stage distill && rm "$CMDLOG"
[ -s "$CMDLOG" ] && echo >> "$CMDLOG"
echo "# Export stage ($(date -u +%F), CPU; stages: $STAGES)" >> "$CMDLOG"
echo >> "$CMDLOG"
run() {  # echo, record, run
  echo "+ $*"
  echo "    $*" >> "$CMDLOG"
  "$@"
}

ablate_arch() {  # arch prefix latents...
  local arch=$1 prefix=$2 dir=$ROOT/ablate_$1
  shift 2
  mkdir -p "$dir"
  for n in "$@"; do ln -sfn "$(realpath "$ROOT/${prefix}_L${n}_b0.001")" "$dir/L$n"; done
  if [ -f "$dir/ablation.json" ] && [ -z "$(find -L "$dir"/L*/model.safetensors -newer "$dir/ablation.json")" ]; then
    echo "    ${SAGE[*]} ablate --model $arch --run-dir $dir --latents $* --no-progress   # (up to date, not rerun)" >> "$CMDLOG"
    return 0
  fi
  run "${SAGE[@]}" ablate --model "$arch" --run-dir "$dir" --latents "$@" --no-progress
}
if stage ablate; then
  ablate_arch TinyVAE seed $SEED_LATENTS
  ablate_arch TinyVAELinSkip lin $LIN_LATENTS
fi

export_bundle() {  # run-dir bundle-name precision (fp32 | int8 | int8_cpu | int4) [more export options]
  local extra=("${@:4}") precision=$3
  [ "$3" = int4 ] && extra+=(--rounding gptq --conv-scheme int8)  # GPTQ Linears + INT8 convolutions
  [ "$3" = int8_cpu ] && precision=int8 && extra+=(--int8-target cpu)  # uint8 activations: onnxruntime CPU only
  rm -rf "${MODELS:?}/$2"
  run "${SAGE[@]}" export --model "$1" --precision "$precision" --out "$MODELS/$2" --metrics "$1/metrics.json" \
    --evaluate "${extra[@]}"
}
# What ships (models/reports/tinyvae/, README): the seed at L = 64 (the rule's pick and the encoder default) and
# L = 8 in every precision; the variant at L = 64 as INT8 only (not the default: it ties the seed on the test crops).
# tinyvae_l64_int8 is symmetric (onnxruntime and TensorRT); tinyvae_l64_int8_cpu has uint8 activations (closer to
# fp32 on onnxruntime CPU, not loadable by TensorRT).
# The seed's INT8 calibration method is the one with the smallest val loss in models/reports/tinyvae/int8_calibration.md
# (scripts/studies/int8_calibration_sweep.py over the runs under $ROOT: calibrated on training crops, measured on val, the
# test split never looked at). For the 30,000-step runs (runs/s16) that is minmax for every graph; the 6,000-step
# runs (runs/i13) picked percentile 99.999 for the symmetric ones. The variant keeps minmax.
SEED_INT8_CALIBRATION=(${SEED_INT8_CALIBRATION:---calibrate-method minmax})
if stage export; then
for n in 8 64; do
  export_bundle "$ROOT/ablate_TinyVAE/L$n" "tinyvae_l${n}_fp32" fp32
  export_bundle "$ROOT/ablate_TinyVAE/L$n" "tinyvae_l${n}_int8" int8 "${SEED_INT8_CALIBRATION[@]}"
  export_bundle "$ROOT/ablate_TinyVAE/L$n" "tinyvae_l${n}_int4" int4
done
export_bundle "$ROOT/ablate_TinyVAE/L64" tinyvae_l64_int8_cpu int8_cpu
export_bundle "$ROOT/ablate_TinyVAELinSkip/L64" tinyvae_linskip_l64_int8 int8
fi
if stage ablate; then  # the ablation reports beside the bundles
for arch in TinyVAE TinyVAELinSkip; do
  dir=$ROOT/ablate_$arch
  mkdir -p "$REPORTS/ablation_$arch"
  cp "$dir"/ablation.{md,json,png} "$REPORTS/ablation_$arch/"
  for n in $(ls -d "$dir"/L*/ | xargs -n1 basename); do
    mkdir -p "$REPORTS/ablation_$arch/$n"
    for f in report.md report.json curve.png curve.json; do
      [ -f "$dir/$n/$f" ] && cp "$dir/$n/$f" "$REPORTS/ablation_$arch/$n/"
    done
  done
done
fi

if stage distill && ls -d "$ROOT"/distill_s*/ >/dev/null 2>&1; then
  run "$PY" scripts/studies/distill_summary.py --out "$REPORTS/distill" "$ROOT"/distill_s*/
  student=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['ship']['run'])" "$REPORTS/distill/summary.json")
  name=tinyvae32_l64_fp32
  case "$student" in */student) name=tinyvae32_l64_distilled_fp32 ;; esac
  rm -rf "${MODELS:?}"/tinyvae32_l64_*
  run "${SAGE[@]}" export --model "$student" --precision fp32 --out "$MODELS/$name" --metrics "$student/metrics.json" --evaluate
  for s in "$ROOT"/distill_s*/; do
    for sub in student baseline; do
      mkdir -p "$REPORTS/distill/$(basename "$s")/$sub"
      for f in report.md report.json curve.png curve.json; do
        [ -f "$s/$sub/$f" ] && cp "$s/$sub/$f" "$REPORTS/distill/$(basename "$s")/$sub/"
      done
    done
    cp "$s/report.md" "$REPORTS/distill/$(basename "$s")/" 2>/dev/null || true
  done
  for f in report.md report.json curve.png curve.json; do
    [ -f "$ROOT/teacher/$f" ] && mkdir -p "$REPORTS/distill/teacher" && cp "$ROOT/teacher/$f" "$REPORTS/distill/teacher/"
  done
fi
du -sh "$MODELS"
echo "done: bundles under $MODELS/, reports and commands under $REPORTS/"
