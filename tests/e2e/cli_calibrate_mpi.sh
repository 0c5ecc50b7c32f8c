#!/usr/bin/env bash
# cli_calibrate_mpi.sh: the main job under mpirun on the tiny checkpoint (issue 7).
#   - -n 2 and -n 4: the artifact passes verify, a rerun is byte-identical (shards, index,
#     config), the manifest records the world size and each rank's Hessian memory, with owned
#     Hessians below the pass-A partials (owners-only storage);
#   - the differences against -n 1 are printed (docs/PERFORMANCE.md has the measured counts);
#   - a failing rank, a stuck rank (collective watchdog) and a killed rank each end the whole job
#     non-zero within 60 s with a message naming the rank, and leave no finished artifact.
# Usage: DSV4_BIN=build/cpu/launch/dsv4-calib [MPIEXEC=mpirun] bash cli_calibrate_mpi.sh TMPDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
mpi="${MPIEXEC:-mpirun}"
tmp="${1:?usage: $0 TMPDIR}"
recipe="$here/../../recipes/w4a16_mtp.yaml"
rm -rf "$tmp" && mkdir -p "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

"$bin" make-model --preset tiny --out "$tmp/tiny" >/dev/null || { fail "make-model"; e2e_finish; }

# run NP OUT [RECIPE [ARGS...]]: the main job on NP ranks, 8 samples of 32 tokens.
run() {
  local np="$1" out="$2" r="${3:-$recipe}"; shift; shift; shift || true
  "$mpi" -n "$np" --oversubscribe "$bin" --recipe "$r" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" \
    --out "$out" --num-samples 8 --seq-len 32 --threads 1 "$@"
}
# same_artifact A B: the tensor files, index and config are byte-identical.
same_artifact() {
  local f
  for f in config.json model.safetensors.index.json $(cd "$1" && ls ./*.safetensors); do
    cmp -s "$1/$f" "$2/$f" || { echo "differs: $f"; return 1; }
  done
}
# The Nth value of a numeric manifest key.
manifest_values() { grep -o "\"$2\": [0-9]*" "$1/calib_manifest.json" | sed 's/.*: //'; }

expect_output "1 rank" 0 "wrote $tmp/n1" run 1 "$tmp/n1"
for np in 2 4; do
  expect_output "$np ranks: calibrate" 0 "split over $np ranks" run "$np" "$tmp/n$np"
  expect_output "$np ranks: verify" 0 "verify: OK" "$bin" verify "$tmp/n$np" --source "$tmp/tiny"
  expect_output "$np ranks: rerun" 0 "wrote $tmp/n${np}b" run "$np" "$tmp/n${np}b"
  if same_artifact "$tmp/n$np" "$tmp/n${np}b"; then pass "$np ranks: rerun byte-identical"; else fail "$np ranks: rerun differs"; fi
  if grep -q "\"world_size\": $np" "$tmp/n$np/calib_manifest.json"; then pass "$np ranks: manifest world_size"
  else fail "$np ranks: manifest lacks world_size $np"; fi
  mapfile -t partial < <(manifest_values "$tmp/n$np" hessian_bytes_partial_peak)
  mapfile -t owned < <(manifest_values "$tmp/n$np" hessian_bytes_owned_peak)
  ok=1
  [ "${#partial[@]}" -eq "$np" ] && [ "${#owned[@]}" -eq "$np" ] || ok=0
  for ((i = 0; i < ${#owned[@]}; ++i)); do
    [ "${owned[$i]}" -gt 0 ] && [ "${owned[$i]}" -lt "${partial[$i]}" ] || ok=0
  done
  if [ "$ok" -eq 1 ]; then pass "$np ranks: owned Hessians < partials on every rank (${owned[*]} < ${partial[*]})"
  else fail "$np ranks: Hessian memory per rank: owned ${owned[*]}, partial ${partial[*]}"; fi
  # Across world sizes only the Hessian summation order differs: report how many bytes differ.
  shard=$(cd "$tmp/n1" && ls ./*.safetensors | head -1)
  echo "info $np ranks vs 1: $(cmp -l "$tmp/n1/$shard" "$tmp/n$np/$shard" | wc -l) of $(stat -c %s "$tmp/n1/$shard") shard bytes differ"
done

# --device cuda on a machine without a GPU (or a build without CUDA): refused on every rank before
# any collective (the GPU machine's own case is cli_calibrate_mpi_cuda).
if ! nvidia-smi -L > /dev/null 2>&1; then
  expect_error "2 ranks, --device cuda without a GPU" "--device cuda: " run 2 "$tmp/no_gpu" "$recipe" --device cuda
fi

# Failures end the whole job, quickly, naming the rank.
fast_recipe="$tmp/fast_timeout.yaml"
{ cat "$recipe"; printf 'run:\n  collective_timeout_s: 3\n'; } > "$fast_recipe"
# fault NAME PATTERN DSV4_FAULT [RECIPE]
fault() {
  local name="$1" pattern="$2" spec="$3" r="${4:-$recipe}" out rc start=$SECONDS
  out=$(DSV4_FAULT="$spec" timeout 120 "$mpi" -n 2 --oversubscribe -x DSV4_FAULT "$bin" --recipe "$r" --model "$tmp/tiny" \
        --dataset "$tmp/tiny/calib.jsonl" --out "$tmp/fault_$name" --num-samples 8 --seq-len 32 --threads 1 2>&1); rc=$?
  local took=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then fail "$name: exit 0"; return; fi
  if [ "$took" -gt 60 ]; then fail "$name: took $took s (limit 60)"; return; fi
  if ! grep -qF -- "$pattern" <<<"$out"; then fail "$name: output lacks '$pattern'; output: $out"; return; fi
  if [ -e "$tmp/fault_$name/model.safetensors.index.json" ]; then fail "$name: left an index"; return; fi
  pass "$name (exit $rc after $took s)"
}
fault "error on rank 1" "rank 1/2" "throw@1@layers.1@solve"
fault "stuck rank 1" "did not complete within 3 s" "stall@1@layers.1@pass A" "$fast_recipe"
fault "killed rank 1" "process rank 1" "kill@1@layers.1@pass A"

# A slow rank at startup: rank 0 must not create the run state while rank 1 still checks --out
# (rank 1 then found it and refused the directory as "not empty": a race seen in CI runs).
DSV4_FAULT="delay@1@run@preflight" "$mpi" -n 2 --oversubscribe -x DSV4_FAULT "$bin" --recipe "$recipe" \
  --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" --out "$tmp/slow_rank1" --num-samples 8 --seq-len 32 \
  --threads 1 > "$tmp/slow_rank1.log" 2>&1
if [ -e "$tmp/slow_rank1/model.safetensors.index.json" ] && same_artifact "$tmp/n2" "$tmp/slow_rank1"; then
  pass "rank 1 slow at its preflight: the run waits for it"
else fail "rank 1 slow at its preflight: $(grep -F ' ## ' "$tmp/slow_rank1.log" | head -2)"; fi

e2e_finish
