#!/usr/bin/env bash
# cli_preflight.sh: `dsv4-calib preflight` (issue 10) on the CPU: under mpirun -n 2 and -n 4 every
# rank is listed, the all-reduce sweep's result is checked and its table printed with busbw, the
# disk is timed once per host and the scratch file removed; --json holds the same; one process
# says what one rank cannot measure; --device cuda without a CUDA build (or GPU) is refused.
# Usage: DSV4_BIN=build/cpu/launch/dsv4-calib [MPIEXEC=mpirun] bash cli_preflight.sh TMPDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
mpi="${MPIEXEC:-mpirun}"
tmp="${1:?usage: $0 TMPDIR}"
rm -rf "$tmp" && mkdir -p "$tmp/out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

for np in 2 4; do
  out=$(timeout 120 "$mpi" -n "$np" --oversubscribe "$bin" preflight --max-mb 4 --iters 2 --out "$tmp/out" \
        --disk-mb 8 2>&1); rc=$?
  [ "$rc" -eq 0 ] && pass "$np ranks: exit 0" || fail "$np ranks: exit $rc: $out"
  [ "$(grep -c '^  rank [0-9]* on ' <<<"$out")" -eq "$np" ] && pass "$np ranks: every rank listed" \
    || fail "$np ranks: rank lines: $out"
  grep -qF "over $np rank(s), mpi, host buffers" <<<"$out" && grep -qF "(result of ones checked)" <<<"$out" \
    && pass "$np ranks: all-reduce checked" || fail "$np ranks: sweep header: $out"
  [ "$(grep -cE '^ +(1048576|2097152|4194304) ' <<<"$out")" -eq 3 ] && pass "$np ranks: 1, 2, 4 MiB rows" \
    || fail "$np ranks: sweep rows: $out"
  [ "$(grep -c '^disk on ' <<<"$out")" -eq 1 ] && pass "$np ranks: disk timed once per host" \
    || fail "$np ranks: disk lines: $out"
  [ -z "$(ls -A "$tmp/out")" ] && pass "$np ranks: no scratch file left" || fail "$np ranks: left $(ls -A "$tmp/out")"
done

expect_output "json" 0 '"reduce_algbw_gbs"' timeout 120 "$mpi" -n 2 --oversubscribe "$bin" preflight --max-mb 1 --iters 1 --json
expect_output "one process" 0 "one rank: an all-reduce moves nothing" "$bin" preflight --max-mb 1 --iters 1
expect_output "a missing --out is timed at its parent" 0 "disk on " "$bin" preflight --max-mb 1 --iters 1 \
  --out "$tmp/out/not/yet" --disk-mb 4
[ ! -e "$tmp/out/not" ] && pass "the missing --out was not created" || fail "preflight created $tmp/out/not"
if ! command -v nvidia-smi >/dev/null 2>&1; then
  expect_error "--device cuda without a GPU" "--device cuda" "$bin" preflight --device cuda --max-mb 1
fi
e2e_finish
