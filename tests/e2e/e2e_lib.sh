# e2e_lib.sh: the check helpers every tests/e2e script sources (not run on its own).
#
#   source "$(dirname "$0")/e2e_lib.sh"
#   expect_output "name" 0 "fixed text" "$bin" inspect "$dir"
#   expect_error "name" "fixed text" "$bin" --bad-flag
#   e2e_finish    # prints the tally; exit status 1 when any check failed
#
# Patterns are fixed strings (grep -F), so a '.' in a key path matches only a '.'.
failures=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }

# expect_output NAME EXPECTED_RC PATTERN CMD...: runs CMD, checks its exit code and that its
# combined output contains PATTERN.
expect_output() {
  local name="$1" want_rc="$2" pattern="$3"; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want_rc" ]; then fail "$name: exit $rc, expected $want_rc; output: $out"; return; fi
  if ! grep -qF -- "$pattern" <<<"$out"; then fail "$name: output lacks '$pattern'; output: $out"; return; fi
  pass "$name"
}

# expect_error NAME PATTERN CMD...: CMD exits non-zero and its combined output contains PATTERN.
expect_error() {
  local name="$1" pattern="$2"; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq 0 ]; then fail "$name: exit 0, expected an error; output: $out"; return; fi
  if ! grep -qF -- "$pattern" <<<"$out"; then fail "$name: output lacks '$pattern'; output: $out"; return; fi
  pass "$name"
}

# run_record FILE: FILE is one of the run's records beside the artifact, which differ between runs
# of the same bytes: the manifest, progress.jsonl, report.html and the model card README.md
# (timings, hosts, resume history) and recipe.yaml (output dir). Byte comparisons skip them.
run_record() {
  case "$1" in calib_manifest.json|recipe.yaml|progress.jsonl|report.html|README.md) return 0 ;; esac
  return 1
}

# progress_resumed OUT: OUT's progress.jsonl holds whole JSON lines only, two run_start events (the
# killed process's and the resume's, which says it resumed) and ends with run_end.
progress_resumed() {
  local p="$1/progress.jsonl"
  [ "$(grep -c '"event":"run_start"' "$p")" -eq 2 ] && grep -q '"resumed":true' "$p" \
    && tail -1 "$p" | grep -q '^{"event":"run_end"' && ! grep -qv '^{.*}$' "$p"
}

# artifact_digest DIR: an artifact's bytes as one sha256 (artifact_pins.sh's pins): sha256sum over
# its files in the C locale's order, without the run's records (run_record). LC_ALL=C: ls sorts by
# the locale, and en_US puts tokenizer_config.json before tokenizer.json, so the same files gave
# another digest on the GPU machine (its CUDA pins before session 18 were so).
artifact_digest() {
  local f
  (cd "$1" && for f in $(LC_ALL=C ls); do run_record "$f" || sha256sum "$f"; done) | sha256sum | cut -c1-64
}

# same_artifact A B: two artifact directories hold the same files (at least 3) with the same
# bytes, except the run's records (run_record), and B has no run state left.
same_artifact() {
  local f n=0
  for f in $(cd "$1" && ls); do
    run_record "$f" && continue
    cmp -s "$1/$f" "$2/$f" || { echo "differs: $f"; return 1; }
    n=$((n + 1))
  done
  [ "$n" -ge 3 ] && [ "$(ls "$1" | wc -l)" -eq "$(ls "$2" | wc -l)" ] && [ ! -e "$2/.calib_run" ]
}

# kill_and_resume REF SPEC: the caller's `job OUT` run (OUT under the caller's $tmp) killed on rank 0 where DSV4_FAULT names
# SPEC must stop with its run state left; `job OUT` again must finish with REF's bytes.
kill_and_resume() {
  local ref="$1" spec="$2" out rc
  out="$tmp/k_${spec//[ @.]/_}"
  DSV4_FAULT="kill@0@$spec" job "$out" >/dev/null 2>&1
  rc=$?
  [ "$rc" -ne 0 ] && [ -d "$out/.calib_run" ] || { fail "kill at $spec did not stop the run (rc $rc)"; return; }
  if job "$out" > "$out.log" 2>&1 && same_artifact "$ref" "$out" && progress_resumed "$out"; then
    pass "kill at $spec, resume: identical, progress.jsonl continued"
  else fail "kill at $spec, resume: $(tail -2 "$out.log")"; fi
}

# skip_without_gpu: a GPU test without a GPU says so and passes (exit 0), unless DSV4_REQUIRE_GPU=1
# (the GPU machine), where that is a failure.
skip_without_gpu() {
  nvidia-smi -L > /dev/null 2>&1 && return 0
  [ "${DSV4_REQUIRE_GPU:-0}" = 1 ] && { fail "no GPU (DSV4_REQUIRE_GPU=1)"; e2e_finish; }
  echo "skipped: no GPU"
  exit 0
}

# tensor_at CKPT TENSOR: "FILE OFFSET BYTES" of TENSOR's data in CKPT (OFFSET from the file's start),
# read from the index and the shard's header, for the scripts that damage a tensor in place.
tensor_at() {
  local ckpt="$1" name="$2" shard f len range
  shard=$(grep -o "\"$name\": *\"[^\"]*\"" "$ckpt/model.safetensors.index.json" | sed 's/.*: *"\(.*\)"/\1/')
  f="$ckpt/$shard"
  len=$(od -An -tu8 -N8 "$f" | tr -d ' ')
  range=$(head -c $((8 + len)) "$f" | tail -c "$len" | grep -o "\"$name\":{[^}]*}" | sed 's/.*"data_offsets":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/')
  [ -n "$range" ] || { fail "tensor_at: no $name in $f"; return 1; }
  set -- $range
  echo "$f $((8 + len + $1)) $(($2 - $1))"
}
# bytes_into CKPT TENSOR HEX...: TENSOR's first bytes in CKPT overwritten with HEX (e.g. c0 7f: a bf16 NaN).
bytes_into() {
  local at b s=""
  at=$(tensor_at "$1" "$2") || return 1
  for b in "${@:3}"; do s+="\\x$b"; done
  set -- $at
  printf "$s" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

e2e_finish() {
  if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
  echo "all checks passed"
}
