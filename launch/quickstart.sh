#!/usr/bin/env bash
# quickstart.sh: README command (1), the whole job on the built-in tiny checkpoint. Installs the
# dependencies, builds dsv4-calib (CPU preset), writes the tiny DeepSeek-V4 checkpoint in the
# release layout to runs/tiny (with a synthetic chat calibration set, calib.jsonl), calibrates it
# with recipes/w4a16_mtp.yaml (GPTQ W4A16 experts, FP8 block attention, MTP kept BF16), verifies
# the artifact against the source, and evaluates source vs artifact (perplexity, KL, top-1), whose
# numbers then go into the artifact's report.html and model card README.md (`dsv4-calib report`).
# The artifact goes to runs/tiny_w4a16_mtp; this script replaces its own previous output there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install_deps.sh
cmake --preset cpu >/dev/null
cmake --build --preset cpu -j "$(nproc)" --target dsv4-calib
bin=build/cpu/launch/dsv4-calib
if [ ! -f runs/tiny/config.json ] || [ ! -f runs/tiny/calib.jsonl ]; then
  rm -rf runs/tiny
  "$bin" make-model --preset tiny --out runs/tiny
fi
out=runs/tiny_w4a16_mtp
rm -rf "$out"
"$bin" --recipe recipes/w4a16_mtp.yaml --model runs/tiny --dataset runs/tiny/calib.jsonl --out "$out" \
  --num-samples 32 --seq-len 64
"$bin" verify "$out" --source runs/tiny
# The tiny model's weights are random: its perplexity is at chance level (eval says so); KL and
# top-1 agreement against the source are what show the quantization.
"$bin" eval --model "$out" --reference runs/tiny --data runs/tiny/calib.jsonl --num-samples 8 --seq-len 64
# The same numbers as JSON beside the artifact, and its report and model card written again with them.
"$bin" -v 0 eval --model "$out" --reference runs/tiny --data runs/tiny/calib.jsonl --num-samples 8 --seq-len 64 \
  --json > "$out/eval.json"
"$bin" report "$out"
echo
echo "quickstart: done. The artifact is $out: open $out/report.html in a browser for the plots;"
echo "$out/README.md is its model card, progress.jsonl and calib_manifest.json the numbers."
echo "README.md, 'What command (1) did, and what to look at', says what to read next."
