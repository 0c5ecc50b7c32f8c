#!/usr/bin/env bash
# slurm_run.sh: the body of the Slurm batch scripts beside it (slurm_1node.sbatch,
# slurm_nodes.sbatch): inside an allocation, one dsv4-calib rank per GPU on every node through
# srun (MPI wire-up by PMIx), in three steps: preflight (GPUs, NCCL bandwidth, the output disk), the
# calibration, verify. The calibration resumes by itself: a requeued job (sbatch --requeue, after a
# preemption or a node failure) runs this again with the same OUT and continues from the last
# committed layer; a job whose artifact is already finished skips to verify.
#
# Set by the caller (environment): RECIPE, MODEL, DATASET, OUT; optional DEVICE (cuda), DSV4_BIN (default
# build/cuda/launch/dsv4-calib), GPUS_PER_NODE (8), SRUN_MPI (pmix), EXTRA_ARGS (more flags for
# the calibration, e.g. "--num-samples 512"), and the site's NCCL_SOCKET_IFNAME / NCCL_IB_HCA.
# DSV4_DRY_RUN=1 prints the commands instead of running them (works outside Slurm too; the test
# tests/launch/launch_scripts.sh checks it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${RECIPE:?set RECIPE to the recipe YAML}" "${MODEL:?set MODEL to the release checkpoint directory}"
: "${DATASET:?set DATASET to the calibration data file}" "${OUT:?set OUT to the output directory}"
bin="${DSV4_BIN:-$root/build/cuda/launch/dsv4-calib}"
nodes="${SLURM_JOB_NUM_NODES:-1}"
gpus="${GPUS_PER_NODE:-8}"
device="${DEVICE:-cuda}"  # cpu: the same job on the CPU reference
ranks=$((nodes * gpus))
dry="${DSV4_DRY_RUN:-0}"

# NCCL: every connection made at start-up (dsv4-calib sets this itself; here for the record), NVLink
# multicast (NVLS) off as on the machines the GPU numbers in docs/PERFORMANCE.md were measured on
# (set NCCL_NVLS_ENABLE=1 to try it), warnings only. Across nodes NCCL picks the network itself;
# a site that needs NCCL_SOCKET_IFNAME or NCCL_IB_HCA exports them before sbatch (passed through).
export NCCL_RUNTIME_CONNECT=0 NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}" NCCL_DEBUG="${NCCL_DEBUG:-WARN}"

# run CMD...: runs it, or with DSV4_DRY_RUN=1 prints it (shell-quoted, one line).
run() {
  if [ "$dry" = 1 ]; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}

# One task per GPU; each sees all its node's GPUs (no --gpus-per-task binding), because
# dsv4-calib takes the GPU of its index among the ranks of its host.
launch=(srun --mpi="${SRUN_MPI:-pmix}" --nodes="$nodes" --ntasks="$ranks" --ntasks-per-node="$gpus" --kill-on-bad-exit=1)
echo "dsv4-calib on $nodes node(s) x $gpus GPU(s): $ranks ranks; OUT=$OUT"
# PREFLIGHT=0 skips the preflight (it writes 1 GB to OUT's disk and times all-reduces: slow on a small test box).
[ "${PREFLIGHT:-1}" = 0 ] || run "${launch[@]}" "$bin" preflight --device "$device" --out "$OUT"
if [ -f "$OUT/model.safetensors.index.json" ] && [ ! -d "$OUT/.calib_run" ]; then
  echo "$OUT already holds the finished artifact (a requeued job after the end): verifying it"
else
  # shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
  run "${launch[@]}" "$bin" --recipe "$RECIPE" --model "$MODEL" --dataset "$DATASET" --out "$OUT" --device "$device" ${EXTRA_ARGS:-}
fi
run "$bin" verify "$OUT" --source "$MODEL"
