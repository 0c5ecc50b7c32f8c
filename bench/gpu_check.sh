#!/usr/bin/env bash
# gpu_check.sh: the one script for the GPU machine (H100/H200): builds the cuda preset, runs the
# whole suite with DSV4_REQUIRE_GPU=1 (a GPU test that would skip fails instead), runs the GPU
# benchmarks, then (unless GPU_CHECK_GPU_ONLY=1) the CPU-reference timings. Logs go to $OUT (the
# device tool brings them back).
#   prepare here: mkdir -p .gpu/tokenizer && cp ../shared/data/deepseek_v3_tokenizer/tokenizer*.json .gpu/tokenizer/
#                 apt-get download libpcre2-dev && dpkg -x libpcre2-dev_*.deb x &&
#                 mkdir -p .gpu/pcre2/include .gpu/pcre2/lib/pkgconfig && cp x/usr/include/pcre2.h .gpu/pcre2/include/
#                 and write .gpu/pcre2/lib/pkgconfig/libpcre2-8.pc with prefix=${pcfiledir}/../.. (Libs -lpcre2-8)
#   run there (device tool, carry [".gpu"]): bash bench/gpu_check.sh
# GPU_CHECK_STEPS picks steps (default "tests benches pipeline cpu"; the build always runs; also
# "preflight", the NCCL and disk check on every GPU, and "refcheck", bench/artifact_vs_ref.sh
# against the commit archived in .gpu/ref.tar.gz), so a 10-minute device call can take a part:
# GPU_CHECK_STEPS=tests, then GPU_CHECK_STEPS=pipeline. GPU_CHECK_TESTS=REGEX runs the matching
# tests only (ctest -R).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/dsv4_gpu_out}"
mkdir -p "$out"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  nvcc --version | tail -n 2
} > "$out/machine.txt" 2>&1
export DSV4_REQUIRE_GPU=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The GPU image (Ubuntu 24.04) has PCRE2's runtime but not libpcre2-dev, and no network: use the
# header and pkg-config file carried in .gpu/pcre2 (prepared as above), linked to the
# system's libpcre2-8.so.0.
if ! pkg-config --exists libpcre2-8 && [ -f .gpu/pcre2/include/pcre2.h ]; then
  ln -sfn /usr/lib/x86_64-linux-gnu/libpcre2-8.so.0 .gpu/pcre2/lib/libpcre2-8.so
  export PKG_CONFIG_PATH="$PWD/.gpu/pcre2/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
fi
# ../shared does not travel to the GPU machine: the real-tokenizer test (cli_tokenize) reads it
# from there, so point it at the carried copy.
if [ ! -f ../shared/data/deepseek_v3_tokenizer/tokenizer.json ] && [ -f .gpu/tokenizer/tokenizer.json ]; then
  mkdir -p ../shared/data && ln -sfn "$PWD/.gpu/tokenizer" ../shared/data/deepseek_v3_tokenizer
fi
cmake --preset cuda > "$out/configure.log" 2>&1
# GPU_CHECK_TARGET=dsv4-calib builds the binary alone (a call that only runs the main job).
cmake --build --preset cuda -j "$(nproc)" --target "${GPU_CHECK_TARGET:-all}" > "$out/build.log" 2>&1 ||
  { tail -n 50 "$out/build.log"; exit 1; }
steps=" ${GPU_CHECK_STEPS:-tests benches pipeline cpu} "
# GPU_CHECK_GPU_ONLY=1 (older spelling): everything but the CPU-reference timings.
[ "${GPU_CHECK_GPU_ONLY:-0}" = 1 ] && steps=${steps/ cpu / }
if [[ "$steps" == *" tests "* ]]; then
  # report_browser and launch_scripts install chromium and shellcheck with apt-get, which the GPU
  # machine (no network) cannot; they test no GPU code and run in CI.
  ctest --preset cuda -j 4 --output-on-failure ${GPU_CHECK_TESTS:+-R "$GPU_CHECK_TESTS"} \
    -E "^(report_browser|launch_scripts)$" 2>&1 |
    tee "$out/ctest.log" | tail -n 15
fi
# The GPU benchmarks (docs/PERFORMANCE.md quotes them).
if [[ "$steps" == *" benches "* ]]; then
  for b in decode_bandwidth hessian_throughput gptq_layer rtn_layer forward_layer; do
    build/cuda/bench/bench_$b 2>&1 | tee "$out/bench_$b.txt" | tail -n 12
  done
fi
# The whole pipeline on full-width layers.
if [[ "$steps" == *" pipeline "* ]]; then bash bench/pipeline_layer.sh; fi
# This tree's artifacts against a reference commit's on this GPU (bench/artifact_vs_ref.sh).
if [[ "$steps" == *" refcheck "* ]]; then bash bench/artifact_vs_ref.sh .gpu/ref.tar.gz 2>&1 | tee "$out/refcheck.log"; fi
# preflight on this machine: the NCCL all-reduce sweep on the GPU(s) and the disk (issue 10).
if [[ "$steps" == *" preflight "* ]]; then
  gpus=$(nvidia-smi -L | wc -l)
  mpirun -n "$gpus" --oversubscribe -x NCCL_NVLS_ENABLE=0 build/cuda/launch/dsv4-calib preflight --device cuda \
    --max-mb 1024 --out /tmp/dsv4_preflight_out --disk-mb 4096 2>&1 | tee "$out/preflight.txt" | tail -n 20
fi
# The CPU-reference timings below take minutes.
[[ "$steps" == *" cpu "* ]] || exit 0
# make-model throughput at full Flash widths (one layer, all 256 experts), into local disk.
bin=build/cuda/launch/dsv4-calib
rm -rf /tmp/dsv4_flash1 /tmp/dsv4_bench_fwd
/usr/bin/time -v "$bin" make-model --preset flash --layers 1 --experts 256 \
  --tokenizer .gpu/tokenizer --out /tmp/dsv4_flash1 --json > "$out/make_model_flash1.json" \
  2> "$out/make_model_flash1.time" || true
cat "$out/make_model_flash1.json"; grep -E "Elapsed|Maximum resident" "$out/make_model_flash1.time" || true
"$bin" inspect /tmp/dsv4_flash1 > "$out/inspect_flash1.txt" 2>&1; echo "inspect exit $?"; tail -n 1 "$out/inspect_flash1.txt"
# CPU reference forward speed on this host's cores (tiny, and the flash checkpoint made above).
mkdir -p /tmp/dsv4_bench_fwd && ln -sfn /tmp/dsv4_flash1 /tmp/dsv4_bench_fwd/flash1
bash bench/forward_cpu.sh "$bin" /tmp/dsv4_bench_fwd .gpu/tokenizer 2>&1 | tee "$out/forward_cpu.txt"
nproc >> "$out/forward_cpu.txt"
