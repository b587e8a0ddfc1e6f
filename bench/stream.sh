#!/usr/bin/env bash
# Streaming rate of data movement: a node joins a one-node cluster holding KEYS keys of SIZE
# bytes (N=1, so it pulls about half of them), then leaves again (hands them all back).
#
#   bench/stream.sh [KEYS] [SIZE]     (defaults: 200000 keys of 1024 bytes; needs wrk)
#
# Join: from the newcomer's start to the moment it serves (pull done, seed told); bytes: what it
# then holds. Leave: from SIGTERM to its exit (hand-off done); bytes: what it held.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-200000}
SIZE=${2:-1024}
. bench/lib.sh
# DKV=path bench/stream.sh uses that binary (to compare two builds) and builds none.
if [ -z "${DKV:-}" ]; then cargo build --release -q -p dkv; DKV=target/release/dkv; fi
P=$((23000 + RANDOM % 3000))
SEED=127.0.0.1:$P A=127.0.0.1:$((P + 1)) B=127.0.0.1:$((P + 2))
FLAGS=(--seed $SEED --replication 1 --heartbeat-interval 200ms --max-value-size 1MiB)
$DKV seed --new-cluster --listen $SEED >/dev/null 2>&1 & PIDS+=($!)
wait_http http://$SEED/health
$DKV node --listen $A "${FLAGS[@]}" >/dev/null 2>&1 & PIDS+=($!)
wait_http http://$A/health
$DKV bench --load --prefix key --keys $KEYS --value-size $SIZE -c 32 -d 600s --node http://$A >/dev/null

t0=$(date +%s.%N)
$DKV node --listen $B "${FLAGS[@]}" >/dev/null 2>&1 & NB=$!; PIDS+=($NB)
wait_http http://$B/health
t1=$(date +%s.%N)
bytes=$(stat_of http://$B bytes) keys=$(stat_of http://$B keys)

t2=$(date +%s.%N)
kill -TERM $NB; wait $NB || true
t3=$(date +%s.%N)
python3 - <<PY
join, leave, b = $t1 - $t0, $t3 - $t2, $bytes
print(f"join:  {$keys} keys, {b / 1e6:.0f} MB pulled in {join:.2f} s = {b / 1e6 / join:.0f} MB/s (from process start to serving)")
print(f"leave: {$keys} keys, {b / 1e6:.0f} MB handed off in {leave:.2f} s = {b / 1e6 / leave:.0f} MB/s (from SIGTERM to exit)")
PY
