#!/usr/bin/env bash
# Where one node's CPU goes next to the reference server's: a CPU profile of each under the same
# `wrk -t2 -c64` load, one after the other, taken with `perf record -e cpu-clock -g`.
#
#   bench/profile-one.sh [get|put] [SECONDS]     (defaults: get, 6)
#
# Servers on CPU 1, wrk on CPU 0, as in bench/http.sh; dkv holds 100 000 preloaded keys, as the
# reference does. Prints each side's req/s, CPU per request over the profiled window and samples
# by DSO, then the heaviest user-space symbols of each; perf.data stays in
# target/profile-one-{ref,dkv}.data for `perf report` or `perf annotate`. Build with frame
# pointers for call graphs that name dkv's callers:
#   RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=target/fp cargo build --release -p dkv
#   DKV=target/fp/release/dkv bench/profile-one.sh put
set -euo pipefail
cd "$(dirname "$0")/.."
OP=${1:-get}
SECS=${2:-6}
. bench/lib.sh
need "wrk linux-perf" wrk perf
build

P=$((21000 + RANDOM % 3000))
start "$REF" kv $P 100000
REF_PID=${PIDS[-1]}
start "$DKV" seed --listen 127.0.0.1:$((P + 1))
wait_http "http://127.0.0.1:$((P + 1))/health"
start "$DKV" node --listen 127.0.0.1:$((P + 2)) --seed 127.0.0.1:$((P + 1))
DKV_PID=${PIDS[-1]}
wait_http "http://127.0.0.1:$((P + 2))/health"
wait_http "http://127.0.0.1:$P/get?key=key1"
PRELOAD=100000 taskset -c 0 wrk -t1 -c32 -d15s -s bench/wrk/preload.lua "http://127.0.0.1:$((P + 2))" >/dev/null
for side in ref dkv; do
  pid=$REF_PID url=http://127.0.0.1:$P
  [ "$side" = dkv ] && pid=$DKV_PID url=http://127.0.0.1:$((P + 2))
  taskset -c 0 wrk -t2 -c64 -d3s -s "bench/wrk/kv_$OP.lua" "$url" >/dev/null # warm
  data=target/profile-one-$side.data
  before=$(cpu_ticks "$pid")
  perf record -q -e cpu-clock -g -p "$pid" -o "$data" -- sleep "$((SECS + 1))" 2>/dev/null &
  PERF=$!
  out=$(taskset -c 0 wrk -t2 -c64 -d"${SECS}s" -s "bench/wrk/kv_$OP.lua" "$url")
  wait "$PERF" || true
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$side $OP: $(awk '/Requests\/sec/ {print $2}' <<<"$out") req/s, $(us_per $(($(cpu_ticks "$pid") - before)) "$n") µs CPU per request (perf running)"
  perf report -q -i "$data" --no-children -g none --sort dso 2>/dev/null | grep -v '^$' | head -4
done
for side in ref dkv; do
  echo "heaviest user-space symbols, $side (self time):"
  perf report -q -i "target/profile-one-$side.data" --no-children -g none --sort sym 2>/dev/null |
    grep -v '\[k\]' | grep -v '^$' | head -20
done
