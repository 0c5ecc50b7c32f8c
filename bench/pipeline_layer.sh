#!/usr/bin/env bash
# pipeline_layer.sh: the whole GPU pipeline on full-width DeepSeek-V4-Flash layers (issues 9, 10):
# make-model --preset flash (2 layers, 256 experts, one long calibration record per sample), then
# the main job with 96 samples x 512 tokens per rank (one rank's share of 768 samples on 8 GPUs),
# recipe w4a16_mtp.yaml, --device cuda. Prints the per-layer phase lines (decode, forward, solve,
# comm, write), the GPU timing lines (pass A/B, GPTQ batches), each rank's memory and the peak
# host memory; the full log goes to $OUT/pipeline_layer.log. docs/PERFORMANCE.md quotes it.
#   run on the GPU machine after building the cuda preset (bench/gpu_check.sh does both):
#     bash bench/pipeline_layer.sh            # PIPELINE_LAYERS=N for another layer count
#   PIPELINE_RUNS=N runs the same job N times on the one checkpoint (a fresh --out each; the logs
#     of runs 2..N are pipeline_layer.runK.log), for the spread between runs;
#   another recipe: PIPELINE_RECIPE=FILE (e.g. one with calibration.hessian_sums: fp32);
#   several ranks (mpirun, NVLink multicast off): PIPELINE_RANKS=8; ranks sharing one GPU need
#     PIPELINE_ARGS="--comm mpi --gpu-memory GB"; PIPELINE_SAMPLES overrides 96 x ranks;
#   kill and resume: PIPELINE_KILL="RANK@SEGMENT@PHASE" (a DSV4_FAULT spec without its action)
#     then kills that rank there, times how long the job takes to end, resumes, and compares the
#     resumed artifact's files with the uninterrupted run's (sha256; manifest and recipe aside).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/dsv4_gpu_out}"
mkdir -p "$out"
bin=build/cuda/launch/dsv4-calib
work="${PIPELINE_WORK:-/tmp/dsv4_pipeline_layer}"
rm -rf "$work" && mkdir -p "$work"
ranks="${PIPELINE_RANKS:-1}"
samples="${PIPELINE_SAMPLES:-$((96 * ranks))}"
read -r -a extra <<< "${PIPELINE_ARGS:-}"
launch=()
[ "$ranks" -gt 1 ] && launch=(mpirun -n "$ranks" --oversubscribe -x NCCL_NVLS_ENABLE=0 -x DSV4_FAULT)
export NCCL_NVLS_ENABLE=0 DSV4_FAULT="${DSV4_FAULT:-}" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# 64 sentences of about 10 tokens: every record fills a 512-token sample.
"$bin" make-model --preset flash --layers "${PIPELINE_LAYERS:-2}" --experts 256 --tokenizer .gpu/tokenizer \
  --calib-records "$samples" --calib-sentences 64 --out "$work/model" > "$out/pipeline_make_model.log" 2>&1
# job [PREFIX...]: the main job (PREFIX: e.g. /usr/bin/time -v).
job() {
  "$@" "${launch[@]}" "$bin" --recipe "${PIPELINE_RECIPE:-recipes/w4a16_mtp.yaml}" --model "$work/model" --dataset "$work/model/calib.jsonl" \
    --out "$work/q" --num-samples "$samples" --seq-len 512 --device cuda "${extra[@]}"
}
for run in $(seq 1 "${PIPELINE_RUNS:-1}"); do
  log="$out/pipeline_layer.log"
  [ "$run" -gt 1 ] && { log="$out/pipeline_layer.run$run.log"; rm -rf "$work/q"; echo "--- run $run"; }
  job /usr/bin/time -v > "$log" 2>&1 || { tail -n 20 "$log"; exit 1; }
  grep -E "calibration data:.*records|GPU|HC states|^\[|^rank|^wrote|Elapsed|Maximum resident" "$log" | cut -c1-240
done
# artifact_sums: sha256 of the artifact's files but the manifest (timings) and recipe.yaml.
artifact_sums() {
  (cd "$work/q" && find . -type f ! -name calib_manifest.json ! -name recipe.yaml ! -path './.calib_run/*' -print0 |
    xargs -0 -P 8 -n 4 sha256sum | sort -k2)
}
if [ -n "${PIPELINE_KILL:-}" ]; then
  artifact_sums > "$work/ref.sha"
  rm -rf "$work/q"
  DSV4_FAULT="kill@$PIPELINE_KILL" job > "$out/pipeline_kill.log" 2>&1 &
  pid=$!
  until grep -q "DSV4_FAULT: kill" "$out/pipeline_kill.log" || ! kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  killed=$(date +%s.%N)
  rc=0; wait "$pid" || rc=$?
  echo "kill at $PIPELINE_KILL: the job exited $rc, $(awk -v a="$killed" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s after the kill"
  grep -E "^ ## |exited on signal" "$out/pipeline_kill.log" | head -n 4 | cut -c1-240
  DSV4_FAULT= job > "$out/pipeline_resume.log" 2>&1 || { tail -n 20 "$out/pipeline_resume.log"; exit 1; }
  grep -E "resum|^\[|^wrote" "$out/pipeline_resume.log" | cut -c1-240
  artifact_sums > "$work/resumed.sha"
  if cmp -s "$work/ref.sha" "$work/resumed.sha"; then echo "resumed artifact: identical ($(wc -l < "$work/ref.sha") files)"
  else echo "resumed artifact DIFFERS:"; diff "$work/ref.sha" "$work/resumed.sha" | head; exit 1; fi
fi
rm -rf "$work"
