#!/usr/bin/env bash
# peer_side_by_side.sh: ours against llm-compressor on the same GPU in one call (issue 30). Not run
# in CI. Steps, each under a time guard so that the whole stays under PEER_BUDGET_S (default 450 s):
#   wheels  llm-compressor and what the GPU image lacks, from PEER_WHEELS (default .gpu/wheels),
#           installed with --no-index into PEER_SITE (on PYTHONPATH; the image's torch and
#           transformers stay);
#   build   the cuda preset's bench_gptq_layer, bench_hessian_throughput and dsv4-calib (as
#           bench/gpu_check.sh builds);
#   gptq    (a) bench_gptq_layer 64 with BENCH_DUMP, then bench/peer_gptq_layer.py on the same
#           matrices and Hessians: times, code agreement, errors;
#   hessian (b) bench_hessian_throughput, then bench/peer_hessian.py on the same activations;
#   e2e     (c) when at least PEER_E2E_MIN_S seconds are left: dsv4-calib make-model
#           PEER_E2E_MODEL (default "--preset tiny"), then our main job and llm-compressor's oneshot
#           (bench/peer_oneshot.py; its BF16 load, and float32 if BF16 fails) on that checkpoint,
#           PEER_E2E_SAMPLES x PEER_E2E_SEQ (default 96 x 512) tokens, wall time of each.
# $OUT/summary.txt: the lines the docs quote; $OUT/logs.tgz: every step's log and steps.txt (exit
# status and seconds of each step).
#   prepare here (wheels for CPython 3.12, the GPU image's; see docs/PERFORMANCE.md for the list):
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/wheels NAME==VERSION ...
#     and .gpu/pcre2, .gpu/tokenizer as bench/gpu_check.sh says
#   run there (device tool, carry [".gpu"]): bash bench/peer_side_by_side.sh
# CPU check of the Python side (no GPU, no build; tiny sizes): PEER_CPU_TEST=1 PEER_BIN=DIR, DIR
# holding a CPU-built dsv4-calib (or empty to skip the e2e step).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/dsv4_peer_out}"
# The logs stay in $logs and travel as one archive: the device tool brings back 8 files at most.
logs=/tmp/dsv4_peer_logs
rm -rf "$logs" && mkdir -p "$out" "$logs"
trap 'tar czf "$out/logs.tgz" -C "$logs" . 2>/dev/null || true' EXIT
budget="${PEER_BUDGET_S:-450}"
cpu_test="${PEER_CPU_TEST:-0}"
summary="$out/summary.txt"
: > "$summary"
export PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

left() { echo $((budget - SECONDS)); }
# guarded CAP NAME CMD...: CMD under min(CAP, seconds left - 5), output to $logs/NAME.log; the
# return status is CMD's (124 when the guard stopped it).
guarded() {
  local cap=$1 name=$2
  shift 2
  local t=$(($(left) - 5))
  [ "$cap" -lt "$t" ] && t=$cap
  if [ "$t" -le 0 ]; then echo "$name: skipped, no time left" | tee -a "$summary"; return 124; fi
  local t0=$SECONDS rc=0
  timeout "$t" "$@" > "$logs/$name.log" 2>&1 || rc=$?
  echo "$name: exit $rc after $((SECONDS - t0)) s (guard $t s)" >> "$logs/steps.txt"
  [ "$rc" = 124 ] && echo "$name: stopped by its $t s guard" | tee -a "$summary"
  return "$rc"
}
# quote NAME REGEX: the log's lines that the summary keeps.
quote() { grep -E "$2" "$logs/$1.log" | cut -c1-300 >> "$summary" || true; }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no GPU"
  nvcc --version 2>/dev/null | tail -n 2
  python3 --version
} >> "$summary" 2>&1

# wheels: --no-deps, since the image's own packages (fsspec, accelerate...) satisfy or shadow the rest.
site="${PEER_SITE:-/tmp/dsv4_peer_site}"
wheels="${PEER_WHEELS:-.gpu/wheels}"
guarded 120 wheels python3 -m pip install --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$site" "$wheels"/*.whl || { tail -n 20 "$logs/wheels.log"; exit 1; }
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
timeout 90 python3 -c "import torch, transformers, llmcompressor, compressed_tensors as ct; print('versions: torch', torch.__version__,
  'transformers', transformers.__version__, 'llm-compressor', llmcompressor.__version__, 'compressed-tensors', ct.__version__)" \
  2>&1 | grep -E "^versions|Error" | tee -a "$summary"

bindir="${PEER_BIN:-build/cuda}"
if [ "$cpu_test" != 1 ]; then
  # The GPU image has PCRE2's runtime but not its header: bench/gpu_check.sh's carried copy.
  if ! pkg-config --exists libpcre2-8 && [ -f .gpu/pcre2/include/pcre2.h ]; then
    ln -sfn /usr/lib/x86_64-linux-gnu/libpcre2-8.so.0 .gpu/pcre2/lib/libpcre2-8.so
    export PKG_CONFIG_PATH="$PWD/.gpu/pcre2/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  fi
  # One build of the three targets (dsv4-calib for the e2e step): 16 cores do it faster at once.
  # PEER_BUILD_TARGETS: a call that skips the e2e step (PEER_E2E_MIN_S above the budget) can leave out dsv4-calib.
  targets="${PEER_BUILD_TARGETS:-bench_gptq_layer bench_hessian_throughput dsv4-calib}"
  guarded 300 build bash -c "cmake --preset cuda && cmake --build --preset cuda -j \"\$(nproc)\" --target $targets" ||
    { tail -n 30 "$logs/build.log"; exit 1; }
fi

# (a) GPTQ of one layer's 768 expert matrices.
dump=/tmp/dsv4_peer_dump
rm -rf "$dump" && mkdir -p "$dump"
if [ "$cpu_test" = 1 ]; then
  # No CUDA bench here: a dump in its format from bench/peer_fake_dump.py (RTN codes) checks the
  # reading and comparing code at tiny sizes.
  small=(--experts 4 --hidden 256 --inter 128 --chunk 4)
  guarded 120 gptq_ours python3 bench/peer_fake_dump.py "$dump" "${small[@]}"
  guarded 300 gptq_peer python3 bench/peer_gptq_layer.py --dump "$dump" "${small[@]}" --modes auto,per-module
else
  BENCH_DUMP="$dump" guarded 90 gptq_ours "$bindir/bench/bench_gptq_layer" 64
  guarded 200 gptq_peer python3 bench/peer_gptq_layer.py --dump "$dump" --chunk 64
fi
quote gptq_ours "^(family|layer|w1/w3|w2|dump)"
quote gptq_peer "^(llm-compressor|  [0-9]|family|warm-up)|Error"

# (b) Hessian accumulation.
if [ "$cpu_test" = 1 ]; then
  guarded 400 hessian_peer python3 bench/peer_hessian.py --scale 64 --runs 1
else
  guarded 60 hessian_ours "$bindir/bench/bench_hessian_throughput"
  quote hessian_ours "TFLOP"
  guarded 90 hessian_peer python3 bench/peer_hessian.py
fi
quote hessian_peer "TFLOP|accumulate_hessian|Error"

# (c) the whole small model, end to end, when there is time.
e2e_min="${PEER_E2E_MIN_S:-150}"
if [ "$(left)" -lt "$e2e_min" ]; then
  echo "e2e: skipped ($(left) s left, needs $e2e_min)" | tee -a "$summary"
else
  samples="${PEER_E2E_SAMPLES:-96}" seq="${PEER_E2E_SEQ:-512}" device=cuda
  [ "$cpu_test" = 1 ] && device=cpu
  bin="$bindir/launch/dsv4-calib"
  read -r -a model_args <<< "${PEER_E2E_MODEL:---preset tiny}"
  work=/tmp/dsv4_peer_e2e
  rm -rf "$work" && mkdir -p "$work"
  # The tiny preset's own tokenizer keeps ids inside its 512-token vocabulary; flash uses the real one.
  tok=()
  [[ " ${model_args[*]} " == *" flash "* ]] && tok=(--tokenizer .gpu/tokenizer)
  if [ -x "$bin" ] && guarded 60 e2e_make_model "$bin" make-model "${model_args[@]}" "${tok[@]}" \
      --calib-records "$samples" --calib-sentences 64 --out "$work/model"; then
    t0=$(date +%s.%N)
    guarded 120 e2e_ours "$bin" --recipe recipes/w4a16_mtp.yaml --model "$work/model" --dataset "$work/model/calib.jsonl" \
      --out "$work/q" --num-samples "$samples" --seq-len "$seq" --device "$device"
    echo "ours main job (${model_args[*]}, $samples x $seq, w4a16_mtp, --device $device): exit $? in" \
      "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s wall" | tee -a "$summary"
    quote e2e_ours "^\[|^wrote"
    peer=(python3 bench/peer_oneshot.py "$work/model" --samples "$samples" --seq-len "$seq" --bf16-dir "$work/bf16")
    guarded 150 e2e_peer_bf16 "${peer[@]}" --dtype bfloat16
    rc=$?
    quote e2e_peer_bf16 "^peer|^versions"
    [ "$rc" = 3 ] && { guarded 150 e2e_peer_fp32 "${peer[@]}" --dtype float32; quote e2e_peer_fp32 "^peer"; }
  else
    echo "e2e: no dsv4-calib or make-model failed (see e2e_make_model.log)" | tee -a "$summary"
  fi
fi
echo "total: $SECONDS s of the $budget s budget" | tee -a "$summary"
echo "==== summary"
cat "$summary"
