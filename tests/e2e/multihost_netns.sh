#!/usr/bin/env bash
# multihost_netns.sh: a multi-host job for real on one machine (issue 25). Two network namespaces
# joined by a veth pair are the hosts (10.77.0.1 "host1", 10.77.0.2 "host2", each with its own
# hostname through a UTS namespace); mpirun runs on host1 with a hostfile naming both, as a user
# would, Open MPI over TCP between them. Its rsh agent (what ssh is on a cluster) runs each host's
# daemon in that host's namespace. Then:
#   - rank 1 (host2) is SIGKILLed entering layers.1 pass A: the whole job ends, with a message
#     naming rank 1 and host 10.77.0.2, and leaves its run state;
#   - the same command again resumes (both hosts' ranks listed in the manifest) and gives the
#     bytes of an uninterrupted one-process run (the CPU path's same bits at any number of ranks).
# Needs root (CAP_NET_ADMIN) for the namespaces: without it the test says so and skips (exit 77).
# Run by ctest (multihost_netns) as: DSV4_BIN=path/to/dsv4-calib bash this.sh WORKDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/e2e_lib.sh"
bin="$(realpath "${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}")"
work="${1:?usage: $0 WORKDIR}"
rm -rf "$work" && mkdir -p "$work" && work="$(realpath "$work")"
recipe="$(realpath "$here/../../recipes/w4a16_mtp.yaml")"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# Namespaces and veth names unique to this process (interface names: 15 characters at most).
ns1="dsv4h1_$$" ns2="dsv4h2_$$" v1="d4a$$" v2="d4b$$"
cleanup() { ip netns del "$ns1" 2>/dev/null; ip netns del "$ns2" 2>/dev/null; }
trap cleanup EXIT
if ! ip netns add "$ns1" 2>"$work/netns.err"; then
  echo "skipped: cannot create a network namespace here ($(head -1 "$work/netns.err")): needs root"
  exit 77
fi
ip netns add "$ns2" && ip link add "$v1" type veth peer name "$v2" \
  && ip link set "$v1" netns "$ns1" && ip link set "$v2" netns "$ns2" \
  && ip netns exec "$ns1" ip addr add 10.77.0.1/24 dev "$v1" && ip netns exec "$ns2" ip addr add 10.77.0.2/24 dev "$v2" \
  && ip netns exec "$ns1" ip link set lo up && ip netns exec "$ns2" ip link set lo up \
  && ip netns exec "$ns1" ip link set "$v1" up && ip netns exec "$ns2" ip link set "$v2" up \
  || { fail "setting up the two hosts' network"; e2e_finish; }

# The rsh agent: `agent HOST CMD...` runs CMD in HOST's namespace under its hostname.
cat > "$work/agent.sh" <<AGENT
#!/usr/bin/env bash
host="\$1"; shift
case "\$host" in 10.77.0.1) ns=$ns1; name=host1 ;; 10.77.0.2) ns=$ns2; name=host2 ;; *) echo "no host \$host" >&2; exit 1 ;; esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$name; exec \$*"
AGENT
chmod +x "$work/agent.sh"
printf '# the two hosts, one rank each\n10.77.0.1 slots=1\n10.77.0.2 slots=1\n' > "$work/hostfile"

"$bin" make-model --preset tiny --out "$work/tiny" >/dev/null || { fail make-model; e2e_finish; }
args=(--recipe "$recipe" --model "$work/tiny" --dataset "$work/tiny/calib.jsonl" --num-samples 8 --seq-len 32 --threads 1)
# job OUT: the 2-host job, started on host1 as a user would (DSV4_FAULT passed through).
job() {
  timeout 180 ip netns exec "$ns1" unshare --uts sh -c "hostname host1; exec \"\$@\"" sh \
    mpirun --hostfile "$work/hostfile" -n 2 --mca plm_rsh_agent "$work/agent.sh" \
    --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
    -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x DSV4_FAULT "$bin" "${args[@]}" --out "$1"
}
"$bin" "${args[@]}" --out "$work/ref" >"$work/ref.log" 2>&1 || { fail "reference run: $(tail -2 "$work/ref.log")"; e2e_finish; }

DSV4_FAULT="kill@1@layers.1@pass A" job "$work/q" >"$work/kill.log" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "rank 1 .* on node 10.77.0.2" "$work/kill.log" && [ -d "$work/q/.calib_run" ]; then
  pass "rank 1 on host2 killed: the job ended (exit $rc) naming rank 1 and host 10.77.0.2"
else fail "kill on host2: exit $rc; $(grep -v '^\[' "$work/kill.log" | tail -4)"; fi

DSV4_FAULT="" job "$work/q" >"$work/resume.log" 2>&1 || fail "resume: $(tail -3 "$work/resume.log")"
grep -q '"host": "host1"' "$work/q/calib_manifest.json" && grep -q '"host": "host2"' "$work/q/calib_manifest.json" \
  && grep -q "^resuming " "$work/resume.log" && pass "the rerun resumed on both hosts" || fail "rerun: $(tail -3 "$work/resume.log")"
same_artifact "$work/ref" "$work/q" && pass "resumed 2-host artifact = uninterrupted 1-process artifact" \
  || fail "resumed 2-host artifact differs from the 1-process one"
e2e_finish
