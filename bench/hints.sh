#!/usr/bin/env bash
# What a replica that is down costs the coordinators that keep its hints.
#
#   bench/hints.sh [WINDOWS] [IDLE]      (default 2 load windows, 10 s idle)
#   VALUE_SIZE=8192 DKV=path bench/hints.sh
#
# Three durable nodes (N=3 W=2 R=2, `--fsync periodic`, 1 s heartbeats) and a seed whose TTL
# (300 s) keeps a killed node a member, on 127.0.0.1. Node 3 is SIGKILLed, then PUTs of
# VALUE_SIZE bytes (default 1024) go through node 1 (`wrk -t2 -c64`, 5 s per window, on CPU 0;
# the nodes on CPU 1), so node 1 keeps a hint for node 3 for each, up to its bounds (100 000
# hints or 256 MiB). Per window: req/s, p99, CPU per request of nodes 1 and 2, the hints pending
# at node 1, the size of its hints file and what node 1 wrote to disk (/proc/PID/io). Then IDLE
# seconds with no load and node 3 still down: what node 1 writes and spends meanwhile.
#
# 2026-12-05, 1 KiB values, 100 000 hints pending (107 MB): idle, node 1 wrote 775 MB in 10 s and
# spent 2.14 s of CPU, rewriting its hints file every heartbeat interval (each delivery attempt
# to the dead node counted as a change); with the hints log (`life/hint_file.rs`), 0 MB and
# 0.03 s. Every run is bounded (wrk's windows, the idle time, 30 s for the cluster to form); only
# the processes it started are killed, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
need "wrk" wrk
WINDOWS=${1:-2} IDLE=${2:-10} VS=${VALUE_SIZE:-1024} DUR=5s
if [ -z "${DKV:-}" ]; then cargo build --release -q -p dkv; DKV=target/release/dkv; fi
TMP=$(mktemp -d)
P=$((20000 + RANDOM % 10000))
"$DKV" seed --new-cluster --listen 127.0.0.1:$P --node-ttl 300s >/dev/null 2>&1 & PIDS+=($!)
for i in 1 2 3; do
  start "$DKV" node --listen 127.0.0.1:$((P + i)) --seed 127.0.0.1:$P --data-dir "$TMP/n$i" --heartbeat-interval 1s \
    --replication 3 --write-quorum 2 --read-quorum 2 --fsync periodic
done
N1=${PIDS[1]} N2=${PIDS[2]} N3=${PIDS[3]}
normal() { curl -fs "127.0.0.1:$P/nodes" | python3 -c 'import json, sys; print(sum(m["state"] == "normal" for m in json.load(sys.stdin)["nodes"]))'; }
for _ in $(seq 300); do [ "$(normal 2>/dev/null)" = 3 ] && break; sleep 0.1; done
[ "$(normal)" = 3 ] || { echo "bench: the 3 nodes did not become normal" >&2; exit 1; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
kill -9 "$N3"; wait "$N3" 2>/dev/null || true
echo "node 3 killed; PUTs of $VS bytes through node 1"
for w in $(seq "$WINDOWS"); do
  b0=$(written "$N1") c0=$(cpu_ticks "$N1" "$N2")
  read -r rps n _ p99 < <(run_wrk "http://127.0.0.1:$((P + 1))" kv_put.lua VALUE_SIZE="$VS")
  c1=$(cpu_ticks "$N1" "$N2") b1=$(written "$N1")
  hints=$(stat_of "http://127.0.0.1:$((P + 1))" hints_pending)
  file=$(cat "$TMP"/n1/hints.* 2>/dev/null | wc -c)
  echo "window $w: $rps req/s, p99 $p99 ms, $(us_per $((c1 - c0)) "$n") us of CPU per request (nodes 1 and 2)," \
    "$hints hints pending, hints file $((file / 1000000)) MB, node 1 wrote $(((b1 - b0) / 1000000)) MB"
done
b0=$(written "$N1") c0=$(cpu_ticks "$N1")
sleep "$IDLE"
b1=$(written "$N1") c1=$(cpu_ticks "$N1")
echo "idle $IDLE s, node 3 still down: node 1 wrote $(((b1 - b0) / 1000000)) MB and spent" \
  "$(awk -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }') s of CPU"
