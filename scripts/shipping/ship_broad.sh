#!/usr/bin/env bash
# Issue 22: the *LinSkip variants trained on the broader data (the held-out family excluded) -> bundles beside the
# seed bundles -> the leave-one-family-out check of every shipped bundle -> reports. CPU; commands recorded in
# models/reports/tinyvae/COMMANDS_export.md, the training commands in models/reports/tinyvae/COMMANDS_train.md.
#
#   scripts/shipping/ship_broad.sh            # ROOT=runs/d23: lin_L8_sigimg/ lin_L64/ lin32_L64/ (sage-ros train runs)
#   STAGES="export lofo" (default); BUNDLES="tinyvae_linskip_l64_fp32 ..." exports only those
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
ROOT=${ROOT:-runs/d23}
MODELS=${MODELS:-models}
REPORTS=$MODELS/reports/tinyvae/retrain_broad_data
CMDLOG=$MODELS/reports/tinyvae/COMMANDS_export.md
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SAGE=("$PY" -m sage_ros.cli)
{ echo; echo "# Issue 22 ($(date -u +%F), CPU): the LinSkip variants on the broader data (scripts/shipping/ship_broad.sh)"; echo; } >> "$CMDLOG"
run() {  # echo, record, run
  echo "+ $*"
  echo "    $*" >> "$CMDLOG"
  "$@"
}
export_bundle() {  # run-dir bundle-name precision [more export options]
  rm -rf "${MODELS:?}/$2"
  run "${SAGE[@]}" export --run "$1" --precision "$3" --out "$MODELS/$2" --metrics "$1/metrics.json" --evaluate "${@:4}"
}
STAGES=${STAGES:-export lofo}
# tinyvae_linskip_l64_int4 is not shipped: -0.49 dB on test (20.90, below PCA-64's 21.12; GPTQ int4 of the fixed
# PCA path), μ cosine 0.99975; BUNDLES=tinyvae_linskip_l64_int4 rebuilds it
BUNDLES=${BUNDLES:-tinyvae_linskip_l64_fp32 tinyvae_linskip_l64_int8 tinyvae_linskip_l8_fp32 tinyvae32_linskip_l64_fp32}
declare -A SOURCE=([tinyvae_linskip_l64_fp32]="lin_L64 fp32" [tinyvae_linskip_l64_int8]="lin_L64 int8"
                   [tinyvae_linskip_l64_int4]="lin_L64 int4"
                   [tinyvae_linskip_l8_fp32]="lin_L8_sigimg fp32" [tinyvae32_linskip_l64_fp32]="lin32_L64 fp32")
if [[ " $STAGES " == *" export "* ]]; then
  for bundle in $BUNDLES; do
    read -r run_name precision <<< "${SOURCE[$bundle]}"
    extra=()
    [ "$precision" = int4 ] && extra=(--rounding gptq --conv-scheme int8)  # as the seed's int4 (ship_tinyvae.sh)
    export_bundle "$ROOT/$run_name" "$bundle" "$precision" "${extra[@]}"
    mkdir -p "$REPORTS/$run_name"
    for f in report.md report.json curve.png curve.json; do
      [ -f "$ROOT/$run_name/$f" ] && cp "$ROOT/$run_name/$f" "$REPORTS/$run_name/"
    done
  done
fi
[[ " $STAGES " == *" lofo "* ]] || exit 0
run "$PY" scripts/studies/lofo_check.py --out "$MODELS/reports/lofo/shipped"
du -sh "$MODELS"
