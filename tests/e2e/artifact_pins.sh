#!/usr/bin/env bash
# artifact_pins.sh: the artifacts of every shipped recipe on the tiny checkpoint, held to pinned
# sha256s (recorded before the layer-executor redesign, issue 22; re-recorded when issue 29 changed
# the numerics on purpose), so that every step of a behaviour-preserving refactor can show it
# preserved the bytes:
#   - every recipes/*.yaml at one rank and under `mpirun -n 2`;
#   - w4a16_mtp killed in its solve (1 rank) and in pass B (rank 1 of 2), then resumed, and the
#     same for appmana_int4_int8_gptq (the appmana-dsv4-int profile keeps the source's shards)
#     and tq3_gptq (the turboquant profile).
# An artifact's digest (artifact_digest in e2e_lib.sh) is the sha256 of `sha256sum` over its files
# in the C locale's order, without the run's records (calib_manifest.json, progress.jsonl,
# report.html and README.md: timings, commit; recipe.yaml: output path): the shards, the index,
# config.json and the tokenizer files.
#
# Pins depend on the machine's arithmetic: on the CPU the BLAS kernels OpenBLAS picks for the
# processor (a GEMM row's low bits differ between its Haswell and Zen kernels, and GPTQ breaks a
# tie the other way), on the GPU the card. So pins are recorded per "machine key" (the OpenBLAS
# core, or the GPU's name) and a machine whose key has no pins says so and skips (exit 77).
#
# Usage:
#   DSV4_BIN=build/cpu/launch/dsv4-calib bash artifact_pins.sh WORKDIR            # check (ctest)
#   DSV4_BIN=build/cuda/launch/dsv4-calib DSV4_PIN_DEVICE=cuda bash artifact_pins.sh WORKDIR
#   DSV4_PIN_WRITE=1 ... bash artifact_pins.sh WORKDIR   # print pin lines for this machine instead
#   OPENBLAS_CORETYPE=Zen ... to check or record another core's pins on this machine
#   DSV4_PINS_FILE=F ... to check against pins kept elsewhere (bench/artifact_vs_ref.sh)
#   DSV4_PIN_ONLY=REGEX ... only the cases whose recipe name matches (re-recording some recipes' pins)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
mpi="${MPIEXEC:-mpirun}"
device="${DSV4_PIN_DEVICE:-cpu}"
tmp="${1:?usage: $0 WORKDIR}"
pins="${DSV4_PINS_FILE:-$here/artifact_pins.txt}"  # bench/artifact_vs_ref.sh checks against another commit's
only="${DSV4_PIN_ONLY:-}"
rm -rf "$tmp" && mkdir -p "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# The machine key: the OpenBLAS core this binary runs on (its own report, OPENBLAS_VERBOSE=2),
# or the GPU's name.
if [ "$device" = cuda ]; then
  skip_without_gpu
  key="cuda/$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '_')"
  device_args=(--device cuda)
  mpi_args=(--device cuda --comm mpi --gpu-memory 20)  # two ranks share the one GPU
else
  core=$(OPENBLAS_VERBOSE=2 "$bin" --help 2>&1 | sed -n 's/^Core: *//p' | head -1)
  key="cpu/${core:-unknown}"
  device_args=()
  mpi_args=()
fi
echo "machine key: $key"
if [ -z "${DSV4_PIN_WRITE:-}" ] && ! grep -q "^$key " "$pins"; then
  echo "skipped: no pins recorded for $key (record them with DSV4_PIN_WRITE=1 at the pinned commit)"
  exit 77
fi

"$bin" make-model --preset tiny --out "$tmp/tiny" >/dev/null || { fail "make-model"; e2e_finish; }

# job RECIPE OUT [ARGS...] and mjob RECIPE OUT [ARGS...]: the main job at one and two ranks.
job() {
  local recipe="$1" out="$2"; shift 2
  "$bin" --recipe "$recipe" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" --out "$out" \
    --num-samples 8 --seq-len 32 "${device_args[@]}" "$@"
}
mjob() {
  local recipe="$1" out="$2"; shift 2
  "$mpi" -n 2 -x DSV4_FAULT "$bin" --recipe "$recipe" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" \
    --out "$out" --num-samples 8 --seq-len 32 "${mpi_args[@]}" "$@"
}
# check CASE DIR: the artifact in DIR against the pin of CASE (or prints the pin line).
check() {
  local case="$1" d want
  d=$(artifact_digest "$2")
  if [ -n "${DSV4_PIN_WRITE:-}" ]; then echo "PIN $key $case $d"; return; fi
  want=$(awk -v k="$key" -v c="$case" '$1 == k && $2 == c { print $3 }' "$pins")
  if [ -z "$want" ]; then fail "$case: no pin for $key"
  elif [ "$d" = "$want" ]; then pass "$case: $d"
  else fail "$case: $d, pinned $want"; fi
}

for recipe in "$here"/../../recipes/*.yaml; do
  name=$(basename "$recipe" .yaml)
  if [ -n "$only" ] && ! [[ "$name" =~ $only ]]; then continue; fi
  if job "$recipe" "$tmp/$name.np1" > "$tmp/$name.np1.log" 2>&1; then check "$name.np1" "$tmp/$name.np1"
  else fail "$name at 1 rank: $(tail -2 "$tmp/$name.np1.log")"; fi
  if mjob "$recipe" "$tmp/$name.np2" > "$tmp/$name.np2.log" 2>&1; then check "$name.np2" "$tmp/$name.np2"
  else fail "$name at 2 ranks: $(tail -2 "$tmp/$name.np2.log")"; fi
done

# Kill and resume: the resumed artifact has the uninterrupted run's pin.
# resume_case RUNNER RECIPE CASE SPEC: RUNNER (job or mjob) killed where DSV4_FAULT's SPEC says,
# run again, checked against pin CASE.
resume_case() {
  local runner="$1" recipe="$2" case="$3" spec="$4" out="$tmp/resume_$3"
  if [ -n "$only" ] && ! [[ "$(basename "$recipe" .yaml)" =~ $only ]]; then return; fi
  DSV4_FAULT="kill@$spec" "$runner" "$recipe" "$out" > /dev/null 2>&1
  if "$runner" "$recipe" "$out" > "$out.log" 2>&1; then check "$case" "$out"
  else fail "$case resumed after a kill at $spec: $(tail -2 "$out.log")"; fi
}
mtp="$here/../../recipes/w4a16_mtp.yaml"
resume_case job "$mtp" w4a16_mtp.np1 "0@layers.1@solve"
resume_case mjob "$mtp" w4a16_mtp.np2 "1@layers.2@pass B"
# The appmana-dsv4-int profile writes its source's shards (not the writer's own): the same bytes
# after a kill, at one rank and at two.
am="$here/../../recipes/appmana_int4_int8_gptq.yaml"
resume_case job "$am" appmana_int4_int8_gptq.np1 "0@layers.2@solve"
resume_case mjob "$am" appmana_int4_int8_gptq.np2 "1@layers.1@pass B"
# The turboquant profile's GPTQ twin (codes chosen on the rotated weights): the same bytes after a kill.
tq="$here/../../recipes/tq3_gptq.yaml"
resume_case job "$tq" tq3_gptq.np1 "0@layers.1@solve"
resume_case mjob "$tq" tq3_gptq.np2 "1@layers.2@pass B"
e2e_finish
