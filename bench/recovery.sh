#!/usr/bin/env bash
# Time from a node's death (SIGKILL) to every key being back at N copies.
#
#   bench/recovery.sh [KEYS] [NODE_TTL]      (defaults: 100000 keys, 2s)
#
# 4 nodes with N=3 on 127.0.0.1 (heartbeat 200ms), KEYS keys of 100 bytes, one node killed.
# Prints: kill -> the seed removes the node (the TTL, mostly), and removal -> the sum of the
# survivors' key copies equals 3 x KEYS (anti-entropy re-replication).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-100000}
TTL=${2:-2s}
. bench/lib.sh
need wrk wrk
cargo build --release -q -p dkv
DKV=target/release/dkv
P=$((26000 + RANDOM % 3000))
"$DKV" seed --new-cluster --listen 127.0.0.1:$P --node-ttl "$TTL" >/dev/null 2>&1 & PIDS+=($!)
for i in 1 2 3 4; do
  "$DKV" node --listen 127.0.0.1:$((P+i)) --seed 127.0.0.1:$P --heartbeat-interval 200ms >/dev/null 2>&1 & PIDS+=($!)
done
members() { curl -fs "http://127.0.0.1:$P/nodes" | python3 -c 'import json,sys; print(sum(m["state"]=="normal" for m in json.load(sys.stdin)["nodes"]))'; }
copies() { local t=0; for i in "$@"; do t=$((t + $(stat_of "http://127.0.0.1:$((P+i))" keys))); done; echo $t; }
for _ in $(seq 1 200); do [ "$(members 2>/dev/null || echo 0)" = 4 ] && break; sleep 0.1; done
PRELOAD=$KEYS wrk -t1 -c32 -d600s -s bench/wrk/preload.lua "http://127.0.0.1:$((P+1))" >/dev/null & W=$!
until [ "$(copies 1 2 3 4)" -ge $((3 * KEYS)) ]; do sleep 0.5; done
kill $W; wait $W 2>/dev/null || true
for _ in $(seq 1 100); do [ "$(copies 1 2 3 4)" = $((3 * KEYS)) ] && break; sleep 0.2; done
echo "loaded: $KEYS keys, $(copies 1 2 3 4) copies on 4 nodes"
kill -9 "${PIDS[4]}"
t0=$(date +%s.%N)
until [ "$(members)" = 3 ]; do sleep 0.05; done
t1=$(date +%s.%N)
until [ "$(copies 1 2 3)" = $((3 * KEYS)) ]; do sleep 0.1; done
t2=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$KEYS" "$TTL" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:4])
print(f"killed node 4: removed by the seed after {t1 - t0:.2f}s (TTL {sys.argv[5]}),"
      f" all {sys.argv[4]} keys back at 3 copies {t2 - t1:.2f}s later ({t2 - t0:.2f}s after the kill)")
PY
