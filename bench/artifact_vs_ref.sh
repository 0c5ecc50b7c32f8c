#!/usr/bin/env bash
# artifact_vs_ref.sh: are this tree's artifacts byte-identical to another commit's on THIS machine?
# For a machine whose BLAS core or GPU has no pins in tests/e2e/artifact_pins.txt (pins depend on
# the arithmetic): builds the reference commit's dsv4-calib from a `git archive` of it, records
# its pins here with its own tests/e2e/artifact_pins.sh, then checks this tree's binary against
# them (every shipped recipe at 1 and 2 ranks, kill and resume).
#   prepare: git archive --format=tar.gz -o .gpu/ref.tar.gz <commit>   (the commit must have artifact_pins.sh)
#   run (GPU machine, after bench/gpu_check.sh built this tree; carry [".gpu"]):
#     GPU_CHECK_TARGET=dsv4-calib GPU_CHECK_STEPS=refcheck bash bench/gpu_check.sh
#   or by hand: PRESET=cpu DSV4_PIN_DEVICE=cpu bash bench/artifact_vs_ref.sh .gpu/ref.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
ref_tar="${1:?usage: $0 REF.tar.gz}"
preset="${PRESET:-cuda}"
export DSV4_PIN_DEVICE="${DSV4_PIN_DEVICE:-cuda}"
work="${REF_WORK:-/tmp/dsv4_artifact_ref}"
rm -rf "$work" && mkdir -p "$work/src"
tar xzf "$ref_tar" -C "$work/src"
start=$(date +%s)
(cd "$work/src" && cmake --preset "$preset" > "$work/configure.log" 2>&1 &&
  cmake --build --preset "$preset" -j "$(nproc)" --target dsv4-calib > "$work/build.log" 2>&1) ||
  { tail -n 30 "$work/build.log"; exit 1; }
echo "reference binary built in $(( $(date +%s) - start )) s"
DSV4_BIN="$work/src/build/$preset/launch/dsv4-calib" DSV4_PIN_WRITE=1 \
  bash "$work/src/tests/e2e/artifact_pins.sh" "$work/pins_ref" | tee "$work/ref.log" | grep -v '^PIN'
grep '^PIN' "$work/ref.log" | cut -d' ' -f2- | sort -u > "$work/pins.txt"
echo "reference pins ($(wc -l < "$work/pins.txt")):"; cat "$work/pins.txt"
DSV4_BIN="build/$preset/launch/dsv4-calib" DSV4_PINS_FILE="$work/pins.txt" \
  bash tests/e2e/artifact_pins.sh "$work/pins_this"
