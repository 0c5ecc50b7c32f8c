#!/usr/bin/env bash
# cli_make_model_inspect.sh: end-to-end checks of `dsv4-calib make-model` and `inspect` through
# the real binary: the release dry-run totals, a tiny checkpoint that passes inspect, refusal to
# overwrite, and named errors for damaged checkpoints and bad arguments.
# Run by ctest (cli_make_model_inspect) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
work="${1:?usage: $0 WORKDIR}"
rm -rf "$work" && mkdir -p "$work"
source "$(dirname "$0")/e2e_lib.sh"

# 1. The full release inventory, without writing: the real index's exact totals.
expect_output "flash dry-run tensors" 0 '"tensors":69187' \
  "$bin" make-model --preset flash --layers 43 --experts 256 --dry-run --json
expect_output "flash dry-run bytes" 0 '"bytes":159609485896' \
  "$bin" make-model --preset flash --layers 43 --experts 256 --dry-run --json
expect_output "dry-run writes nothing" 0 '"dry_run":true' \
  "$bin" make-model --preset flash --dry-run --json --out "$work/never"
[ ! -e "$work/never" ] && pass "dry-run left no directory" || fail "dry-run created $work/never"

# 2. The tiny checkpoint passes inspect (text and JSON).
expect_output "make-model tiny" 0 "wrote $work/tiny" "$bin" make-model --preset tiny --out "$work/tiny"
expect_output "inspect tiny" 0 "inventory  OK" "$bin" inspect "$work/tiny"
expect_output "inspect tiny --json" 0 '"ok": true' "$bin" inspect "$work/tiny" --json
expect_output "inspect lists MTP" 0 "mtp.*.e_proj.weight" "$bin" inspect "$work/tiny"

# 3. Nothing valid is overwritten.
before=$(cat "$work"/tiny/*.safetensors | md5sum)
expect_output "refuses non-empty out" 1 "not empty" "$bin" make-model --preset tiny --out "$work/tiny"
[ "$before" = "$(cat "$work"/tiny/*.safetensors | md5sum)" ] && pass "existing checkpoint untouched" \
  || fail "existing checkpoint changed"

# 3b. The CPU forward on the tiny checkpoint, written out and read back by inspect-free checks.
echo '[0, 17, 42, 99, 300, 5, 6, 7]' > "$work/ids.json"
expect_output "forward tiny" 0 "forward done" "$bin" forward --model "$work/tiny" --ids "$work/ids.json" --out "$work/fwd.safetensors"
[ -s "$work/fwd.safetensors" ] && grep -qa '"hidden.3"' "$work/fwd.safetensors" && grep -qa '"logits"' "$work/fwd.safetensors" \
  && pass "forward --out holds logits and hidden.L" || fail "forward --out lacks logits or hidden.3"
expect_output "forward bf16" 0 "mode bf16" "$bin" forward --model "$work/tiny" --ids "$work/ids.json" --mode bf16
echo '[0, 512]' > "$work/bad_ids.json"
expect_output "forward rejects out-of-vocab id" 1 "element 1 = 512" "$bin" forward --model "$work/tiny" --ids "$work/bad_ids.json"

# 3c. make-model --weights takes unencoded weights only, and the shape from their config.json
# (tests/model/test_weights_import.cpp covers the import itself).
expect_output "--weights refuses encoded weights" 1 "is F8_E4M3; expected F32 or BF16" \
  "$bin" make-model --weights "$work/tiny" --out "$work/from_fp8"
[ ! -e "$work/from_fp8" ] && pass "--weights refusal left no directory" || fail "--weights refusal created $work/from_fp8"
expect_output "--weights with --preset refused" 1 "drop --preset, --layers and --experts" \
  "$bin" make-model --weights "$work/tiny" --preset tiny --out "$work/from_fp8"

# 4. Damaged checkpoints are rejected with the file or tensor named.
cp -r "$work/tiny" "$work/truncated"
shard=$(ls "$work/truncated"/model-*.safetensors | head -n 1)
truncate -s -1 "$shard"
expect_output "truncated shard named" 1 "$(basename "$shard")" "$bin" inspect "$work/truncated"

cp -r "$work/tiny" "$work/dropped"
python_free_edit() {  # drop one tensor from the index: grep -v its line
  grep -v '"layers.1.attn.wq_a.scale"' "$1" > "$1.new" && mv "$1.new" "$1"
}
python_free_edit "$work/dropped/model.safetensors.index.json"
expect_output "tensor missing from index named" 1 "layers.1.attn.wq_a.scale" "$bin" inspect "$work/dropped"

cp -r "$work/tiny" "$work/wrongcfg"
sed -i 's/"n_routed_experts": 8/"n_routed_experts": 16/' "$work/wrongcfg/config.json"
expect_output "config/tensor mismatch named" 1 "layers.0.ffn.experts.8.w1.weight" "$bin" inspect "$work/wrongcfg"

# A config declaring more MTP stages than the checkpoint holds (the field's "MTP silently
# dropped" failure seen from the other side): inspect names the mismatch.
cp -r "$work/tiny" "$work/nomtp"
sed -i 's/"num_nextn_predict_layers": 1/"num_nextn_predict_layers": 2/' "$work/nomtp/config.json"
expect_output "MTP stage count mismatch named" 1 "num_nextn_predict_layers = 2 but the checkpoint holds 1 MTP stage" \
  "$bin" inspect "$work/nomtp"

expect_output "missing config named" 1 "$work/nothing is not a checkpoint directory: there is no such directory" \
  "$bin" inspect "$work/nothing"

# 5. Full Flash widths (1 layer, 2 experts: 2.5 GB, mostly embed/head) with the real DeepSeek
# tokenizer copied in, when ../shared is beside the checkout (it is on CI). On a disk without the
# room (a CI machine once had less), make-model must refuse up front and write nothing.
tok="${DSV4_SHARED:-}/data/deepseek_v3_tokenizer"
if [ -f "$tok/tokenizer.json" ]; then
  flash_args=(make-model --preset flash --layers 1 --experts 2 --tokenizer "$tok" --out "$work/flash")
  need=$("$bin" "${flash_args[@]}" --dry-run --json | sed -n 's/.*"bytes":\([0-9]*\).*/\1/p')
  avail=$(df --output=avail -B1 "$work" | tail -1 | tr -d ' ')
  if [ "$avail" -gt $(( need + (512 << 20) )) ]; then
    expect_output "make-model flash" 0 "wrote $work/flash" "$bin" "${flash_args[@]}"
    expect_output "inspect flash" 0 "inventory  OK" "$bin" inspect "$work/flash"
    cmp -s "$tok/tokenizer.json" "$work/flash/tokenizer.json" && pass "tokenizer copied byte for byte" \
      || fail "tokenizer.json differs from $tok"
  elif [ "$avail" -lt "$need" ]; then
    echo "note: $avail bytes free, the flash checkpoint needs $need: checking the up-front refusal instead"
    expect_output "make-model flash refuses a small disk" 1 "available" "$bin" "${flash_args[@]}"
    [ ! -e "$work/flash" ] && pass "refused flash wrote nothing" || fail "refused flash left $work/flash"
  else
    echo "skip flash write: $avail bytes free is within 512 MB of the $need needed (neither check is sure)"
  fi
  rm -rf "$work/flash"
else
  echo "skip flash write: no tokenizer at '$tok' (set DSV4_SHARED)"
fi

# 6. plan: the shipped recipe on the tiny checkpoint and on the release's shape (no files).
recipes="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../recipes" && pwd)"
expect_output "plan w4a16_mtp on tiny" 0 "modules: 177 Linear, 112 quantized, 65 kept" \
  "$bin" plan --recipe "$recipes/w4a16_mtp.yaml" --model "$work/tiny"
# flash: 43 layers x 256 experts x 3 routed Linears + 43 x 4 attention Linears.
expect_output "plan w4a16_mtp on flash" 0 '"quantized": 33196' \
  "$bin" plan --recipe "$recipes/w4a16_mtp.yaml" --preset flash --json
printf 'q_stage:\n  q_modifiers:\n    GPTQModifier: {scheme: W4A16, dampening: 0.1}\n' > "$work/bad.yaml"
expect_output "plan names an unknown key" 1 "q_stage.q_modifiers.GPTQModifier.dampening: unknown key" \
  "$bin" plan --recipe "$work/bad.yaml" --preset tiny

# 7. Bad arguments.
expect_output "flash needs a tokenizer" 1 "--tokenizer" "$bin" make-model --preset flash --layers 1 --out "$work/f"
expect_output "unknown preset" 105 "preset" "$bin" make-model --preset huge --out "$work/h"
expect_output "bad shard size" 1 "--shard-size" "$bin" make-model --preset tiny --shard-size 12X --out "$work/s"

e2e_finish
