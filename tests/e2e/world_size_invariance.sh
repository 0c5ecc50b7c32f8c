#!/usr/bin/env bash
# world_size_invariance.sh: the same bits at any number of ranks (issue 29), with the exact
# Hessian sums (calibration.hessian_sums: exact, the default), on the CPU path or, with
# DSV4_DEVICE=cuda, on the GPU (every rank on the one GPU, --comm mpi --gpu-memory 3; skips
# without a GPU):
#   - every recipes/*.yaml on the tiny checkpoint at 1, 2, 3 and 4 ranks gives one artifact;
#   - w4a16_mtp killed at 2 ranks (rank 1, layers.2, pass B) and resumed with 1 or with 3 ranks
#     gives the uninterrupted artifact.
# Artifacts are compared file by file except the run's records (e2e_lib.sh run_record: the manifest,
# progress.jsonl, report.html, README.md: timings, world size) and recipe.yaml (output path).
# Run by ctest (world_size_invariance, world_size_invariance_cuda) as:
#   DSV4_BIN=... MPIEXEC=mpirun [DSV4_DEVICE=cuda] bash this.sh WORKDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
mpi="${MPIEXEC:-mpirun}"
tmp="${1:?usage: $0 WORKDIR}"
rm -rf "$tmp" && mkdir -p "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

device="${DSV4_DEVICE:-cpu}"
[ "$device" = cuda ] && skip_without_gpu

"$bin" make-model --preset tiny --out "$tmp/tiny" >/dev/null || { fail "make-model"; e2e_finish; }

# job RANKS RECIPE OUT: the main job at RANKS ranks (DSV4_FAULT passed through for the kill).
# 10 samples: on the GPU, blocks of 4 (layer_executor.h), so the ranks' shares differ in size.
job() {
  local n="$1" recipe="$2" out="$3" dev=()
  [ "$device" = cuda ] && dev=(--device cuda)
  [ "$device" = cuda ] && [ "$n" -gt 1 ] && dev+=(--comm mpi --gpu-memory 3)
  "$mpi" -n "$n" -x DSV4_FAULT "$bin" --recipe "$recipe" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" \
    --out "$out" --num-samples 10 --seq-len 32 "${dev[@]}"
}
# same NAME A B: the artifacts hold the same files with the same bytes (e2e_lib.sh).
same() {
  local why
  if why=$(same_artifact "$2" "$3"); then pass "$1"; else fail "$1: ${why:-a file is missing or left over}"; fi
}

export DSV4_FAULT=""
for recipe in "$here"/../../recipes/*.yaml; do
  name=$(basename "$recipe" .yaml)
  for n in 1 2 3 4; do
    job "$n" "$recipe" "$tmp/$name.np$n" > "$tmp/$name.np$n.log" 2>&1 || fail "$name at $n ranks: $(tail -2 "$tmp/$name.np$n.log")"
  done
  for n in 2 3 4; do same "$name: $n ranks = 1 rank" "$tmp/$name.np1" "$tmp/$name.np$n"; done
done

mtp="$here/../../recipes/w4a16_mtp.yaml"
for n in 1 3; do
  out="$tmp/resume.np2to$n"
  DSV4_FAULT="kill@1@layers.2@pass B" job 2 "$mtp" "$out" > "$out.kill.log" 2>&1
  [ -f "$out/model.safetensors.index.json" ] && fail "the killed run finished: $out"
  job "$n" "$mtp" "$out" > "$out.log" 2>&1 || fail "resume at $n ranks: $(tail -2 "$out.log")"
  grep -q "resuming" "$out.log" || fail "resume at $n ranks did not resume: $(head -3 "$out.log")"
  same "killed at 2 ranks, resumed at $n = 1 rank uninterrupted" "$tmp/w4a16_mtp.np1" "$out"
done
e2e_finish
