#!/usr/bin/env bash
# Durable writes: PUT throughput of one dkv node (N=1) with --fsync always and --fsync periodic,
# next to Redis with appendfsync always and everysec, measured in one run; then the restart time
# of a node holding KEYS keys.
#
#   bench/durable.sh [DURATION] [KEYS]     (defaults: 10s, 1000000; needs wrk, redis-server)
#
# Load: 64 connections, 100-byte values, random keys over a 1M key space. dkv is driven over HTTP
# by wrk (-t2 -c64), Redis over RESP by redis-benchmark (-c64, no pipelining): two protocols and
# two load generators, so the ratio says how close dkv's durability costs come, not more.
# Servers are pinned to CPU 1, load generators to CPU 0. Data lives under a temporary directory
# on the same disk for every store.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
KEYS=${2:-1000000}
. bench/lib.sh
need "wrk redis-server redis-tools" wrk redis-server redis-benchmark
cargo build --release -q -p dkv
DKV=target/release/dkv
TMP=$(mktemp -d /var/tmp/dkv-bench-durable.XXXXXX)
P=$((21000 + RANDOM % 4000))
SEED=127.0.0.1:$P
taskset -c 1 $DKV seed --new-cluster --listen $SEED >/dev/null 2>&1 & PIDS+=($!)
wait_http http://$SEED/health
declare -A RESULT=()
RUNS=0

dkv_put() { # label, node flags...
  local label=$1; shift
  RUNS=$((RUNS + 1)); local port=$((P + RUNS))
  taskset -c 1 $DKV node --listen 127.0.0.1:$port --seed $SEED --replication 1 "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_http http://127.0.0.1:$port/health
  RESULT[$label]=$(taskset -c 0 wrk -t2 -c64 -d"$DUR" -s bench/wrk/kv_put.lua http://127.0.0.1:$port | awk '/Requests\/sec/ {print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
redis_put() { # label, appendfsync
  RUNS=$((RUNS + 1)); local label=$1 port=$((P + 50 + RUNS)) dir="$TMP/redis-$2"
  mkdir -p "$dir"
  taskset -c 1 redis-server --port $port --dir "$dir" --save '' --appendonly yes --appendfsync "$2" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.05; done
  local n=$(( ${DUR%s} * 40000 ))
  [ "$2" = always ] && n=$(( ${DUR%s} * 4000 ))
  RESULT[$label]=$(taskset -c 0 redis-benchmark -p $port -t set -c 64 -d 100 -r 1000000 -n $n -q --csv \
    | awk -F, '/SET/ {gsub(/"/, "", $2); print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "PUT throughput, $DUR each" >&2
dkv_put "dkv fsync always" --data-dir "$TMP/always" --fsync always
redis_put "redis appendfsync always" always
dkv_put "dkv fsync periodic 1s" --data-dir "$TMP/periodic" --fsync periodic --fsync-interval 1s
redis_put "redis appendfsync everysec" everysec
dkv_put "dkv memory engine"

# Restart time: load KEYS keys into a durable node, stop it (SIGTERM: a stop, not a leave), start
# it again on the same directory, time until it serves.
echo "restart with $KEYS keys" >&2
port=$((P + 90)) dir="$TMP/restart"
node() { taskset -c 1 $DKV node --listen 127.0.0.1:$port --seed $SEED --replication 1 --data-dir "$dir" >"$TMP/restart.log" 2>&1 & NODE=$!; }
node
wait_http http://127.0.0.1:$port/health
taskset -c 0 $DKV bench --load --prefix key --keys $KEYS --value-size 100 -c 32 -d 600s --node http://127.0.0.1:$port >/dev/null
stored=$(stat_of "http://127.0.0.1:$port" keys)
kill $NODE; wait $NODE 2>/dev/null || true
disk=$(du -sm "$dir" | cut -f1)
t0=$(date +%s.%N)
node
wait_http http://127.0.0.1:$port/health
t1=$(date +%s.%N)
after=$(stat_of "http://127.0.0.1:$port" keys)
kill $NODE; wait $NODE 2>/dev/null || true

python3 - "$t0" "$t1" "$stored" "$after" "$disk" <<PY
import sys
t0, t1, stored, after, disk = float(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:]
r = {$(for k in "${!RESULT[@]}"; do printf '"%s": "%s", ' "$k" "${RESULT[$k]}"; done)}
f = lambda k: float(r.get(k) or 0)
print("| store and policy | PUT req/s |")
print("|---|---|")
for k in ["dkv fsync always", "redis appendfsync always", "dkv fsync periodic 1s", "redis appendfsync everysec", "dkv memory engine"]:
    print(f"| {k} | {f(k):.0f} |")
if f("redis appendfsync always"):
    print(f"dkv always / redis always: {f('dkv fsync always') / f('redis appendfsync always'):.2f}")
if f("redis appendfsync everysec"):
    print(f"dkv periodic / redis everysec: {f('dkv fsync periodic 1s') / f('redis appendfsync everysec'):.2f}")
print(f"restart: {stored} keys ({disk} MB on disk) -> serving again after {t1 - t0:.2f} s, holding {after} keys")
PY
