# shellcheck shell=bash
# What every bench script shares; sourced from the repository root after `set -euo pipefail`.
#   need "apt packages" TOOL...   exit with the install line if a tool is missing
#   PIDS / start CMD...           processes to kill at exit (start: pinned to CPU 1, quiet)
#   TMP                           a scratch directory, removed at exit if the script sets it
#   wait_http URL                 poll every 10 ms until URL answers 2xx (30 s at most)
#   stat_of URL FIELD             one number from a node's /stats
#   build                         build dkv and the reference server; sets DKV and REF
#                                 (DKV=path bench/X.sh uses that binary and builds no dkv)
#   cpu_ticks PID...              CPU time (utime + stime, clock ticks) of these processes
#   us_per TICKS N                those ticks as microseconds per request, for N requests
#   run_wrk URL SCRIPT [VAR=V]... wrk -t2 -c64 --latency for $DUR on CPU 0, bench/wrk/SCRIPT;
#                                 prints "req/s requests p50_ms p99_ms", tab-separated
#   callgrind_total FILE          the instructions a callgrind dump counted, once it is written
#   RESULTS / record LABEL X...   one measurement per line, tab-separated; `summarize` runs the
#                                 Python on its stdin after bench/lib.py, which reads RESULTS
#   steady CMD...                 run CMD, a measurement that ends with one `record`, again while
#                                 the host kept this VM's CPUs waiting too long during it (below)
need() {
  local pkgs=$1; shift
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "bench: $t is missing: apt-get install -y $pkgs" >&2; exit 1; }
  done
}
PIDS=()
TMP=""
RESULTS=$(mktemp)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "$TMP" ] || rm -rf "$TMP"
  rm -f "$RESULTS"
}
trap cleanup EXIT
# BENCH_LOG=FILE keeps the servers' logs (appended, all in one file); they go nowhere otherwise.
start() { taskset -c 1 "$@" >>"${BENCH_LOG:-/dev/null}" 2>&1 & PIDS+=($!); }
wait_http() {
  for _ in $(seq 1 3000); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done
  echo "bench: $1 did not come up" >&2; exit 1
}
stat_of() { curl -fs "$1/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
build() {
  if [ -z "${DKV:-}" ]; then cargo build --release -q -p dkv; DKV=target/release/dkv; fi
  CARGO_TARGET_DIR=target/bench-reference cargo build --release -q --manifest-path bench/reference/Cargo.toml
  REF=target/bench-reference/release/reference
}
HZ=$(getconf CLK_TCK)
# /proc/PID/stat fields 14 and 15; the process name (field 2) may hold spaces, so cut it off first.
cpu_ticks() {
  local p t=0
  for p in "$@"; do t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done
  echo "$t"
}
us_per() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.1f\n", t * 1e6 / hz / n }'; }
run_wrk() {
  local url=$1 script=$2 out; shift 2
  out=$(env "$@" taskset -c 0 wrk -t2 -c64 -d"$DUR" --latency -s "bench/wrk/$script" "$url") || return
  grep -E 'Non-2xx|Socket errors' <<<"$out" | sed "s|^|bench: $url $script: |" >&2 || true
  awk 'function ms(v, u) { u = v; sub(/^[0-9.]+/, "", u); return (u == "us" ? v / 1000 : u == "s" ? v * 1000 : v + 0) }
       / requests in / { n = $1 } /^Requests\/sec/ { r = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
       END { printf "%s\t%s\t%s\t%s\n", r, n, p50, p99 }' <<<"$out"
}
callgrind_total() {
  for _ in $(seq 1 100); do [ -s "$1" ] && break; sleep 0.1; done
  sleep 1
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' || true
}
record() { local IFS=$'\t'; echo "$*" >> "$RESULTS"; echo "  $*" >&2; }
# This machine is a VM whose two CPUs share their host. While the host runs something else, a
# CPU of ours that has work waits ("steal" in /proc/stat), and every figure of the run moves:
# measured on 2026-12-03, Redis's GETs went from 102 602 req/s (9.2 µs of CPU each) with 2% of
# the time stolen to 26 266 (14.1 µs) with 42% of it stolen, a minute apart. So `steady`
# measures again, up to STEAL_TRIES times (default 5), while more than STEAL_MAX percent
# (default 3) of the CPU time was stolen during the measurement, and says so on stderr; after
# the last try it keeps what it has, marked.
steal_ticks() { awk '$1 == "cpu" {print $9}' /proc/stat; }
steady() {
  local try s0 t0 pct
  for try in $(seq 1 "${STEAL_TRIES:-5}"); do
    s0=$(steal_ticks) t0=$(date +%s%N)
    "$@"
    pct=$(awk -v s=$(($(steal_ticks) - s0)) -v ns=$(($(date +%s%N) - t0)) -v hz="$HZ" -v cpus="$(nproc)" \
      'BEGIN { printf "%.1f", 100 * s / hz / (ns / 1e9 * cpus) }')
    if awk -v p="$pct" -v m="${STEAL_MAX:-3}" 'BEGIN { exit !(p <= m) }'; then return 0; fi
    if [ "$try" -lt "${STEAL_TRIES:-5}" ]; then
      echo "  (the host took $pct% of the CPU time during that one: measuring again)" >&2
      sed -i '$d' "$RESULTS"
    else
      echo "  (the host took $pct% of the CPU time during that one, and in ${STEAL_TRIES:-5} tries: kept)" >&2
    fi
  done
}
summarize() { python3 - "$RESULTS" "$@" < <(cat bench/lib.py -); }
