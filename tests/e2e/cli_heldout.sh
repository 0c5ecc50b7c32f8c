#!/usr/bin/env bash
# cli_heldout.sh: held-out validation (calibration.heldout, issue 24) through the real binary on
# the tiny checkpoint: w4a16_mtp with a held-out share runs, reports each module's choice (log
# line, calib_manifest.json, the artifact's recipe.yaml) and gives the same artifact and the same
# choices at 1 and 2 ranks and after a kill at 2 ranks resumed at 1; --device cuda is refused
# naming the section; `plan` warns about thin data. Seconds on the 2-core build machine.
# Run by ctest (cli_heldout) as: DSV4_BIN=... MPIEXEC=mpirun bash this.sh WORKDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
mpi="${MPIEXEC:-mpirun}"
tmp="${1:?usage: $0 WORKDIR}"
rm -rf "$tmp" && mkdir -p "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

"$bin" make-model --preset tiny --out "$tmp/tiny" >/dev/null || { fail "make-model"; e2e_finish; }
recipe="$tmp/heldout.yaml"
# w4a16_mtp with 3 of its 10 samples held out (fraction 0.3: samples 3, 6 and 9).
sed 's/^  propagate_error: true$/  propagate_error: true\n  heldout: {fraction: 0.3, dampings: [0.01, 1.0]}/' \
  "$here/../../recipes/w4a16_mtp.yaml" > "$recipe"
grep -q "heldout:" "$recipe" || { fail "recipe edit"; e2e_finish; }

job() {  # job RANKS OUT
  "$mpi" -n "$1" -x DSV4_FAULT "$bin" --recipe "$recipe" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" \
    --out "$2" --num-samples 10 --seq-len 32
}
# choices OUT: every module's held-out choice in manifest order ("chosen" and its damping; the
# manifest is indented JSON, one key a line).
choices() { grep -oE '"(chosen|dampening_frac)": *("[a-z]+"|[0-9.e-]+)' "$1/calib_manifest.json"; }

export DSV4_FAULT=""
for n in 1 2; do
  job "$n" "$tmp/np$n" > "$tmp/np$n.log" 2>&1 || fail "held-out run at $n ranks: $(tail -2 "$tmp/np$n.log")"
done
if grep -q "3 of 10 samples held out" "$tmp/np1.log" && grep -q "heldout rtn [0-9]*/24" "$tmp/np1.log"; then
  pass "log: the split and each layer's choices"
else fail "log lacks the held-out lines: $(grep -m3 'held\|layers.0 ' "$tmp/np1.log")"; fi
n_choices=$(choices "$tmp/np1" | grep -c chosen)
n_errors=$(grep -A1 '"errors": {' "$tmp/np1/calib_manifest.json" | grep -c '"0.01": [0-9]')
if [ "$n_choices" -eq 96 ] && [ "$n_errors" -eq 96 ]; then
  pass "manifest: a choice and its held-out errors for each of the 96 GPTQ modules"
else fail "manifest: $n_choices choices, $n_errors error lists"; fi
grep -q "heldout:" "$tmp/np1/recipe.yaml" && pass "recipe.yaml keeps calibration.heldout" || fail "recipe.yaml lacks heldout"
for n in 2; do
  why=$(same_artifact "$tmp/np1" "$tmp/np$n") && pass "$n ranks = 1 rank (artifact)" || fail "$n ranks: $why"
  if [ "$(choices "$tmp/np1")" = "$(choices "$tmp/np$n")" ]; then pass "$n ranks = 1 rank (choices)"
  else fail "$n ranks: other choices"; fi
done

out="$tmp/resume"
DSV4_FAULT="kill@1@layers.2@pass B" job 2 "$out" > "$out.kill.log" 2>&1
[ -f "$out/model.safetensors.index.json" ] && fail "the killed run finished"
export DSV4_FAULT=""
if job 1 "$out" > "$out.log" 2>&1 && grep -q resuming "$out.log" && same_artifact "$tmp/np1" "$out" >/dev/null &&
   [ "$(choices "$tmp/np1")" = "$(choices "$out")" ]; then
  pass "killed at 2 ranks, resumed at 1 = uninterrupted (artifact and choices)"
else fail "resume: $(tail -2 "$out.log")"; fi

expect_error "--device cuda refused, naming the section" "calibration.heldout" \
  "$bin" --recipe "$recipe" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" --out "$tmp/gpu" --device cuda
expect_error "too few samples to hold any out" "holds out 0" \
  "$bin" --recipe "$recipe" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" --out "$tmp/few" --num-samples 3
expect_output "plan warns on thin data" 0 "thin calibration data: 4 samples x 64 tokens" \
  "$bin" plan --recipe "$here/../../recipes/w4a16_mtp.yaml" --preset tiny --num-samples 4 --seq-len 64
expect_output "plan --json lists it under warnings" 0 '"thin calibration data: 4 samples x 64 tokens' \
  "$bin" plan --recipe "$here/../../recipes/w4a16_mtp.yaml" --preset tiny --num-samples 4 --seq-len 64 --json
out=$("$bin" plan --recipe "$here/../../recipes/w4a16_mtp.yaml" --preset tiny --num-samples 16 --seq-len 64 2>&1)
grep -q "thin calibration data" <<<"$out" && fail "plan warned at 16 x 64" || pass "no warning at 16 x 64"
e2e_finish
