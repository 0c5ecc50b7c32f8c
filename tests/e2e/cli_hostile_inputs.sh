#!/usr/bin/env bash
# cli_hostile_inputs.sh: inputs that must not hurt it (issue 26), driven through the real binary.
# Each ends at once with exit 1 and a message naming the file, key or directory; none crashes,
# hangs or allocates without bound:
#   - JSON nested 200k levels deep in every JSON input (shard header, index, config.json,
#     tokenizer.json, a JSONL record, a journal line);
#   - a shard, config.json, tokenizer.json, dataset, recipe or tokenize --jsonl that is a FIFO
#     (tokenize --jsonl - reads standard input);
#   - absurd config.json sizes;
#   - a recipe that quantizes nothing (unless --allow-empty);
#   - a torn last journal record (the resume truncates it, redoes no finished segment);
#   - a second run on the same --out (refused naming the holder; a dead holder's lock is taken over);
#   - NaN in a BF16 source weight the forward decodes (layers.0.attn_norm) and in one the writer
#     copies (mtp.0.attn_norm): refused naming the tensor, not calibrated to exit 0;
#   - the same NaN in a source or an artifact: inspect and verify fail naming tensor and shard;
#   - finite weights whose forward overflows: refused naming the layer and the pass.
# Run by ctest (cli_hostile_inputs) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
work="${1:?usage: $0 WORKDIR}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$work" && mkdir -p "$work"
source "$(dirname "$0")/e2e_lib.sh"

"$bin" make-model --preset tiny --out "$work/tiny" >/dev/null || { echo "FAIL make-model"; exit 1; }
src="$work/tiny"
data="$src/calib.jsonl"
recipe="$root/recipes/w4a16_mtp.yaml"

# refused NAME PATTERN CMD...: CMD (a command or an exported function) ends within 60 s with exit
# 1 (not a crash: 139 is a segfault, 124 the timeout, which kills its whole process group) and
# says PATTERN.
refused() {
  local name="$1" pattern="$2"; shift 2
  local out rc
  out=$(timeout 60 bash -c '"$@"' _ "$@" 2>&1); rc=$?
  if [ "$rc" -ne 1 ]; then fail "$name: exit $rc, expected 1; output: $(tail -c 600 <<<"$out")"; return; fi
  if ! grep -qF -- "$pattern" <<<"$out"; then fail "$name: output lacks '$pattern'; output: $(tail -c 600 <<<"$out")"; return; fi
  pass "$name"
}
# copy NAME: a fresh copy of the tiny checkpoint to damage.
copy() { copy_dir "$src" "$1"; }
copy_dir() { rm -rf "$work/$2" && cp -r "$1" "$work/$2" && echo "$work/$2"; }
job() { "$bin" --recipe "$recipe" --model "$1" --dataset "$data" --num-samples 4 --seq-len 16 --threads 1 --out "${@:2}"; }
export bin work src data recipe
export -f job

# 1. JSON nested 200k levels deep (a 400 KB file) in every JSON input: a segfault (stack
# overflow in the first error message that printed the value) before the depth limit.
printf '%*s' 200000 '' | tr ' ' '[' >"$work/deep.txt"
printf '%*s' 200000 '' | tr ' ' ']' >>"$work/deep.txt"
# deepen FILE SED_EXPR: FILE with what SED_EXPR turns into @@ replaced by the deep value.
deepen() {
  local text
  text=$(sed "$2" "$1")
  grep -qF '@@' <<<"$text" || { fail "deepen $1: '$2' matched nothing"; return 1; }
  { printf '%s' "${text%%@@*}"; cat "$work/deep.txt"; printf '%s\n' "${text#*@@}"; } >"$1.new" && mv "$1.new" "$1"
}
# le8 N: N as 8 little-endian bytes (a safetensors header length).
le8() { local i; for i in 0 1 2 3 4 5 6 7; do printf "\\x$(printf %02x $(( ($1 >> (8 * i)) & 255 )))"; done; }
# deepen_header SHARD: the first tensor's shape in SHARD's header made deep, its data kept.
deepen_header() {
  local f="$1" len
  len=$(od -An -tu8 -N8 "$f" | tr -d ' ')
  head -c $((8 + len)) "$f" | tail -c "$len" >"$f.hdr"
  tail -c +$((9 + len)) "$f" >"$f.data"
  deepen "$f.hdr" '0,/"shape":\[[0-9,]*\]/s//"shape":@@/' || return 1
  { le8 "$(stat -c %s "$f.hdr")"; cat "$f.hdr" "$f.data"; } >"$f" && rm "$f.hdr" "$f.data"
}
limit="JSON nested more than 64 levels deep"
d=$(copy deep_config) && deepen "$d/config.json" 's/"hidden_size": *[0-9]*/"hidden_size": @@/'
refused "deep config.json: inspect" "$d/config.json: $limit" "$bin" inspect "$d"
refused "deep config.json: the main job" "$d/config.json: $limit" job "$d" "$work/q_deep"
d=$(copy deep_header) && deepen_header "$d/model-00001-of-00006.safetensors"
refused "deep shard header" "$d/model-00001-of-00006.safetensors: $limit" "$bin" inspect "$d"
d=$(copy deep_index) && deepen "$d/model.safetensors.index.json" 's/"total_size": *[0-9]*/"total_size": @@/'
refused "deep index" "$d/model.safetensors.index.json: $limit" "$bin" inspect "$d"
d=$(copy deep_tokenizer) && deepen "$d/tokenizer.json" 's/"merges": *\[/"merges": [@@,/'
refused "deep tokenizer.json" "$d/tokenizer.json: $limit" "$bin" tokenize --tokenizer "$d" --text hi
{ printf '{"text": '; cat "$work/deep.txt"; printf '}\n'; } >"$work/deep.jsonl"
refused "deep JSONL record" "$work/deep.jsonl:1: the record: $limit" \
  "$bin" --recipe "$recipe" --model "$src" --dataset "$work/deep.jsonl" --out "$work/q_deep"
out="$work/q_deep_journal"
DSV4_FAULT="kill@0@layers.2@solve" job "$src" "$out" >/dev/null 2>&1
sed -i '2s/.*/{"kind":"segment","segment":0,"report":@@}/' "$out/.calib_run/journal.jsonl"
deepen "$out/.calib_run/journal.jsonl" 's/^//'
refused "deep journal line" "$out/.calib_run/journal.jsonl line 2: $limit" job "$src" "$out"
[ ! -e "$work/q_deep" ] && pass "deep inputs wrote nothing" || fail "deep inputs wrote $work/q_deep"

# 2. A shard that is a FIFO: inspect blocked forever waiting for a writer.
d=$(copy fifo) && rm "$d/model-00002-of-00006.safetensors" && mkfifo "$d/model-00002-of-00006.safetensors"
refused "FIFO shard: inspect" "$d/model-00002-of-00006.safetensors: not a regular file" "$bin" inspect "$d"
refused "FIFO shard: the main job" "$d/model-00002-of-00006.safetensors: not a regular file" job "$d" "$work/q_fifo"
d=$(copy fifo_config) && rm "$d/config.json" && mkfifo "$d/config.json"
refused "FIFO config.json" "$d/config.json: not a regular file" "$bin" inspect "$d"
# The other inputs opened as streams: tokenizer.json, a dataset (read twice: it must be a file), a
# recipe, tokenize --jsonl (whose stdin is `-`, explicitly).
nrf="not a regular file (a FIFO, socket or device); expected a regular file"
d=$(copy fifo_tokenizer) && rm "$d/tokenizer.json" && mkfifo "$d/tokenizer.json"
refused "FIFO tokenizer.json" "$d/tokenizer.json (the tokenizer.json of --tokenizer): $nrf" \
  "$bin" tokenize --tokenizer "$d" --text hi
mkfifo "$work/fifo.jsonl"
refused "FIFO dataset" "$work/fifo.jsonl (dataset.files, or --dataset / --data): $nrf: a dataset is read twice" \
  "$bin" --recipe "$recipe" --model "$src" --dataset "$work/fifo.jsonl" --num-samples 4 --seq-len 16 --out "$work/q_fifo_data"
mkfifo "$work/fifo.yaml"
refused "FIFO recipe" "$work/fifo.yaml (the recipe): $nrf" \
  "$bin" --recipe "$work/fifo.yaml" --model "$src" --dataset "$data" --out "$work/q_fifo_recipe"
refused "FIFO tokenize --jsonl" "$work/fifo.jsonl (--jsonl): $nrf: pass - to read standard input" \
  "$bin" tokenize --tokenizer "$src" --jsonl "$work/fifo.jsonl"
got=$(printf '{"text": "hi"}\n{"text": "hi"}\n' | timeout 60 "$bin" tokenize --tokenizer "$src" --jsonl - 2>&1)
want=$("$bin" tokenize --tokenizer "$src" --text hi --json)
[ "$got" = "{\"ids\":$want}"$'\n'"{\"ids\":$want}" ] && pass "tokenize --jsonl - reads standard input" \
  || fail "tokenize --jsonl -: '$got', expected two lines of {\"ids\":$want}"
[ ! -e "$work/q_fifo_data" ] && [ ! -e "$work/q_fifo_recipe" ] && pass "FIFO inputs wrote nothing" \
  || fail "a FIFO input left an output"

# 3. Absurd config.json sizes: std::bad_alloc after 40 s naming nothing, or accepted by inspect.
for kv in "n_routed_experts 1000000000 expected 1 to 2048" "sliding_window 2147483647 expected 1 to 4096" \
          "hidden_size 1073741824 expected 1 to 65536" "num_nextn_predict_layers 2147483647 expected 0 to 16"; do
  set -- $kv
  d=$(copy "absurd_$1") && sed -i "s/\"$1\": *[0-9]*/\"$1\": $2/" "$d/config.json"
  refused "absurd $1: inspect" "$d/config.json: \"$1\" = $2 is out of range: ${*:3}" "$bin" inspect "$d"
  refused "absurd $1: the main job" "\"$1\" = $2 is out of range" job "$d" "$work/q_absurd"
done
[ ! -e "$work/q_absurd" ] && pass "absurd configs wrote nothing" || fail "absurd configs wrote $work/q_absurd"

# 4. A torn last journal record (a full disk mid-append): the resume cuts it off and says so,
# redoes no committed segment, and what it appends later reads back (a second resume goes on
# from there); the result is the uninterrupted run's.
job "$src" "$work/q_ref" >/dev/null 2>&1 || fail "uninterrupted run"
out="$work/q_torn"
DSV4_FAULT="kill@0@layers.2@solve" job "$src" "$out" >/dev/null 2>&1
journal="$out/.calib_run/journal.jsonl"
committed=$(($(wc -l <"$journal") - 1))
tail -n 1 "$journal" | head -c 60 >>"$journal"
DSV4_FAULT="kill@0@layers.3@solve" job "$src" "$out" >"$work/torn.log" 2>&1
grep -qF "$journal: dropped 60 bytes after its last complete record" "$work/torn.log" \
  && pass "torn journal: cut off, logged" || fail "torn journal: no repair logged: $(cat "$work/torn.log")"
grep -qF "resuming $out at segment $committed of" "$work/torn.log" \
  && pass "torn journal: no committed segment redone" || fail "torn journal: resumed elsewhere: $(cat "$work/torn.log")"
job "$src" "$out" >"$work/torn2.log" 2>&1 || fail "torn journal: the second resume failed: $(tail -3 "$work/torn2.log")"
at=$(sed -n 's/.*resuming .* at segment \([0-9]*\) of.*/\1/p' "$work/torn2.log")
[ "${at:-0}" -gt "$committed" ] && pass "torn journal: records appended after the repair read back (resumed at $at)" \
  || fail "torn journal: the second resume started at segment '$at', not after $committed"
same_artifact "$work/q_ref" "$out" && pass "torn journal: the result is the uninterrupted run's" \
  || fail "torn journal: the result differs"

# 5. A recipe that quantizes nothing: targets that match no module, or only norms (not Linear).
# Both alternatives of each target (release and transformers names) are rewritten.
sed -e 's/w\[123\]|/nope|/' -e 's/(gate|up|down)_proj)\$/nope)$/' \
    -e 's/(wq_a|wq_b|wkv|wo_b)|/attn_norm|/' -e 's/(q_a_proj|q_b_proj|kv_proj|o_b_proj))\$/nope)$/' \
    "$recipe" >"$work/empty.yaml"
empty_job() { "$bin" --recipe "$work/empty.yaml" --model "$src" --dataset "$data" --num-samples 4 --seq-len 16 "$@"; }
export -f empty_job
refused "recipe quantizing nothing" "$work/empty.yaml quantizes none of the 177 Linear modules" empty_job --out "$work/q_empty"
refused "recipe quantizing nothing: the way out" "or pass --allow-empty" empty_job --out "$work/q_empty"
[ ! -e "$work/q_empty" ] && pass "empty recipe wrote nothing" || fail "empty recipe wrote $work/q_empty"
expect_output "--allow-empty accepts it" 0 "quantizes none of the 177 Linear modules (--allow-empty)" \
  empty_job --out "$work/q_empty_ok" --allow-empty

# 6. Two runs on one --out: the first stalls inside layers.1 holding the lock; the second is
# refused naming its host and pid. Killed with -9, the first leaves the lock file but not its
# flock: the next run takes it over, says so, and resumes.
out="$work/q_lock"
DSV4_FAULT="stall@0@layers.1@solve" job "$src" "$out" >"$work/lock_first.log" 2>&1 &
first=$!
for _ in $(seq 1 240); do [ -s "$out/.calib_run/lock" ] && [ -e "$out/.calib_run/journal.jsonl" ] && break; sleep 0.5; done
holder_host="" holder_pid=""
[ -s "$out/.calib_run/lock" ] && read -r holder_host holder_pid <"$out/.calib_run/lock"
[ "$holder_host" = "$(uname -n)" ] && [ "$(cat "/proc/$holder_pid/comm" 2>/dev/null)" = dsv4-calib ] \
  && pass "the lock names the running job's host and pid" || fail "lock holds '$holder_host $holder_pid'"
refused "second run on a busy --out" "--out $out is in use by another dsv4-calib run (host $holder_host, pid $holder_pid)" \
  job "$src" "$out"
# End the stalled run: the lock's holder, else (no lock) whatever the job started.
if [ -n "$holder_pid" ]; then kill -9 "$holder_pid"; else pkill -9 -P "$first"; fi
wait "$first"
expect_output "a dead run's lock is taken over" 0 "taking over the run lock $out/.calib_run/lock left by a run that is gone (host $holder_host, pid $holder_pid)" \
  job "$src" "$out"
[ -e "$out/model.safetensors.index.json" ] && [ ! -e "$out/.calib_run" ] && pass "the run that took over finished, no lock left" \
  || fail "after the takeover: $(ls -a "$out")"

# 7. NaN in a source weight: the decode (layers.0's norm) or the copy (MTP's, kept BF16) names it.
# nan_into CKPT TENSOR: TENSOR's first BF16 value in CKPT set to a NaN (0x7fc0), in place.
nan_into() { bytes_into "$1" "$2" c0 7f; }
for t in layers.0.attn_norm.weight mtp.0.attn_norm.weight; do
  d=$(copy "nan_${t%%.*}")
  nan_into "$d" "$t" || continue
  refused "NaN in $t" "$t in $d holds 1 NaN or infinite value(s), the first at index 0" job "$d" "$work/q_nan_${t%%.*}"
done

# 8. inspect and verify read every value (issue 26: "inspect says OK; NaN in mtp.0.attn_norm passes
# even verify"): a NaN or infinity in a source or artifact tensor fails them, naming the tensor,
# its shard file and the count.
d=$(copy nan_inspect) && nan_into "$d" mtp.0.attn_norm.weight
shard=$(grep -o '"mtp.0.attn_norm.weight": *"[^"]*"' "$d/model.safetensors.index.json" | sed 's/.*: *"\(.*\)"/\1/')
refused "inspect: NaN in a source tensor" "mtp.0.attn_norm.weight in $shard holds 1 NaN or infinite value(s)" \
  "$bin" inspect "$d"
refused "inspect --json: NaN in a source tensor" '"ok": false' "$bin" inspect "$d" --json
expect_output "inspect --headers-only skips the value scan" 0 "values     not scanned (--headers-only)" \
  "$bin" inspect "$d" --headers-only
art=$(copy_dir "$work/q_ref" nan_artifact) && nan_into "$art" mtp.0.attn_norm.weight
shard=$(grep -o '"mtp.0.attn_norm.weight": *"[^"]*"' "$art/model.safetensors.index.json" | sed 's/.*: *"\(.*\)"/\1/')
refused "verify: NaN in an artifact tensor" "artifact mtp.0.attn_norm.weight in $shard holds 1 NaN or infinite value(s)" \
  "$bin" verify "$art" --source "$src"
refused "verify: NaN in a source tensor" "source mtp.0.attn_norm.weight in" "$bin" verify "$work/q_ref" --source "$d"

# 9. Finite weights whose forward overflows: layers.0.attn_norm all 0x7f70 (bf16 3.19e38, finite,
# so every weight scan passes it). The activations of pass A turn to NaN and infinity; the run stops
# naming the first linear whose input holds them, and the pass, before that input reaches a Hessian
# (was: exit 0 with GPTQ fallbacks, or with exact sums an internal error naming nothing).
d=$(copy overflow) && at=$(tensor_at "$d" layers.0.attn_norm.weight) && {
  set -- $at
  for _ in $(seq 1 $(($3 / 2))); do printf '\x70\x7f'; done | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
refused "finite weights that overflow the forward" "layers.0.attn.wq_a, pass A (the statistics the solves read): its input" \
  job "$d" "$work/q_overflow"
[ ! -e "$work/q_overflow/model.safetensors.index.json" ] && pass "the overflowing run wrote no artifact" \
  || fail "the overflowing run wrote an artifact"

e2e_finish
