#!/usr/bin/env bash
# run.sh: builds the fuzz preset (clang, ASan+UBSan, tests/fuzz/CMakeLists.txt) and runs each
# libFuzzer harness for a bounded time on its committed seed corpus (tests/fuzz/corpus/NAME/).
#   bash tests/fuzz/run.sh                 # every harness, 15 s each (what launch/run_tests.sh runs)
#   bash tests/fuzz/run.sh 600 config_json # one harness, 10 minutes
# New inputs the fuzzer finds go to build/fuzz/corpus/NAME (the committed corpus is only read); a
# finding (crash, sanitizer report, an exception other than dsv4::Error, a 10 s timeout, more than
# 2 GB of memory) is saved as build/fuzz/findings/NAME-crash-... and fails the script. Reproduce
# one with `build/fuzz/tests/fuzz/fuzz_NAME FILE`; once fixed, copy FILE into
# tests/fuzz/corpus/NAME/ so every later run replays it (docs/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-15}"
shift || true
all=(safetensors_header index_json config_json recipe_yaml tokenizer_json calib_jsonl journal_line)
names=("${@:-${all[@]}}")

start=$(date +%s)
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)"
echo "=== fuzz: built in $(( $(date +%s) - start )) s ==="

mkdir -p build/fuzz/findings build/fuzz/tmp
export TMPDIR="$PWD/build/fuzz/tmp"                       # the harnesses' scratch files
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
failed=()
for name in "${names[@]}"; do
  bin="build/fuzz/tests/fuzz/fuzz_$name"
  work="build/fuzz/corpus/$name"
  mkdir -p "$work"
  log="build/fuzz/$name.log"
  # -close_fd_mask=1: the parsers' info lines would flood stdout; reports go to stderr.
  if "$bin" "$work" "tests/fuzz/corpus/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -close_fd_mask=1 -print_final_stats=1 -artifact_prefix="build/fuzz/findings/$name-" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    echo "fuzz $name: OK, $runs executions in ${seconds} s ($rate/s), $cov, corpus $(ls "$work" | wc -l) new inputs"
  else
    echo "fuzz $name: FAILED (log build/fuzz/$name.log):"
    grep -E 'ERROR|SUMMARY|uncaught|Test unit written' "$log" | head -8
    failed+=("$name")
  fi
done
echo "=== fuzz: done in $(( $(date +%s) - start )) s; ${#failed[@]} of ${#names[@]} harnesses failed ==="
[ ${#failed[@]} -eq 0 ]
