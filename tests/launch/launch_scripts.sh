#!/usr/bin/env bash
# launch_scripts.sh: the cluster launchers in launch/cluster (issue 25).
#   - shellcheck passes on every script (installed with apt-get when missing);
#   - the Slurm batch scripts ask for --requeue and one task per GPU, and their dry run
#     (DSV4_DRY_RUN=1, no Slurm needed) prints srun with nodes x 8 ranks for preflight and the job;
#   - a requeued job whose artifact is finished skips the calibration and verifies;
#   - mpirun_hosts.sh runs for real with a localhost hostfile of 2 slots on the CPU (DEVICE=cpu):
#     the tiny checkpoint at 2 ranks, verify OK.
# Run by ctest (launch_scripts) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../e2e/e2e_lib.sh"
root="$(cd "$here/../.." && pwd)"
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
work="${1:?usage: $0 WORKDIR}"
rm -rf "$work" && mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cluster="$root/launch/cluster"

if ! command -v shellcheck >/dev/null; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get install -y shellcheck >"$work/apt.log" 2>&1 || fail "could not install shellcheck: $(tail -1 "$work/apt.log")"
fi
if shellcheck -x "$cluster"/*.sh "$cluster"/*.sbatch >"$work/shellcheck.log" 2>&1; then pass shellcheck
else fail "shellcheck: $(head -20 "$work/shellcheck.log")"; fi

for s in slurm_1node.sbatch slurm_nodes.sbatch; do
  grep -qx "#SBATCH --requeue" "$cluster/$s" && grep -qx "#SBATCH --ntasks-per-node=8" "$cluster/$s" \
    && pass "$s: --requeue, 8 tasks per node" || fail "$s: --requeue or --ntasks-per-node=8 missing"
done
vars=(RECIPE=r.yaml MODEL=/m DATASET=c.jsonl OUT="$work/none" DSV4_DRY_RUN=1 DSV4_BIN=/b)
dry=$(env "${vars[@]}" SLURM_JOB_NUM_NODES=3 bash "$cluster/slurm_nodes.sbatch" 2>&1)
grep -qx "srun --mpi=pmix --nodes=3 --ntasks=24 --ntasks-per-node=8 --kill-on-bad-exit=1 /b --recipe r.yaml --model /m --dataset c.jsonl --out $work/none --device cuda" <<<"$dry" \
  && grep -q "^srun .* /b preflight --device cuda" <<<"$dry" && grep -qx "/b verify $work/none --source /m" <<<"$dry" \
  && pass "slurm dry run: 3 nodes x 8 ranks" || fail "slurm dry run: $dry"
dry=$(env "${vars[@]}" bash "$cluster/slurm_1node.sbatch" 2>&1)
grep -q "^srun .*--nodes=1 --ntasks=8 " <<<"$dry" && pass "slurm 1 node dry run: 8 ranks" || fail "slurm 1 node dry run: $dry"
mkdir -p "$work/done" && : > "$work/done/model.safetensors.index.json"
dry=$(env "${vars[@]}" OUT="$work/done" bash "$cluster/slurm_1node.sbatch" 2>&1)
grep -q "already holds the finished artifact" <<<"$dry" && ! grep -q -- "--recipe" <<<"$dry" \
  && pass "a requeued finished job only verifies" || fail "requeued finished job: $dry"
env -u RECIPE bash "$cluster/slurm_run.sh" >"$work/unset.log" 2>&1
[ $? -ne 0 ] && grep -q "set RECIPE" "$work/unset.log" && pass "a missing variable is named" || fail "missing RECIPE: $(cat "$work/unset.log")"

# The hostfile launcher for real: localhost with 2 slots, the CPU reference, verify.
"$bin" make-model --preset tiny --out "$work/tiny" >/dev/null || { fail make-model; e2e_finish; }
printf '# test hosts\nlocalhost slots=2\n' > "$work/hosts"
if HOSTFILE="$work/hosts" GPUS_PER_NODE=2 PREFLIGHT=0 DEVICE=cpu DSV4_BIN="$bin" RECIPE="$root/recipes/w4a16_mtp.yaml" \
   MODEL="$work/tiny" DATASET="$work/tiny/calib.jsonl" OUT="$work/q" EXTRA_ARGS="--num-samples 8 --seq-len 32" \
   bash "$cluster/mpirun_hosts.sh" >"$work/mpirun.log" 2>&1 && grep -q "verify: OK" "$work/mpirun.log" \
   && grep -q '"world_size": 2' "$work/q/calib_manifest.json" && ! grep -q $'\033' "$work/mpirun.log"; then
  pass "mpirun_hosts.sh: 2 ranks from a hostfile, verify OK, plain lines (no bar through mpirun)"
else fail "mpirun_hosts.sh: $(tail -5 "$work/mpirun.log")"; fi
e2e_finish
