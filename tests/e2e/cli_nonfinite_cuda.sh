#!/usr/bin/env bash
# cli_nonfinite_cuda.sh: the non-finite scans of the CUDA executor (issue 26) through the binary
# with --device cuda, where no host scan sees the values: a NaN E8M0 scale of a routed expert,
# which the GPU decodes (refused naming the tensor, counted on the device), and finite weights whose
# forward overflows (layers.0.attn_norm all bf16 3.19e38: refused naming layers.0 and pass A,
# counted on the GPU before any solve). Each ends with exit 1 and no artifact. Without a GPU it
# says so and passes, unless DSV4_REQUIRE_GPU=1 (the GPU machine), where that is a failure.
# Usage: DSV4_BIN=build/cuda/launch/dsv4-calib bash cli_nonfinite_cuda.sh TMPDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
tmp="${1:?usage: $0 TMPDIR}"
rm -rf "$tmp" && mkdir -p "$tmp"
skip_without_gpu

"$bin" make-model --preset tiny --out "$tmp/tiny" >/dev/null || { fail "make-model"; e2e_finish; }
job() {
  "$bin" --recipe "$here/../../recipes/w4a16_mtp.yaml" --model "$1" --dataset "$tmp/tiny/calib.jsonl" --out "$2" \
    --num-samples 4 --seq-len 16 --threads 2 --device cuda
}
copy() { rm -rf "${tmp:?}/$1" && cp -r "$tmp/tiny" "$tmp/$1" && echo "$tmp/$1"; }

d=$(copy nan_scale) && bytes_into "$d" layers.1.ffn.experts.3.w1.scale ff
expect_output "NaN E8M0 scale decoded on the GPU" 1 \
  "layers.1.ffn.experts.3.w1.weight (decoded on the GPU) in $d holds" job "$d" "$tmp/q_nan"
d=$(copy overflow) && at=$(tensor_at "$d" layers.0.attn_norm.weight) && {
  set -- $at
  for _ in $(seq 1 $(($3 / 2))); do printf '\x70\x7f'; done | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
expect_output "finite weights that overflow the GPU forward" 1 \
  "layers.0, pass A (the statistics the solves read): the block's output holds" job "$d" "$tmp/q_overflow"
[ ! -e "$tmp/q_nan/model.safetensors.index.json" ] && [ ! -e "$tmp/q_overflow/model.safetensors.index.json" ] \
  && pass "no artifact written" || fail "an artifact was written"
e2e_finish
