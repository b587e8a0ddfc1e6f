#!/usr/bin/env bash
# Three nodes with N=3 W=2 R=2 under a write load that does not stop, measured in consecutive
# windows: req/s, CPU µs per request (summed over the nodes) and the entries the nodes' anti-
# entropy rounds exchanged during each window. It shows what a round costs the requests running
# beside it: one follows the joins, and then one every --anti-entropy-interval (60 s).
#
#   bench/rounds.sh [WINDOWS] [OP]        (defaults: 16 windows of 5 s, put)
#   NODE_ARGS="--anti-entropy-interval 0s" bench/rounds.sh     (the same with rounds off)
#   BENCH_LOG=/tmp/log bench/rounds.sh; grep "anti-entropy round" /tmp/log   (each round: buckets found different, time)
#   VALUE_SIZE=2048 bench/rounds.sh 8     (PUTs of 2 KiB values rather than 100 bytes; mind the memory)
#
# At the end, the peers each node's rounds compared with and left out (`pairs.rs`).
# Nodes on CPU 1, wrk on CPU 0, as in bench/http.sh. Bounded: WINDOWS × 5 s of load.
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOWS=${1:-16}
OP=${2:-put}
. bench/lib.sh
need wrk wrk
build
P=$((26000 + RANDOM % 3000))
S=127.0.0.1:$P
start "$DKV" seed --new-cluster --listen "$S"
wait_http "http://$S/health"
NODES=()
# shellcheck disable=SC2086 # NODE_ARGS is a list of flags
for i in 1 2 3; do start "$DKV" node --listen "127.0.0.1:$((P + i))" --seed "$S" --replication 3 ${NODE_ARGS:-}; NODES+=("${PIDS[-1]}"); done
for i in 1 2 3; do wait_http "http://127.0.0.1:$((P + i))/health"; done
# Entries exchanged by the rounds each node started so far, summed.
synced() {
  local t=0 i
  for i in 1 2 3; do t=$((t + $(curl -fs "http://127.0.0.1:$((P + i))/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['requests']['repaired_by_sync'])"))); done
  echo "$t"
}
echo "window  req/s    CPU µs/req  anti-entropy entries exchanged  keys"
s0=$(synced)
for w in $(seq 1 "$WINDOWS"); do
  t0=$(cpu_ticks "${NODES[@]}")
  out=$(taskset -c 0 wrk -t2 -c64 -d5s -s "bench/wrk/kv_$OP.lua" "http://127.0.0.1:$((P + 1))")
  t1=$(cpu_ticks "${NODES[@]}")
  s1=$(synced)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  printf "%6d  %-8s %-11s %-31s %s\n" "$w" "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")" \
    "$(us_per $((t1 - t0)) "$n")" "$((s1 - s0))" "$(stat_of "http://127.0.0.1:$((P + 1))" keys)"
  s0=$s1
done
# Peers each node's rounds compared with and left out (found equal with its store unchanged
# since, or left to the lower id of the pair, which compared lately).
for i in 1 2 3; do
  curl -fs "http://127.0.0.1:$((P + i))/stats" |
    python3 -c "import json,sys; s=json.load(sys.stdin); r=s['requests']; print(f\"node {s['id']}: peers compared {r['pairs_compared']}, skipped {r['pairs_skipped']}\")"
done
