#!/usr/bin/env bash
# cli_user_errors.sh: the mistakes a new user makes in their first ten minutes (issue 28), driven
# through the real binary, with the wording each must get: the flag, file, key or recipe path and
# what was expected, in the user's words. No user error prints a source location (file.cpp:N) or
# a C++ expression; `-v 2` adds the location. Also: an occupied --out is refused before any data
# is read, and eval says when a perplexity is at chance level (make-model's random weights).
# Recipe quant arguments, a damaged checkpoint and a tokenizer directory are user mistakes too.
# The successful run's own wording (data line once, where the artifact is, what next) is checked
# by cli_calibrate.sh, which runs one.
# Run by ctest (cli_user_errors) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
work="${1:?usage: $0 WORKDIR}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$work" && mkdir -p "$work"
source "$(dirname "$0")/e2e_lib.sh"

"$bin" make-model --preset tiny --out "$work/tiny" >/dev/null || { echo "FAIL make-model"; exit 1; }
src="$work/tiny"
data="$src/calib.jsonl"
records=$(grep -c . "$data")
recipe="$root/recipes/w4a16_mtp.yaml"
job=("$bin" --recipe "$recipe" --model "$src" --dataset "$data")

# user_error NAME PATTERN CMD...: CMD fails, says PATTERN, and shows no source location, failing
# expression or component tag (those are for internal errors, and for -v 2), nor a rank tag: one
# process has one rank, so the error line opens with the user's words.
user_error() {
  local name="$1" pattern="$2"; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq 0 ]; then fail "$name: exit 0, expected an error; output: $out"; return; fi
  if ! grep -qF -- "$pattern" <<<"$out"; then fail "$name: output lacks '$pattern'; output: $out"; return; fi
  if grep -qE '\.(cpp|h|cu):[0-9]+|\(\)|==|!=|&&|\[(cli|quant|recipe|safetensors|data)\]' <<<"$out"; then
    fail "$name: shows code, not words: $out"; return
  fi
  if grep -qE '\[r[0-9]+/1[] ]|\(rank 0/1' <<<"$out"; then fail "$name: a rank tag on a single process: $out"; return; fi
  pass "$name"
}

# 1. No arguments at all: the usage, not an error about --recipe.
expect_output "bare: usage" 1 "Usage:" "$bin"
expect_output "bare: the main job's flags" 1 "--recipe" "$bin"
expect_output "bare: where to start" 1 "launch/quickstart.sh" "$bin"
user_error "no recipe" "nothing to do: pass --recipe R" "$bin" -v 1

# 2. A directory that is not a checkpoint, and what one holds.
user_error "--model docs" "docs is not a checkpoint directory (--model, or model.path in the recipe): it has no config.json" \
  "$bin" --recipe "$recipe" --model "$root/docs" --dataset "$data" --out "$work/q_docs"
user_error "--model docs: what a checkpoint holds" "holds config.json, model.safetensors.index.json" \
  "$bin" --recipe "$recipe" --model "$root/docs" --dataset "$data" --out "$work/q_docs"
user_error "--model missing" "there is no such directory" \
  "$bin" --recipe "$recipe" --model "$work/nowhere" --dataset "$data" --out "$work/q_docs"
user_error "eval --model docs" "is not a checkpoint directory (--model)" \
  "$bin" eval --model "$root/docs" --data "$data"
[ ! -e "$work/q_docs" ] && pass "--model docs wrote nothing" || fail "--model docs wrote $work/q_docs"
expect_output "-v 2 adds the location" 1 "artifact_decode.cpp:" \
  "$bin" -v 2 --recipe "$recipe" --model "$root/docs" --dataset "$data" --out "$work/q_docs"

# 3. The output directory is the source.
user_error "--out is the source" "--out $src is the source checkpoint (--model $src)" "${job[@]}" --out "$src"

# 4. More samples than the data has (the recipe's 768 left in place): the flag, the key, the count.
user_error "too many samples" \
  "asked for 768 samples (--num-samples, or dataset.num_samples in the recipe) but the data has $records records" \
  "${job[@]}" --out "$work/q_many" --seq-len 32
user_error "too many samples: the way out" "pass --num-samples" "${job[@]}" --out "$work/q_many" --seq-len 32

# 5. A typo'd flag: the unexpected arguments in order, and the nearest flag.
user_error "--num-sample typo" "unexpected arguments: --num-sample 8 (did you mean --num-samples?)" \
  "${job[@]}" --out "$work/q_typo" --num-sample 8
user_error "subcommand flag typo" "unexpected arguments: --mdoel $src (did you mean --model?); see dsv4-calib eval --help" \
  "$bin" eval --mdoel "$src" --model "$src" --data "$data"
user_error "subcommand typo" "unexpected arguments: verfy $src (did you mean verify?)" "$bin" verfy "$src"

# 6. A missing dataset file and a misspelt recipe key: the file, the key path, the keys accepted.
user_error "missing --dataset" "cannot open dataset file '$work/none.jsonl' (dataset.files, or --dataset" \
  "$bin" --recipe "$recipe" --model "$src" --dataset "$work/none.jsonl" --out "$work/q_none"
sed 's/num_samples: 768/num_sample: 768/' "$recipe" >"$work/typo.yaml"
user_error "recipe key typo" "$work/typo.yaml: dataset.num_sample: unknown key (did you mean num_samples?); accepted here: files" \
  "$bin" --recipe "$work/typo.yaml" --model "$src" --dataset "$data" --out "$work/q_typo"
sed 's/^dataset:/datset:/' "$recipe" >"$work/typo_top.yaml"
user_error "recipe section typo" "$work/typo_top.yaml: datset: unknown key (did you mean dataset?)" \
  "$bin" --recipe "$work/typo_top.yaml" --model "$src" --dataset "$data" --out "$work/q_typo"

# 6b. A quant argument out of range or misspelt: the file, the key path down to the argument, what
# was expected (the rules are quant/'s, the words the recipe's).
group0="quant_stage.quant_modifiers.GPTQModifier.config_groups.group_0.weights"
group1="quant_stage.quant_modifiers.QuantizationModifier.config_groups.group_1.weights"
sed 's/num_bits: 4, type: int/num_bits: 9, type: int/' "$recipe" >"$work/bits9.yaml"
user_error "recipe: int num_bits 9" "$work/bits9.yaml: $group0.num_bits: expected 2 to 8 bits for int weights, got 9" \
  "$bin" --recipe "$work/bits9.yaml" --model "$src" --dataset "$data" --out "$work/q_bits"
sed 's/{num_bits: 8, type: float/{num_bits: 5, type: float/' "$recipe" >"$work/bits5.yaml"
user_error "recipe: float num_bits 5" "$work/bits5.yaml: $group1.num_bits: expected 4 (fp4 e2m1) or 8 (fp8 e4m3) for float weights, got 5" \
  "$bin" plan --recipe "$work/bits5.yaml" --preset tiny
sed 's/strategy: group, group_size: 128/strategy: grup, group_size: 128/' "$recipe" >"$work/strategy.yaml"
user_error "recipe: unknown strategy" "$work/strategy.yaml: $group0.strategy: expected one of tensor, channel, group, block, tensor_group, token, attn_head, got 'grup' (did you mean group?)" \
  "$bin" --recipe "$work/strategy.yaml" --model "$src" --dataset "$data" --out "$work/q_bits"
sed 's/dampening_frac: 0.01/dampening_frac: -1/' "$recipe" >"$work/damp.yaml"
user_error "recipe: negative dampening" "$work/damp.yaml: quant_stage.quant_modifiers.GPTQModifier.dampening_frac: expected a finite number >= 0, got -1" \
  "$bin" plan --recipe "$work/damp.yaml" --preset tiny
sed 's/GPTQModifier:/GPTQModifer:/' "$recipe" >"$work/modifier.yaml"
user_error "recipe: modifier typo" "quant_stage.quant_modifiers.GPTQModifer: unknown modifier (did you mean GPTQModifier?)" \
  "$bin" plan --recipe "$work/modifier.yaml" --preset tiny
[ ! -e "$work/q_bits" ] && pass "bad recipe wrote nothing" || fail "bad recipe wrote $work/q_bits"

# 7. An --out holding something else: refused before the data is read or the plan printed.
mkdir -p "$work/occupied" && echo "mine" >"$work/occupied/notes.txt"
out=$("${job[@]}" --out "$work/occupied" --num-samples 8 --seq-len 32 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -qF -- "--out $work/occupied is not empty and holds no interrupted run" <<<"$out" &&
   ! grep -qF "calibration data" <<<"$out" && ! grep -qF " -> " <<<"$out" && [ "$(cat "$work/occupied/notes.txt")" = mine ]
then pass "occupied --out refused before any work"; else fail "occupied --out (rc $rc): $out"; fi

# 8. A damaged checkpoint: a truncated shard, a shard whose header is not JSON, a shard the index
# lists but the directory lacks. Each names the file and what was expected.
damaged() {  # damaged NAME: a copy of the tiny checkpoint to break
  rm -rf "$work/$1" && cp -r "$src" "$work/$1" && echo "$work/$1"
}
job_on() { "$bin" --recipe "$recipe" --model "$1" --dataset "$data" --out "$work/q_dmg"; }
shard=model-00002-of-00006.safetensors
d=$(damaged trunc) && truncate -s -100 "$d/$shard"
user_error "truncated shard" "$d/$shard: tensor " job_on "$d"
user_error "truncated shard: what is wrong" "the file is truncated or the header is wrong" job_on "$d"
d=$(damaged badjson) && printf 'x' | dd of="$d/$shard" bs=1 seek=8 conv=notrunc 2>/dev/null
user_error "shard header not JSON" "$d/$shard: the header is not well-formed JSON (the file is damaged): parse error at line 1" \
  job_on "$d"
d=$(damaged noshard) && rm "$d/model-00003-of-00006.safetensors"
user_error "shard missing" "$d/model.safetensors.index.json: tensor " job_on "$d"
user_error "shard missing: what is wrong" "maps to file 'model-00003-of-00006.safetensors', but '$d' has no such file; expected every shard the index lists" \
  job_on "$d"
user_error "eval of a damaged checkpoint" "$d/model.safetensors.index.json: tensor " "$bin" eval --model "$d" --data "$data"
[ ! -e "$work/q_dmg" ] && pass "damaged checkpoint wrote nothing" || fail "damaged checkpoint wrote $work/q_dmg"

# 9. A --tokenizer directory without tokenizer.json, and one that does not exist.
user_error "--tokenizer docs" "$root/docs (--tokenizer) has no tokenizer.json: expected $root/docs/tokenizer.json" \
  "$bin" tokenize --tokenizer "$root/docs" --text hi
user_error "--tokenizer missing" "$work/nowhere (--tokenizer): no such file or directory; expected a tokenizer.json" \
  "$bin" tokenize --tokenizer "$work/nowhere" --text hi

# 10. eval on make-model's random weights says its perplexity is at chance level.
expect_output "eval: chance level" 0 "perplexity is at chance level" \
  "$bin" eval --model "$src" --data "$data" --num-samples 1 --seq-len 16

e2e_finish
