#!/usr/bin/env bash
# heldout_thin_data.sh: GPTQ, RTN and held-out validation (calibration.heldout, issue 24) on thin
# calibration data, end to end through the CLI as a user would run them: the tiny random-weight
# checkpoint (make-model --preset tiny), recipe w4a16_mtp, calibration on one English text
# (/usr/share/common-licenses/GPL-3, Debian's base-files, one record per paragraph), evaluation on
# another (/usr/share/common-licenses/Apache-2.0, --text) against the source with one
# `dsv4-calib eval` call per calibration size (the comparison table). docs/QUALITY.md ("Thin
# data") quotes it; the warning threshold of `plan` (calib/data_sufficiency.h) comes from it.
#   bash bench/heldout_thin_data.sh [WORK_DIR]     # THIN_SIZES="16x64 32x128", THIN_EVAL="32x128"
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/cpu/launch/dsv4-calib
work="${1:-/tmp/dsv4_heldout_thin}"
rm -rf "$work" && mkdir -p "$work"
calib_text=/usr/share/common-licenses/GPL-3
eval_text=/usr/share/common-licenses/Apache-2.0
read -r -a sizes <<< "${THIN_SIZES:-4x32 4x64 8x32 8x64 16x64 32x64 16x128 32x128}"
eval_size="${THIN_EVAL:-32x128}"
"$bin" make-model --preset tiny --out "$work/tiny" >/dev/null
mtp=recipes/w4a16_mtp.yaml
# RTN twin: the GPTQModifier turned data-free (same scheme; the FP8 group joins its config_groups);
# held-out: calibration.heldout added.
sed '/^    QuantizationModifier:$/,+1d; s/GPTQModifier:/QuantizationModifier:/; /dampening_frac\|block_size\|actorder/d' \
  "$mtp" > "$work/rtn.yaml"
sed 's/^  propagate_error: true$/  propagate_error: true\n  heldout: {fraction: 0.25, dampings: [0.01, 0.1, 1.0]}/' "$mtp" > "$work/heldout.yaml"
sed 's/^  propagate_error: true$/  propagate_error: true\n  heldout: {fraction: 0.25, dampings: [0.01, 0.1, 1.0], refit: false}/' "$mtp" > "$work/heldout_norefit.yaml"
for size in "${sizes[@]}"; do
  n="${size%x*}" len="${size#*x}"
  models=()
  for method in gptq rtn heldout heldout_norefit; do
    recipe="$mtp"; [ "$method" != gptq ] && recipe="$work/$method.yaml"
    out="$work/${size}_$method"
    "$bin" -v 0 --recipe "$recipe" --model "$work/tiny" --dataset "$calib_text" --out "$out" \
      --num-samples "$n" --seq-len "$len" > "$out.log" 2>&1
    models+=(--model "$out")
  done
  tokens=$(grep -o '"tokens": *[0-9]*' "$work/${size}_gptq/calib_manifest.json" | head -1 | grep -o '[0-9]*$')
  # grep -c exits 1 on a count of 0 (no module kept RTN): not an error here.
  rtn_kept=$(grep -c '"chosen": *"rtn"' "$work/${size}_heldout/calib_manifest.json" || true)
  echo "== $size: $tokens calibration tokens; held-out validation kept RTN for $rtn_kept of 96 modules"
  "$bin" -v 0 eval "${models[@]}" --reference "$work/tiny" --data "$eval_text" --text \
    --num-samples "${eval_size%x*}" --seq-len "${eval_size#*x}"
done
