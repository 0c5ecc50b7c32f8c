#!/usr/bin/env bash
# cli_calibrate_mpi_cuda.sh: a multi-rank GPU job (`mpirun -n 2 ... --device cuda`) on one GPU,
# the ranks sharing it (--comm mpi --gpu-memory), on the tiny checkpoint with a snapshot every 2
# layers (issue 10's paths short of NCCL between GPUs):
#   - sharing is refused without --gpu-memory and over NCCL, naming the fix; a --gpu-memory over
#     the GPU's free memory or under the plan's minimum is refused;
#   - the 2-rank artifact passes verify and a rerun is byte-identical; its differences against the
#     1-rank GPU run are printed (only the Hessian summation order differs);
#   - a rank killed mid-layer ends the job within 60 s with its run state left, and the resume is
#     byte-identical to the uninterrupted 2-rank run.
# Without a GPU it says so and passes, unless DSV4_REQUIRE_GPU=1 (the GPU machine).
# Usage: DSV4_BIN=build/cuda/launch/dsv4-calib [MPIEXEC=mpirun] bash cli_calibrate_mpi_cuda.sh TMPDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
mpi="${MPIEXEC:-mpirun}"
tmp="${1:?usage: $0 TMPDIR}"
rm -rf "$tmp" && mkdir -p "$tmp"
skip_without_gpu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export CUDA_VISIBLE_DEVICES=0  # one GPU, whatever the machine has: the ranks share it

"$bin" make-model --preset tiny --out "$tmp/tiny" >/dev/null || { fail "make-model"; e2e_finish; }
recipe="$tmp/resume.yaml"
cp "$here/../../recipes/w4a16_mtp.yaml" "$recipe"
printf 'run:\n  checkpoint_every: 2\n' >> "$recipe"

args=(--recipe "$recipe" --model "$tmp/tiny" --dataset "$tmp/tiny/calib.jsonl" --num-samples 8 --seq-len 32
      --threads 2 --device cuda)
# mjob NP OUT [ARGS...]: the GPU job on NP ranks of this host.
mjob() {
  local np="$1" out="$2"; shift 2
  "$mpi" -n "$np" --oversubscribe -x CUDA_VISIBLE_DEVICES -x DSV4_FAULT "$bin" "${args[@]}" --out "$out" "$@"
}

expect_error "2 ranks on 1 GPU without --gpu-memory" "give each its share with --gpu-memory" mjob 2 "$tmp/no_cap"
expect_error "2 ranks on 1 GPU over NCCL" "--comm nccl needs a GPU per rank" \
  mjob 2 "$tmp/nccl" --comm nccl --gpu-memory 3
expect_error "--gpu-memory over the free memory" "GPU 0 has only" "$bin" "${args[@]}" --out "$tmp/huge" \
  --gpu-memory 100000
expect_error "--gpu-memory under the minimum" "--gpu-memory gives this rank" "$bin" "${args[@]}" \
  --out "$tmp/tiny_cap" --gpu-memory 0.6

"$bin" "${args[@]}" --out "$tmp/n1" > "$tmp/n1.log" 2>&1 && pass "1-rank GPU run" || fail "1-rank GPU run: $(tail -2 "$tmp/n1.log")"
expect_output "2 ranks sharing the GPU" 0 "split over 2 ranks" mjob 2 "$tmp/n2" --comm mpi --gpu-memory 3
expect_output "2 ranks: verify" 0 "verify: OK" "$bin" verify "$tmp/n2" --source "$tmp/tiny"
mjob 2 "$tmp/n2b" --comm mpi --gpu-memory 3 > "$tmp/n2b.log" 2>&1 || fail "2-rank rerun: $(tail -2 "$tmp/n2b.log")"
same_artifact "$tmp/n2" "$tmp/n2b" && pass "2-rank rerun byte-identical" || fail "2-rank rerun differs"
shard=$(cd "$tmp/n1" && ls ./*.safetensors | head -1)
echo "info 2 ranks vs 1 on the GPU: $(cmp -l "$tmp/n1/$shard" "$tmp/n2/$shard" | wc -l) of $(stat -c %s "$tmp/n1/$shard") bytes of $shard differ"

# kill_rank RANK SPEC: that rank SIGKILLs itself where DSV4_FAULT names SPEC; the job must end
# within 60 s with its run state left, and the resume must give the uninterrupted run's bytes.
kill_rank() {
  local rank="$1" spec="$2" out rc start=$SECONDS
  out="$tmp/k${rank}_${spec//[ @.]/_}"
  DSV4_FAULT="kill@$rank@$spec" timeout 120 "$mpi" -n 2 --oversubscribe -x CUDA_VISIBLE_DEVICES -x DSV4_FAULT \
    "$bin" "${args[@]}" --out "$out" --comm mpi --gpu-memory 3 > "$out.kill.log" 2>&1
  rc=$?
  local took=$((SECONDS - start))
  [ "$rc" -ne 0 ] && [ -d "$out/.calib_run" ] || { fail "kill rank $rank at $spec did not stop the run (rc $rc)"; return; }
  [ "$took" -le 60 ] || { fail "kill rank $rank at $spec: the job took $took s to end (limit 60)"; return; }
  if DSV4_FAULT= mjob 2 "$out" --comm mpi --gpu-memory 3 > "$out.log" 2>&1 && same_artifact "$tmp/n2" "$out"; then
    pass "kill rank $rank at $spec (ended after $took s), resume: identical"
  else fail "kill rank $rank at $spec, resume: $(tail -2 "$out.log")"; fi
}
kill_rank 1 "layers.1@pass A"
kill_rank 0 "layers.1@solve"
kill_rank 1 "layers.2@pass B"
kill_rank 0 "segment 2@stage"  # rank 0 writes and stages
e2e_finish
