#!/usr/bin/env bash
# cli_hostile_inputs.sh: inputs that must not hurt it (issue 26), driven through the real binary.
# Each ends at once with exit 1 and a message naming the file, key or directory; none crashes,
# hangs or allocates without bound:
#   - JSON nested 200k levels deep in every JSON input (shard header, index, config.json,
#     tokenizer.json, a JSONL record, a journal line);
#   - a shard that is a FIFO (inspect, the main job);
#   - absurd config.json sizes;
#   - a recipe that quantizes nothing (unless --allow-empty);
#   - a torn last journal record (the resume truncates it, redoes no finished segment);
#   - a second run on the same --out (refused naming the holder; a dead holder's lock is taken over).
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
copy() { rm -rf "$work/$1" && cp -r "$src" "$work/$1" && echo "$work/$1"; }
job() { "$bin" --recipe "$recipe" --model "$1" --dataset "$data" --num-samples 4 --seq-len 16 --threads 1 --out "${@:2}"; }
export bin work src data recipe
export -f job

# 5. A recipe that quantizes nothing: targets that match no module, or only norms (not Linear).
sed -e 's/w\[123\]\$/nope$/' -e 's/(wq_a|wq_b|wkv|wo_b)\$/attn_norm$/' "$recipe" >"$work/empty.yaml"
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
for _ in $(seq 1 240); do [ -s "$out/.calib_run/lock" ] && [ -e "$out/.calib_run/journal.jsonl" ] && break; sleep 0.5; done
read -r holder_host holder_pid <"$out/.calib_run/lock"
[ "$holder_host" = "$(hostname)" ] && [ "$(cat "/proc/$holder_pid/comm" 2>/dev/null)" = dsv4-calib ] \
  && pass "the lock names the running job's host and pid" || fail "lock holds '$holder_host $holder_pid'"
refused "second run on a busy --out" "--out $out is in use by another dsv4-calib run (host $holder_host, pid $holder_pid)" \
  job "$src" "$out"
kill -9 "$holder_pid"; wait
expect_output "a dead run's lock is taken over" 0 "taking over the run lock $out/.calib_run/lock left by a run that is gone (host $holder_host, pid $holder_pid)" \
  job "$src" "$out"
[ -e "$out/model.safetensors.index.json" ] && [ ! -e "$out/.calib_run" ] && pass "the run that took over finished, no lock left" \
  || fail "after the takeover: $(ls -a "$out")"

e2e_finish
