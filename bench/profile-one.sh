#!/usr/bin/env bash
# Where one node's CPU goes next to the reference server's: a CPU profile of each under the same
# `wrk -t2 -c64` load, one after the other, taken with `perf record -e cpu-clock -g`. With
# resp-get or resp-set, the node's RESP port against Redis instead, both loaded by
# `dkv bench --protocol resp -c64` (cheaper per request than redis-benchmark, so the servers and
# not the load generator bound req/s; see bench/resp.sh).
#
#   bench/profile-one.sh [get|put|resp-get|resp-set] [SECONDS]     (defaults: get, 6)
#
# Servers on CPU 1, the load on CPU 0, as in bench/http.sh; dkv holds 100 000 preloaded keys, as
# the reference (or Redis) does. Prints each side's req/s, CPU per request over the profiled
# window and samples by DSO, then the heaviest user-space symbols of each; perf.data stays in
# target/profile-one-{ref,redis,dkv}.data for `perf report` or `perf annotate`. Build with frame
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
case $OP in
  get | put)
    start "$REF" kv $P 100000
    REF_PID=${PIDS[-1]} REF_PORT=$P
    ;;
  resp-get | resp-set)
    need "redis-server" redis-server
    start redis-server --port $P --save '' --appendonly no
    REF_PID=${PIDS[-1]} REF_PORT=$P
    ;;
  *) echo "usage: bench/profile-one.sh [get|put|resp-get|resp-set] [SECONDS]" >&2; exit 2 ;;
esac
start "$DKV" seed --new-cluster --listen 127.0.0.1:$((P + 1))
wait_http "http://127.0.0.1:$((P + 1))/health"
start "$DKV" node --listen 127.0.0.1:$((P + 2)) --seed 127.0.0.1:$((P + 1)) --resp-listen 127.0.0.1:$((P + 3))
DKV_PID=${PIDS[-1]}
wait_http "http://127.0.0.1:$((P + 2))/health"
resp() { # PORT ARGS...: dkv bench over RESP, 64 connections, over 100 000 keys
  taskset -c 0 "$DKV" bench --node "http://127.0.0.1:$1" --protocol resp --resp-port "$1" -c 64 --keys 100000 "${@:2}"
}
# load PORT SECONDS: the load for SECONDS; prints "REQUESTS REQ/S"
if [ "${OP#resp-}" != "$OP" ]; then
  for _ in $(seq 1 200); do redis-cli -p $P ping >/dev/null 2>&1 && break; sleep 0.05; done
  resp $P --load >/dev/null
  resp $((P + 3)) --load >/dev/null
  SIDES=(redis dkv) PORTS=($P $((P + 3)))
  load() {
    local out
    out=$(resp "$1" -d "${2}s" --read-ratio "$([ "$OP" = resp-get ] && echo 1 || echo 0)")
    awk '$1 == "throughput" {print substr($4, 2), $2}' <<<"$out"
  }
else
  wait_http "http://127.0.0.1:$P/get?key=key1"
  PRELOAD=100000 taskset -c 0 wrk -t1 -c32 -d15s -s bench/wrk/preload.lua "http://127.0.0.1:$((P + 2))" >/dev/null
  SIDES=(ref dkv) PORTS=($P $((P + 2)))
  load() {
    local out
    out=$(taskset -c 0 wrk -t2 -c64 -d"${2}s" -s "bench/wrk/kv_$OP.lua" "http://127.0.0.1:$1")
    echo "$(awk '/requests in/ {print $1}' <<<"$out") $(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  }
fi
for i in 0 1; do
  side=${SIDES[$i]} port=${PORTS[$i]} pid=$REF_PID
  [ "$side" = dkv ] && pid=$DKV_PID
  load "$port" 3 >/dev/null # warm
  data=target/profile-one-$side.data
  before=$(cpu_ticks "$pid")
  perf record -q -e cpu-clock -g -p "$pid" -o "$data" -- sleep "$((SECS + 1))" 2>/dev/null &
  PERF=$!
  read -r n rps < <(load "$port" "$SECS")
  wait "$PERF" || true
  echo "$side $OP: $rps req/s, $(us_per $(($(cpu_ticks "$pid") - before)) "$n") µs CPU per request (perf running)"
  perf report -q -i "$data" --no-children -g none --sort dso 2>/dev/null | grep -v '^$' | head -4
done
for side in "${SIDES[@]}"; do
  echo "heaviest user-space symbols, $side (self time):"
  perf report -q -i "target/profile-one-$side.data" --no-children -g none --sort sym 2>/dev/null |
    grep -v '\[k\]' | grep -v '^$' | head -20
done
