#!/usr/bin/env bash
# cli_resume_cuda.sh: resume of a GPU run (`--device cuda`, issue 9) on the tiny checkpoint with a
# snapshot every 2 layers: a SIGKILL entering the solve, pass B, the staging and the next layer's
# pass A, then a resume (which replays committed layers on the GPU from their staged weights):
# byte-identical to the uninterrupted GPU run; so is a run over the NCCL communicator
# (--comm nccl). Without a GPU it says so and passes, unless DSV4_REQUIRE_GPU=1 (the GPU
# machine), where that is a failure.
# Usage: DSV4_BIN=build/cuda/launch/dsv4-calib bash cli_resume_cuda.sh TMPDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
tmp="${1:?usage: $0 TMPDIR}"
rm -rf "$tmp" && mkdir -p "$tmp"
skip_without_gpu

"$bin" make-model --preset tiny --out "$tmp/tiny" >/dev/null || { fail "make-model"; e2e_finish; }
recipe="$tmp/resume.yaml"
cp "$here/../../recipes/w4a16_mtp.yaml" "$recipe"
printf 'run:\n  checkpoint_every: 2\n' >> "$recipe"

job() {
  local out="$1"; shift
  "$bin" --recipe "$recipe" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" --out "$out" \
    --num-samples 8 --seq-len 32 --threads 2 --device cuda "$@"
}

job "$tmp/ref" > "$tmp/ref.log" 2>&1 && pass "uninterrupted GPU run" || fail "uninterrupted GPU run: $(tail -2 "$tmp/ref.log")"
job "$tmp/ref_again" >/dev/null 2>&1
same_artifact "$tmp/ref" "$tmp/ref_again" && pass "two GPU runs identical" || fail "two GPU runs differ"
# The NCCL communicator at one rank (Hessians reduced on the GPU): the same artifact.
job "$tmp/nccl" --comm nccl > "$tmp/nccl.log" 2>&1 || fail "--comm nccl run: $(tail -2 "$tmp/nccl.log")"
same_artifact "$tmp/ref" "$tmp/nccl" && pass "--comm nccl run identical" || fail "--comm nccl run differs"
for spec in "layers.1@solve" "layers.1@pass B" "segment 2@stage" "layers.2@pass A" "layers.3@pass A"; do
  kill_and_resume "$tmp/ref" "$spec"
done
e2e_finish
