#!/usr/bin/env bash
# gptaq_e2e.sh: GPTAQ (calibration.gptq.asymmetric) end to end with the CLI on the tiny checkpoint:
# w4a16_mtp with the key on gives the same artifact bytes at one rank, under `mpirun -n 2`, and
# after a kill and resume at each (ΔX·Xᵀ is summed exactly, as H is, and a GPTAQ run takes no
# activation snapshot: a resume replays both streams from the embeddings); its bytes differ from
# classic GPTQ's (the term is live); `--device cuda` is refused naming the key.
#
#   DSV4_BIN=build/cpu/launch/dsv4-calib MPIEXEC=mpirun bash gptaq_e2e.sh WORKDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
mpi="${MPIEXEC:-mpirun}"
tmp="${1:?usage: $0 WORKDIR}"
rm -rf "$tmp" && mkdir -p "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

"$bin" make-model --preset tiny --out "$tmp/tiny" >/dev/null || { fail "make-model"; e2e_finish; }
classic="$here/../../recipes/w4a16_mtp.yaml"
recipe="$tmp/w4a16_mtp_gptaq.yaml"
# The shipped recipe with calibration.gptq.asymmetric added under its calibration section.
sed 's/^calibration:$/calibration:\n  gptq:\n    asymmetric: true/' "$classic" > "$recipe"
grep -q "asymmetric: true" "$recipe" || { fail "recipe variant: no calibration section in $classic"; e2e_finish; }

job() {
  local r="$1" out="$2"; shift 2
  "$bin" --recipe "$r" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" --out "$out" --num-samples 8 --seq-len 32 "$@"
}
mjob() {
  local r="$1" out="$2"; shift 2
  "$mpi" -n 2 -x DSV4_FAULT "$bin" --recipe "$r" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" --out "$out" \
    --num-samples 8 --seq-len 32 "$@"
}
same() {  # same NAME DIR: DIR's digest equals the one-rank run's
  local d; d=$(artifact_digest "$2")
  if [ "$d" = "$want" ]; then pass "$1: $d"; else fail "$1: $d, one rank gave $want"; fi
}

job "$recipe" "$tmp/np1" > "$tmp/np1.log" 2>&1 || { fail "GPTAQ at 1 rank: $(tail -2 "$tmp/np1.log")"; e2e_finish; }
want=$(artifact_digest "$tmp/np1")
job "$classic" "$tmp/classic" > "$tmp/classic.log" 2>&1 || fail "classic at 1 rank: $(tail -2 "$tmp/classic.log")"
if [ "$(artifact_digest "$tmp/classic")" != "$want" ]; then pass "GPTAQ's artifact differs from classic GPTQ's"
else fail "GPTAQ's artifact equals classic GPTQ's: the asymmetric term is not live"; fi
if mjob "$recipe" "$tmp/np2" > "$tmp/np2.log" 2>&1; then same "GPTAQ at 2 ranks" "$tmp/np2"
else fail "GPTAQ at 2 ranks: $(tail -2 "$tmp/np2.log")"; fi

# Kill and resume (DSV4_FAULT, as artifact_pins.sh's resume_case): the uninterrupted run's bytes.
DSV4_FAULT="kill@0@layers.2@solve" job "$recipe" "$tmp/r1" > /dev/null 2>&1
if job "$recipe" "$tmp/r1" > "$tmp/r1.log" 2>&1; then same "GPTAQ resumed after a kill in layers.2's solve" "$tmp/r1"
else fail "GPTAQ resumed at 1 rank: $(tail -2 "$tmp/r1.log")"; fi
grep -q "replayed layers.0 from its committed weights" "$tmp/r1.log" && pass "the resume replayed the committed layers" \
  || fail "the resume did not replay layers.0: $(grep -i -m2 'resum\|replay' "$tmp/r1.log")"
DSV4_FAULT="kill@1@layers.2@pass B" mjob "$recipe" "$tmp/r2" > /dev/null 2>&1
if mjob "$recipe" "$tmp/r2" > "$tmp/r2.log" 2>&1; then same "GPTAQ resumed at 2 ranks after a kill in pass B" "$tmp/r2"
else fail "GPTAQ resumed at 2 ranks: $(tail -2 "$tmp/r2.log")"; fi

expect_error "--device cuda refused naming the key" "--device cuda: calibration.gptq.asymmetric" \
  job "$recipe" "$tmp/cuda" --device cuda
e2e_finish
