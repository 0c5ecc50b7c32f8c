#!/usr/bin/env bash
# long_run.sh: the long fuzz run issue 26 asks for (>= 10 M executions per harness, no open crash),
# on a machine with many cores: every harness at once, each in libFuzzer's fork mode (-fork=N: N
# child processes whose new inputs and coverage the parent merges), until a time budget ends or
# (with --runs) each has run that many inputs. Crashes, timeouts and OOMs do not stop a harness
# (-ignore_crashes etc.): each is saved under OUT/findings/ and counted. Prints, per harness, its
# workers, executions, coverage (libFuzzer's cov/ft: covered edges, features), corpus size, and
# crash/timeout/OOM counts; the same table goes to OUT/summary.txt.
#
#   bash tests/fuzz/long_run.sh --seconds 3600 --workers 16           # after bash tests/fuzz/run.sh built them
#   bash tests/fuzz/long_run.sh --bundle .gpu/fuzz [NAME...]           # pack them to run elsewhere
#   bash .gpu/fuzz/long_run.sh --seconds 540 --workers 16 --out "$OUT"  # there
#
# Options: --seconds S (default 600), --runs R (stop a harness at its first status line at or past
# R inputs, printed as its jobs end; 0: no limit), --workers W (fork children over all harnesses,
# default nproc; a slow harness gets more, by the weights below), --out DIR (default
# build/fuzz/long, or DIR/out in a bundle), NAME... (default: all seven).
# A bundle (--bundle DIR) is this script and DIR/fuzz.tar.xz: the binaries (with their line
# tables), the seed corpora, and the shared libraries they load beyond glibc and libstdc++ (the
# harnesses link --as-needed: PCRE2, yaml-cpp 0.7, Open MPI's for journal_line), since the machine
# that runs it may have other versions or none, and no clang (libFuzzer and the ASan/UBSan
# runtimes are linked statically). Run from a bundle, the script unpacks it under OUT and points
# LD_LIBRARY_PATH at its lib/.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds=600 runs=0 workers=$(nproc) out="" bundle=""
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --bundle) bundle="$2"; shift 2 ;;
    -*) echo "long_run.sh: unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
all=(safetensors_header index_json config_json recipe_yaml tokenizer_json calib_jsonl journal_line)
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
# Relative cost of one execution (the 120 s run of docs/RELIABILITY.md: recipe_yaml ran 438/s,
# calib_jsonl 4639/s): workers go where executions are dear.
declare -A weight=([safetensors_header]=3 [index_json]=3 [config_json]=1 [recipe_yaml]=4 [tokenizer_json]=3
                   [calib_jsonl]=1 [journal_line]=1)

if [ -n "$bundle" ]; then  # a copy that runs elsewhere
  root="$(cd "$here/../.." && pwd)"
  stage="$(mktemp -d)"
  mkdir -p "$stage/bin" "$stage/lib" "$stage/corpus" "$bundle"
  for n in "${names[@]}"; do  # the named harnesses (default: all seven)
    b="$root/build/fuzz/tests/fuzz/fuzz_$n"
    [ -x "$b" ] || { echo "long_run.sh: $b is not built (bash tests/fuzz/run.sh 0 builds them)" >&2; exit 1; }
    cp "$b" "$stage/bin/" && cp -r "$root/tests/fuzz/corpus/$n" "$stage/corpus/" || exit 1
    ldd "$b" | awk '/=>/ {print $3}' | grep -vE '/(libc|libm|libgcc_s|libstdc\+\+)\.so' | xargs -r cp -L -t "$stage/lib/"
  done
  tar -C "$stage" -cf - bin lib corpus | xz -6 -T0 >"$bundle/fuzz.tar.xz" && cp "$0" "$bundle/long_run.sh" || exit 1
  rm -rf "$stage"
  echo "bundle $bundle: $(du -sh "$bundle" | cut -f1) ($(ls "$bundle" | tr '\n' ' '))"
  exit 0
fi

if [ -f "$here/fuzz.tar.xz" ]; then  # a bundle: unpacked under OUT
  out="${out:-$here/out}"
  mkdir -p "$out/bundle" && xz -dc "$here/fuzz.tar.xz" | tar -C "$out/bundle" -xf - || exit 1
  bindir="$out/bundle/bin" seeds="$out/bundle/corpus"
  export LD_LIBRARY_PATH="$out/bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  root="$(cd "$here/../.." && pwd)"
  bindir="$root/build/fuzz/tests/fuzz" seeds="$root/tests/fuzz/corpus"
  out="${out:-$root/build/fuzz/long}"
fi
for n in "${names[@]}"; do  # a library the loader cannot find would fail every execution
  missing=$(ldd "$bindir/fuzz_$n" 2>&1 | grep 'not found')
  [ -z "$missing" ] || { echo "long_run.sh: fuzz_$n: $missing" >&2; exit 1; }
done

mkdir -p "$out/findings" "$out/tmp"
export TMPDIR="$out/tmp"  # the harnesses' scratch directories, one per process
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
total_weight=0
for n in "${names[@]}"; do total_weight=$((total_weight + ${weight[$n]:-1})); done
declare -A pid share
start=$(date +%s)
for n in "${names[@]}"; do
  w=$(( (workers * ${weight[$n]:-1} + total_weight / 2) / total_weight ))
  [ "$w" -ge 1 ] || w=1
  share[$n]=$w
  mkdir -p "$out/corpus/$n"
  # -close_fd_mask=1: the parsers' info lines would flood stdout; the status lines go to stderr.
  # setsid: the harness and its fork children form one process group, stopped together below.
  setsid "$bindir/fuzz_$n" "$out/corpus/$n" "$seeds/$n" -fork="$w" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -close_fd_mask=1 \
    -artifact_prefix="$out/findings/$n-" >"$out/$n.log" 2>&1 &
  pid[$n]=$!
done
echo "long_run: ${#names[@]} harnesses, $workers workers, ${seconds} s$( [ "$runs" -gt 0 ] && echo ", up to $runs runs each")"

# executions N: the last fork-mode status line "#N: cov: C ft: F corp: K exec/s E oom/timeout/crash: a/b/c ...".
status() { grep -aE '^#[0-9]+: cov:' "$out/$1.log" | tail -1; }
# A fork-mode parent past -max_total_time waits for its running jobs, which may run minutes more,
# so 15 s after the budget (or at --runs) the whole group is stopped with SIGKILL. Not SIGINT: the
# parent runs each job through system(), which ignores SIGINT in the caller, so an interrupt only
# killed the running jobs, which the parent then counted as crashes and replaced with new ones
# (the harness ran on to the deadline). The executions of jobs cut short are not counted (the
# figures are a lower bound).
stop() { kill -KILL -- "-${pid[$1]}" 2>/dev/null; }
while :; do
  alive=0 now=$(( $(date +%s) - start ))
  for n in "${names[@]}"; do
    kill -0 "${pid[$n]}" 2>/dev/null || continue
    alive=$((alive + 1))
    if [ "$runs" -gt 0 ]; then
      done_runs=$(status "$n" | sed -E 's/^#([0-9]+):.*/\1/')
      [ "${done_runs:-0}" -ge "$runs" ] && stop "$n"
    fi
    [ "$now" -ge $((seconds + 15)) ] && stop "$n"
  done
  [ "$alive" -eq 0 ] && break
  sleep 5
done
for n in "${names[@]}"; do wait "${pid[$n]}" 2>/dev/null; done
elapsed=$(( $(date +%s) - start ))

{
  printf '%-20s %7s %12s %8s %6s %6s %7s %8s %s\n' harness workers executions exec/s cov ft corpus findings \
    "oom/timeout/crash"
  for n in "${names[@]}"; do
    s=$(status "$n")
    execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$s")
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$s")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$s")
    corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$s")
    bad=$(sed -nE 's/.* oom\/timeout\/crash: ([0-9]+\/[0-9]+\/[0-9]+).*/\1/p' <<<"$s")
    rate=$(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))
    found=$(find "$out/findings" -name "$n-*" | wc -l)
    printf '%-20s %7s %12s %8s %6s %6s %7s %8s %s\n' "$n" "${share[$n]}" "${execs:-?}" "$rate" "${cov:-?}" "${ft:-?}" \
      "${corp:-?}" "$found" "${bad:-?}"
  done
  echo "elapsed ${elapsed} s; findings: $(ls "$out/findings" | wc -l) file(s) in $out/findings (the saved inputs of"
  echo "crashes, timeouts and OOMs)"
} | tee "$out/summary.txt"
sleep 1  # the interrupted children's last writes
rm -rf "$out/tmp" 2>/dev/null
[ -z "$(ls "$out/findings")" ]
