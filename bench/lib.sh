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
summarize() { python3 - "$RESULTS" "$@" < <(cat bench/lib.py -); }
