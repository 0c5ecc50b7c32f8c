#!/usr/bin/env bash
# mpirun_hosts.sh: dsv4-calib over several hosts without Slurm: Open MPI with a hostfile (see
# hostfile.example: one line per host, slots = its GPUs), one rank per GPU, ranks placed host by
# host so each host's ranks take its GPUs 0..7. Rerun the same command to resume after a failure.
#   HOSTFILE=launch/cluster/hostfile.example RECIPE=recipes/w4a16_mtp.yaml MODEL=/models/DeepSeek-V4-Flash \
#     DATASET=calib.jsonl OUT=/shared/q bash launch/cluster/mpirun_hosts.sh
# Needs the same paths on every host (the binary, MODEL; OUT written by rank 0's host) and
# password-less ssh between them. DSV4_DRY_RUN=1 prints the commands instead of running them;
# DEVICE=cpu runs the CPU reference instead (tests/launch/launch_scripts.sh runs it so on localhost).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${HOSTFILE:?set HOSTFILE (see launch/cluster/hostfile.example)}" "${RECIPE:?set RECIPE}" "${MODEL:?set MODEL}"
: "${DATASET:?set DATASET}" "${OUT:?set OUT}"
bin="${DSV4_BIN:-$root/build/cuda/launch/dsv4-calib}"
gpus="${GPUS_PER_NODE:-8}"
device="${DEVICE:-cuda}"  # cpu: the same job on the CPU reference (the test runs it so)
# The ranks: the hostfile's slots added up (comment lines skipped).
ranks=$(awk '{ sub(/#.*/, "") } match($0, /slots=[0-9]+/) { n += substr($0, RSTART + 6, RLENGTH - 6) } END { print n + 0 }' "$HOSTFILE")
dry="${DSV4_DRY_RUN:-0}"
run() {
  if [ "$dry" = 1 ]; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}
# -x passes the NCCL settings to every host (slurm_run.sh says why each).
launch=(mpirun --hostfile "$HOSTFILE" -n "$ranks" --map-by "ppr:$gpus:node" --bind-to none
        -x NCCL_RUNTIME_CONNECT=0 -x NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}" -x NCCL_DEBUG="${NCCL_DEBUG:-WARN}")
[ -n "${NCCL_SOCKET_IFNAME:-}" ] && launch+=(-x NCCL_SOCKET_IFNAME)
echo "dsv4-calib on $ranks ranks from $HOSTFILE; OUT=$OUT"
# PREFLIGHT=0 skips the preflight (it writes 1 GB to OUT's disk and times all-reduces: slow on a small test box).
[ "${PREFLIGHT:-1}" = 0 ] || run "${launch[@]}" "$bin" preflight --device "$device" --out "$OUT"
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
run "${launch[@]}" "$bin" --recipe "$RECIPE" --model "$MODEL" --dataset "$DATASET" --out "$OUT" --device "$device" ${EXTRA_ARGS:-}
run "$bin" verify "$OUT" --source "$MODEL"
