#!/usr/bin/env bash
# pipeline_layer.sh: the whole GPU pipeline on full-width DeepSeek-V4-Flash layers (issue 9):
# make-model --preset flash (2 layers, 256 experts, 96 long calibration records), then the main
# job with 96 samples x 512 tokens (one rank's share of 768 samples on 8 GPUs), recipe
# w4a16_mtp.yaml, --device cuda. Prints the per-layer phase lines (decode, forward, solve, comm,
# write), the GPU timing lines (pass A/B, GPTQ batches) and the peak host memory; the full log
# goes to $OUT/pipeline_layer.log. docs/PERFORMANCE.md quotes it.
#   run on the GPU machine after building the cuda preset (bench/gpu_check.sh does both):
#     bash bench/pipeline_layer.sh            # PIPELINE_LAYERS=N for another layer count
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/dsv4_gpu_out}"
mkdir -p "$out"
bin=build/cuda/launch/dsv4-calib
work="${PIPELINE_WORK:-/tmp/dsv4_pipeline_layer}"
rm -rf "$work" && mkdir -p "$work"
# 64 sentences of about 10 tokens: every record fills a 512-token sample.
"$bin" make-model --preset flash --layers "${PIPELINE_LAYERS:-2}" --experts 256 --tokenizer .gpu/tokenizer \
  --calib-records 96 --calib-sentences 64 --out "$work/model" > "$out/pipeline_make_model.log" 2>&1
/usr/bin/time -v "$bin" --recipe recipes/w4a16_mtp.yaml --model "$work/model" --dataset "$work/model/calib.jsonl" \
  --out "$work/q" --num-samples 96 --seq-len 512 --device cuda > "$out/pipeline_layer.log" 2>&1 || {
  tail -n 20 "$out/pipeline_layer.log"; exit 1; }
grep -E "calibration data:.*records|GPU|HC states|^\[|^wrote|Elapsed|Maximum resident" "$out/pipeline_layer.log" | cut -c1-240
rm -rf "$work"
