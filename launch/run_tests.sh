#!/usr/bin/env bash
# run_tests.sh: README command (2) and what CI runs (.ci/run). On a fresh Debian 12 machine:
# installs the dependencies, builds the CPU preset and runs every test, then (when nvcc is
# present) builds the CUDA preset (sm_90) and runs its suite, where GPU tests skip without a GPU.
#   bash launch/run_tests.sh            # both presets
#   DSV4_PRESETS=cpu bash launch/run_tests.sh
# Then it runs every fuzz harness for DSV4_FUZZ_SECONDS (default 15; 0 skips them) under
# ASan+UBSan (tests/fuzz/run.sh, the fuzz preset), and the parser/common/data unit tests
# (test_common, test_data) under ASan+UBSan with leak checking (the asan preset; DSV4_ASAN=0 skips
# them; the whole unit suite under it is too slow for CI: docs/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install_deps.sh

presets="${DSV4_PRESETS:-cpu cuda}"
jobs="$(nproc)"
# Open MPI refuses to run as root without these (containers, CI).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

for preset in $presets; do
  if [ "$preset" = cuda ] && ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    echo "run_tests: no nvcc on this machine; skipping the cuda preset"
    continue
  fi
  echo "=== preset $preset: configure, build, test ==="
  start=$(date +%s)
  cmake --preset "$preset"
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
  echo "=== preset $preset done in $(( $(date +%s) - start )) s ==="
done

fuzz_seconds="${DSV4_FUZZ_SECONDS:-15}"
if [ "$fuzz_seconds" != 0 ]; then
  echo "=== fuzz harnesses, ${fuzz_seconds} s each ==="
  bash tests/fuzz/run.sh "$fuzz_seconds"
fi

if [ "${DSV4_ASAN:-1}" != 0 ]; then
  echo "=== ASan+UBSan: test_common, test_data ==="
  start=$(date +%s)
  cmake --preset asan
  cmake --build --preset asan -j "$jobs" --target test_common test_data
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/tests/test_common --gtest_brief=1
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/tests/test_data --gtest_brief=1
  echo "=== ASan+UBSan done in $(( $(date +%s) - start )) s ==="
fi
