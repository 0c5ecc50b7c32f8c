#!/usr/bin/env bash
# cli_profile_appmana.sh: the appmana-dsv4-int output profile end to end through the real binary
# on the tiny checkpoint: recipes/appmana_int4_int8.yaml writes the source's shard names plus
# model-mtp-shared.safetensors, the fork's config.json, INT4 experts (I8 + BF16 .scale) and INT8
# channel linears (U8 + BF16 .scale), the main layers' wo_a among them (output.wo_a: int8) and
# MTP's BF16, the index's total_size a string as the seed's; verify passes; inspect, eval and
# dequant read it; the same recipe with `output.wo_a: bf16` (wo_a BF16 without a scale, the seed
# converter's) and in block mode (I8 + BF16 [out/128, in/128]) pass verify too; --profile switches
# a recipe's profile; an unknown profile and a scheme the profile cannot store are refused before
# any work, naming the key and the profiles that can.
# Run by ctest (cli_profile_appmana) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
work="${1:?usage: $0 WORKDIR}"
rm -rf "$work" && mkdir -p "$work"
source "$(dirname "$0")/e2e_lib.sh"
recipes="$(cd "$(dirname "$0")/../../recipes" && pwd)"

"$bin" make-model --preset tiny --out "$work/tiny" >/dev/null || { echo "FAIL make-model"; exit 1; }
out="$work/am"
expect_output "calibrate appmana_int4_int8" 0 "done: the artifact is $out" \
  "$bin" --recipe "$recipes/appmana_int4_int8.yaml" --model "$work/tiny" --out "$out"

# Shards: the source's names, and the MTP shared tensors in their own file.
want=$(cd "$work/tiny" && ls model-*.safetensors; echo model-mtp-shared.safetensors)
got=$(cd "$out" && ls model-*.safetensors)
if [ "$(sort <<<"$want")" = "$(sort <<<"$got")" ]; then pass "shard names kept, plus model-mtp-shared"
else fail "shards: $got, expected $want"; fi

# header TENSOR: its safetensors header entry and shard ("absent" when the index lacks it).
header() {
  local shard
  shard=$(grep -o "\"$1\": \"[^\"]*\"" "$out/model.safetensors.index.json" | cut -d'"' -f4)
  if [ -z "$shard" ]; then echo absent; return; fi
  echo "$(head -c 1000000 "$out/$shard" | grep -ao "\"$1\":{\"dtype\":\"[A-Z0-9_]*\",\"shape\":\[[0-9,]*\]" |
    sed 's/.*"dtype":"\([^"]*\)","shape":\(.*\)/\1 \2/') $shard"
}
check_header() {
  local got; got=$(header "$1")
  if [[ "$got" == "$2"* ]]; then pass "$1: $got"; else fail "$1: $got, expected $2"; fi
}
check_header layers.0.ffn.experts.0.w1.weight "I8 [128,128]"
check_header layers.0.ffn.experts.0.w1.scale "BF16 [128,8]"
check_header layers.0.attn.wq_a.weight "U8 [128,256]"
check_header layers.0.attn.wq_a.scale "BF16 [128]"
check_header layers.0.attn.wo_a.weight "U8 [128,128]"
check_header layers.0.attn.wo_a.scale "BF16 [128]"
check_header mtp.0.attn.wo_a.weight "BF16 [128,128]"
check_header mtp.0.attn.wo_a.scale "absent"
check_header mtp.0.head.weight "BF16 [512,256] model-mtp-shared.safetensors"
expect_output "index metadata" 0 '"mtp_shared_tensors": "materialized"' cat "$out/model.safetensors.index.json"
expect_output "index total_size a string" 0 '"total_size": "' cat "$out/model.safetensors.index.json"
expect_output "config quant_method" 0 '"quant_method": "dsv4_int"' cat "$out/config.json"
expect_output "config vllm block" 0 '"cache_type": "int8_ds_mla"' cat "$out/config.json"

expect_output "verify" 0 "verify: OK" "$bin" verify "$out" --source "$work/tiny"
expect_output "inspect recognises it" 1 "format     artifact, profile appmana-dsv4-int" "$bin" inspect "$out"
expect_output "eval decodes it" 0 "mean KL" "$bin" eval --model "$out" --reference "$work/tiny" \
  --data "$work/tiny/calib.jsonl" --num-samples 2 --seq-len 32
expect_output "dequant decodes it" 0 "" "$bin" dequant "$out" --out "$work/deq.safetensors" --match 'experts\.0\.w1'

# output.wo_a: bf16 with wo_a out of the INT8 group: the seed converter's BF16 wo_a.
sed -e 's/wo_a: int8 .*/wo_a: bf16/' -e 's/wq_b|wkv|wo_a|wo_b/wq_b|wkv|wo_b/' -e 's/kv_proj|o_a_proj|o_b_proj/kv_proj|o_b_proj/' \
  "$recipes/appmana_int4_int8.yaml" >"$work/bf16.yaml"
out="$work/am_bf16"
expect_output "calibrate wo_a: bf16" 0 "done: the artifact is $out" \
  "$bin" --recipe "$work/bf16.yaml" --model "$work/tiny" --out "$out"
check_header layers.0.attn.wo_a.weight "BF16 [128,128]"
check_header layers.0.attn.wo_a.scale "absent"
expect_output "verify wo_a: bf16" 0 "verify: OK" "$bin" verify "$out" --source "$work/tiny"
# Block mode (no shipped recipe): every INT8 linear, wo_a included, I8 with 128x128 BF16 scales.
sed 's/strategy: channel}/strategy: block, block_structure: [128, 128]}/' "$recipes/appmana_int4_int8.yaml" >"$work/block.yaml"
out="$work/am_block"
expect_output "calibrate block mode" 0 "done: the artifact is $out" \
  "$bin" --recipe "$work/block.yaml" --model "$work/tiny" --out "$out"
check_header layers.0.attn.wq_a.weight "I8 [128,256]"
check_header layers.0.attn.wq_a.scale "BF16 [1,2]"
check_header layers.0.attn.wo_a.weight "I8 [128,128]"
check_header layers.0.attn.wo_a.scale "BF16 [1,1]"
expect_output "config block" 0 '"block_size": [' cat "$out/config.json"
expect_output "verify block mode" 0 "verify: OK" "$bin" verify "$out" --source "$work/tiny"
out="$work/am"

# --profile: a vllm recipe written as appmana cannot be stored (FP8 block with activations), and
# the message names the key and the profiles that can store it; an unknown name is refused.
expect_error "--profile unknown" "--profile: unknown output profile 'tq9'; the profiles are vllm, appmana-dsv4-int" \
  "$bin" plan --recipe "$recipes/w4a16_mtp.yaml" --preset tiny --profile tq9
expect_error "nvfp4 into appmana" "output.profile appmana-dsv4-int cannot store layers.0.attn.wq_a" \
  "$bin" --recipe "$recipes/nvfp4_fp8_mtp.yaml" --model "$work/tiny" --out "$work/nv" --profile appmana-dsv4-int
expect_error "nvfp4 into appmana: who can" "profiles that can store it: vllm" \
  "$bin" --recipe "$recipes/nvfp4_fp8_mtp.yaml" --model "$work/tiny" --out "$work/nv" --profile appmana-dsv4-int
if [ ! -e "$work/nv" ]; then pass "refused before any work: no output directory"; else fail "$work/nv was created"; fi
expect_output "plan shows the dsv4_int format" 0 "dsv4_int int4 uint4b8 I8 + bf16 scale/32 (mse scales)" \
  "$bin" plan --recipe "$recipes/appmana_int4_int8.yaml" --preset tiny
e2e_finish
