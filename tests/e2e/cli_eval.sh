#!/usr/bin/env bash
# cli_eval.sh: end-to-end checks of `dsv4-calib eval` through the real binary on tiny synthetic
# checkpoints (make-model, seeds 0 and 1, and a 2-layer one) and the calib.jsonl written beside
# them: a model against itself (KL 0, top-1 1, equal perplexities, in --json), against another
# seed (KL > 0), the table, several models in one call (the comparison table and its JSON),
# --text, and named errors for bad input.
# Run by ctest (cli_eval) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
work="${1:?usage: $0 WORKDIR}"
rm -rf "$work" && mkdir -p "$work"
source "$(dirname "$0")/e2e_lib.sh"

"$bin" make-model --preset tiny --out "$work/a" >/dev/null || { echo "FAIL make-model a"; exit 1; }
"$bin" make-model --preset tiny --seed 1 --out "$work/b" >/dev/null || { echo "FAIL make-model b"; exit 1; }
"$bin" make-model --preset tiny --layers 2 --out "$work/two" >/dev/null || { echo "FAIL make-model two"; exit 1; }
data="$work/a/calib.jsonl"
small=(--num-samples 3 --seq-len 32)

# field JSON KEY: the raw value of a number field of a one-line JSON object (the first match:
# top-level fields come before the per_sample arrays).
field() { grep -o "\"$2\":[-0-9.eE+]*" <<<"$1" | head -1 | cut -d: -f2; }

# 1. Against itself: exactly zero KL and full agreement; -v 0 --json prints only the JSON line.
out=$("$bin" -v 0 eval --model "$work/a" --reference "$work/a" --data "$data" "${small[@]}" --json 2>&1)
if [ "$(wc -l <<<"$out")" -eq 1 ] && [ "${out:0:1}" = "{" ] && grep -qF '"kl_mean":0.0,' <<<"$out" &&
   grep -qF '"top1_agreement":1.0,' <<<"$out" && grep -qF '"samples":3,' <<<"$out" &&
   [ -n "$(field "$out" perplexity)" ] && [ "$(field "$out" perplexity)" = "$(field "$out" reference_perplexity)" ]
then pass "self reference: KL 0, top-1 1, equal perplexities (json only)"; else fail "self reference json: $out"; fi

# 2. Against another seed: KL > 0 and top-1 < 1 (two random models), in JSON and in the table.
out=$("$bin" eval --model "$work/a" --reference "$work/b" --data "$data" "${small[@]}" --json 2>&1 | tail -1)
kl=$(field "$out" kl_mean); top1=$(field "$out" top1_agreement)
if [ -n "$kl" ] && awk -v k="$kl" -v t="$top1" 'BEGIN { exit !(k > 0 && t < 1) }'
then pass "other seed: KL $kl > 0, top-1 $top1 < 1"; else fail "other seed: $out"; fi
expect_output "table" 0 "mean KL (ref||model)" "$bin" eval --model "$work/a" --reference "$work/b" --data "$data" "${small[@]}"
expect_output "progress line" 0 "sample    3/3 | tok    32" "$bin" eval --model "$work/a" --data "$data" "${small[@]}"
expect_output "no reference" 0 "reference              -" "$bin" eval --model "$work/a" --data "$data" "${small[@]}"

# 2b. Several models in one call: the comparison table (source row, then each model in order) and its JSON.
out=$("$bin" -v 0 eval --model "$work/a" --model "$work/b" --reference "$work/a" --data "$data" "${small[@]}" 2>&1)
if grep -qF "(source) $work/a" <<<"$out" && [ "$(grep -c "^  $work/[ab] " <<<"$out")" -eq 2 ] &&
   grep -A1 "^  $work/a " <<<"$out" | tail -1 | grep -qF "$work/b" && grep -qF "mean KL" <<<"$out"
then pass "comparison table: source, then a and b"; else fail "comparison table: $out"; fi
out=$("$bin" -v 0 eval --model "$work/a" --model "$work/b" --reference "$work/a" --data "$data" "${small[@]}" --json 2>&1)
if [ "$(wc -l <<<"$out")" -eq 1 ] && grep -qF '"role":"source"' <<<"$out" &&
   [ "$(grep -o '"role":"model"' <<<"$out" | wc -l)" -eq 2 ] && grep -qF '"kl_mean":0.0,' <<<"$out"
then pass "comparison json: a source row and two model rows (a against itself: KL 0)"; else fail "comparison json: $out"; fi

# 3. --text: {"text"} records; chat records are refused with file and line.
printf '{"text": "plain text is evaluated as is"}\n{"text": "with a BOS in front of it"}\n' >"$work/text.jsonl"
expect_output "--text" 0 "perplexity" "$bin" eval --model "$work/a" --data "$work/text.jsonl" --text --num-samples 2
expect_output "--text refuses chat" 1 "calib.jsonl:1:" "$bin" eval --model "$work/a" --data "$data" --text

# 4. Errors name the problem.
expect_output "missing data named" 1 "$work/none.jsonl" "$bin" eval --model "$work/a" --data "$work/none.jsonl"
expect_output "other model refused" 1 "num_hidden_layers: 4 vs 2" \
  "$bin" eval --model "$work/a" --reference "$work/two" --data "$data" "${small[@]}"
expect_output "too many samples" 1 "asked for 500 samples" "$bin" eval --model "$work/a" --data "$data" --num-samples 500
expect_output "bad --seq-len" 1 "--seq-len 1" "$bin" eval --model "$work/a" --data "$data" --seq-len 1
expect_output "bad --mode" 105 "--mode" "$bin" eval --model "$work/a" --data "$data" --mode fp16
expect_output "--data required" 106 "--data" "$bin" eval --model "$work/a"

e2e_finish
