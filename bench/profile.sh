#!/usr/bin/env bash
# Where the CPU of a request goes: a CPU profile of 3 nodes with N=3 W=2 R=2 (or of one node) under
# `wrk -t2 -c64` (or, for resp-*, `redis-benchmark -c64 -d100 -r100000` through the first node's
# RESP port, as in bench/compare.sh), taken with `perf record -e cpu-clock -g` over every node
# process.
#
#   bench/profile.sh [put|get|resp-set|resp-get] [SECONDS]     (defaults: put, 8)
#   NODES=1 bench/profile.sh put     (one node, N=1: what the replicated rows are measured against)
#   PIPELINE=16 RATE=120000 bench/profile.sh resp-get
#                                    (resp-*: redis-benchmark -P PIPELINE, about RATE commands/s)
#
# Nodes on CPU 1, the load on CPU 0, as in bench/http.sh. Prints the CPU per request over the profiled
# window, the share of samples by DSO (dkv, kernel, libc), and the heaviest symbols; the full
# report, with call graphs, stays in target/profile-OP.txt and perf.data in target/profile-OP.data.
# Build with frame pointers for call graphs that name dkv's callers:
#   RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=target/fp cargo build --release -p dkv
#   DKV=target/fp/release/dkv bench/profile.sh put
set -euo pipefail
cd "$(dirname "$0")/.."
OP=${1:-put}
SECS=${2:-8}
DUR=${SECS}s
. bench/lib.sh
need "wrk linux-perf" wrk perf
build

P=$((26000 + RANDOM % 3000))
S=127.0.0.1:$P R1=127.0.0.1:$((P + 1)) R2=127.0.0.1:$((P + 2)) R3=127.0.0.1:$((P + 3))
start "$DKV" seed --new-cluster --listen "$S"
wait_http "http://$S/health"
RESP=$((P + 4))
COUNT=${NODES:-3}
[ "$COUNT" = 1 ] || [ "$COUNT" = 3 ] || { echo "bench: NODES is 1 or 3" >&2; exit 2; }
start "$DKV" node --listen "$R1" --seed "$S" --replication "$COUNT" --resp-listen "127.0.0.1:$RESP"
NODE_PIDS=("${PIDS[-1]}")
wait_http "http://$R1/health"
if [ "$COUNT" = 3 ]; then
  for r in "$R2" "$R3"; do start "$DKV" node --listen "$r" --seed "$S" --replication 3; NODE_PIDS+=("${PIDS[-1]}"); done
  for r in "$R2" "$R3"; do wait_http "http://$r/health"; done
fi
case "$OP" in
  put | get)
    load() { taskset -c 0 wrk -t2 -c64 -d"$1" -s "bench/wrk/kv_$OP.lua" "http://$R1"; }
    rate() { awk '/Requests\/sec/ {print $2}'; }
    count() { awk '/requests in/ {print $1}'; }
    [ "$OP" = put ] || PRELOAD=100000 taskset -c 0 wrk -t1 -c32 -d20s -s bench/wrk/preload.lua "http://$R1" >/dev/null
    ;;
  resp-set | resp-get)
    need "redis-tools" redis-benchmark
    # A fixed count, about SECONDS at RATE (default: the last measured rate without pipelining,
    # 44 000 SETs/s); `timeout` bounds it.
    load() {
      local n=$(( ${1%s} * ${RATE:-44000} ))
      echo "requests $n"
      timeout 120 taskset -c 0 redis-benchmark -p "$RESP" -c 64 -P "${PIPELINE:-1}" -d 100 -r 100000 -n "$n" \
        -t "${OP#resp-}" -q
    }
    rate() { tr '\r' '\n' | awk '/requests per second/ {v = $2} END {print v}'; }
    count() { awk '/^requests / {print $2}'; }
    taskset -c 0 redis-benchmark -p "$RESP" -c 64 -P 16 -d 100 -r 100000 -n 400000 -t set -q >/dev/null
    ;;
  *) echo "bench: profile.sh put|get|resp-set|resp-get [SECONDS]" >&2; exit 2 ;;
esac
# Warm the connections and let the anti-entropy rounds that follow the joins finish (they run a
# heartbeat interval after the last change, a little later if the joins came during that
# interval: `settle` in replication/antientropy/mod.rs), then profile a fixed window of steady state.
load 12s >/dev/null
pids=$(IFS=,; echo "${NODE_PIDS[*]}")
before=$(cpu_ticks "${NODE_PIDS[@]}")
perf record -q -e cpu-clock -g -p "$pids" -o "target/profile-$OP.data" -- sleep "$((SECS + 1))" 2>/dev/null &
PERF=$!
out=$(load "$DUR")
wait "$PERF" || true
after=$(cpu_ticks "${NODE_PIDS[@]}")
n=$(count <<<"$out")
echo "$COUNT node(s) N=$COUNT $OP: $(rate <<<"$out") req/s, $(us_per $((after - before)) "$n") µs CPU per request (all nodes, perf running)"
perf report -q -i "target/profile-$OP.data" --no-children --sort sym --percent-limit 0.3 \
  >"target/profile-$OP.txt" 2>/dev/null || true
echo "samples by DSO:"
perf report -q -i "target/profile-$OP.data" --no-children -g none --sort dso 2>/dev/null | grep -v '^$' | head -6
echo "heaviest symbols (self time):"
perf report -q -i "target/profile-$OP.data" --no-children -g none --sort sym 2>/dev/null | grep -v '^$' | head -40
