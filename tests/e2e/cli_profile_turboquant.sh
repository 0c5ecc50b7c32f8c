#!/usr/bin/env bash
# cli_profile_turboquant.sh: the turboquant output profile end to end through the real binary on
# the tiny checkpoint: recipes/tq3.yaml writes `<name>.weight.tq_packed` U8 [rows·groups, 48] +
# `.weight.tq_norms` F32 [rows, groups] for the main layers' attention, shared and routed experts,
# dense BF16 for the rest (compressor, indexer, MTP), FP32 tensors bit for bit, tq_config.json and
# config.json without quantization_config; verify passes; inspect, eval, dequant and plan read it;
# plan's size estimate holds (the tiny artifact, and the seed's ratio at full size); a scheme the
# profile cannot store is refused before any work, naming the key and the profiles that can.
# Run by ctest (cli_profile_turboquant) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
work="${1:?usage: $0 WORKDIR}"
rm -rf "$work" && mkdir -p "$work"
source "$(dirname "$0")/e2e_lib.sh"
recipes="$(cd "$(dirname "$0")/../../recipes" && pwd)"

"$bin" make-model --preset tiny --out "$work/tiny" >/dev/null || { echo "FAIL make-model"; exit 1; }
out="$work/tq"
expect_output "calibrate tq3" 0 "done: the artifact is $out" \
  "$bin" --recipe "$recipes/tq3.yaml" --model "$work/tiny" --out "$out"

# header TENSOR: its safetensors header entry ("absent" when the index lacks it).
header() {
  local shard
  shard=$(grep -o "\"$1\": \"[^\"]*\"" "$out/model.safetensors.index.json" | cut -d'"' -f4)
  if [ -z "$shard" ]; then echo absent; return; fi
  head -c 1000000 "$out/$shard" | grep -ao "\"$1\":{\"dtype\":\"[A-Z0-9_]*\",\"shape\":\[[0-9,]*\]" |
    sed 's/.*"dtype":"\([^"]*\)","shape":\(.*\)/\1 \2/'
}
check_header() {
  local got; got=$(header "$1")
  if [[ "$got" == "$2"* ]]; then pass "$1: $got"; else fail "$1: $got, expected $2"; fi
}
# experts w1 [128, 256]: 2 groups a row -> [256, 48] + [128, 2]; wo_a [128, 128]: 1 group.
check_header layers.0.ffn.experts.0.w1.weight.tq_packed "U8 [256,48]"
check_header layers.0.ffn.experts.0.w1.weight.tq_norms "F32 [128,2]"
check_header layers.0.ffn.experts.0.w1.weight "absent"
check_header layers.0.ffn.experts.0.w1.scale "absent"
check_header layers.0.attn.wo_a.weight.tq_packed "U8 [128,48]"
check_header layers.0.hc_attn_fn "F32"
check_header mtp.0.ffn.experts.0.w1.weight "BF16 [128,256]"
check_header mtp.0.ffn.experts.0.w1.weight.tq_packed "absent"
expect_output "tq_config format" 0 '"format": "tq3_native"' cat "$out/tq_config.json"
expect_output "tq_config seed" 0 '"quantizer_seed": 42' cat "$out/tq_config.json"
if grep -q quantization_config "$out/config.json"; then fail "config.json keeps quantization_config"
else pass "config.json without quantization_config"; fi

expect_output "verify" 0 "verify: OK" "$bin" verify "$out" --source "$work/tiny"
expect_output "inspect recognises it" 1 "format     artifact, profile turboquant (tq3_native, 3 bits, group 128)" \
  "$bin" inspect "$out"
expect_output "eval decodes it" 0 "mean KL" "$bin" eval --model "$out" --reference "$work/tiny" \
  --data "$work/tiny/calib.jsonl" --num-samples 2 --seq-len 32
expect_output "dequant decodes it" 0 "" "$bin" dequant "$out" --out "$work/deq.safetensors" --match 'experts\.0\.w1'
expect_output "plan shows the TQ format" 0 "tq3 g128 U8 + f32 norms (WHT seed 42, Lloyd-Max, data-free)" \
  "$bin" plan --recipe "$recipes/tq3.yaml" --preset tiny

# plan's size estimate: the tiny artifact's tensor bytes (each shard less its 8-byte length and
# header) within 1 % of `plan --json`'s artifact_bytes, and at full size (`--preset flash`) the
# seed's ratio, 131.28 GB of TQ3 for 159.62 GB of source (seed_pipelines §1.4), within 1 %.
data_bytes() { local n; n=$(od -An -t u8 -N 8 "$1" | tr -d ' '); echo $(( $(stat -c %s "$1") - 8 - n )); }
written=0
for f in "$out"/*.safetensors; do written=$((written + $(data_bytes "$f"))); done
estimate=$("$bin" plan --recipe "$recipes/tq3.yaml" --model "$work/tiny" --json | grep -o '"artifact_bytes": *[0-9]*' | grep -o '[0-9]*$')
within() { awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN { exit !(b > 0 && (a - b) / b <= tol && (b - a) / b <= tol) }'; }
if within "$estimate" "$written" 0.01; then pass "plan's estimate $estimate B, written $written B"
else fail "plan's estimate $estimate B, written $written B (more than 1 % apart)"; fi
flash=$("$bin" plan --recipe "$recipes/tq3.yaml" --preset flash --json)
art=$(grep -o '"artifact_bytes": *[0-9]*' <<< "$flash" | grep -o '[0-9]*$')
src=$(grep -o '"source_bytes": *[0-9]*' <<< "$flash" | grep -o '[0-9]*$')
ratio=$(awk -v a="$art" -v s="$src" 'BEGIN { printf "%.4f", a / s }')
if within "$ratio" "$(awk 'BEGIN { printf "%.6f", 131.28 / 159.62 }')" 0.01; then
  pass "flash: artifact $art B of $src B, ratio $ratio (seed 0.8225)"
else fail "flash: ratio $ratio, the seed's 0.8225 (more than 1 % apart)"; fi

# A scheme turboquant cannot store (FP8 block with activations) is refused before any work,
# naming the key and the profiles that can store it; a width the loader cannot resolve too.
expect_error "fp8 into turboquant" "output.profile turboquant cannot store layers.0.attn.wq_a" \
  "$bin" --recipe "$recipes/w4a16_fp8.yaml" --model "$work/tiny" --out "$work/bad" --profile turboquant
expect_error "fp8 into turboquant: who can" "profiles that can store it: vllm" \
  "$bin" --recipe "$recipes/w4a16_fp8.yaml" --model "$work/tiny" --out "$work/bad" --profile turboquant
if [ ! -e "$work/bad" ]; then pass "refused before any work: no output directory"; else fail "$work/bad was created"; fi
e2e_finish
