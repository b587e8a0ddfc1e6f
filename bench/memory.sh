#!/usr/bin/env bash
# Memory per key: one dkv node (memory engine, N=1) next to Redis, loaded with the same keys
# (key0..key{N-1}, 100-byte values) in the same run.
#
#   bench/memory.sh [KEYS]        (default 1000000; needs wrk, redis-server, redis-cli)
#   DKV=path bench/memory.sh      measures that dkv binary instead of building one
#
# Reports, per key: the growth of each process's resident set (VmRSS) over the load, and for
# Redis also `INFO memory` used_memory (what its allocator holds, without fragmentation).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-1000000}
. bench/lib.sh
need "redis-server redis-tools" redis-server redis-cli
if [ -z "${DKV:-}" ]; then cargo build --release -q -p dkv; DKV=target/release/dkv; fi  # DKV=path: that build
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# --- Redis
RPORT=16399
redis-server --port $RPORT --save '' --appendonly no >/dev/null 2>&1 & PIDS+=($!); RPID=$!
for _ in $(seq 1 100); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.05; done
r_used0=$(redis-cli -p $RPORT info memory | awk -F: '/^used_memory:/ {print $2+0}')
r_rss0=$(rss_kb $RPID)
python3 - "$KEYS" <<'PY' | redis-cli -p $RPORT --pipe >/dev/null
import sys
n, v = int(sys.argv[1]), b"v" * 100
out = sys.stdout.buffer
for i in range(n):
    k = b"key%d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(k), k, v))
PY
r_keys=$(redis-cli -p $RPORT dbsize)
r_used1=$(redis-cli -p $RPORT info memory | awk -F: '/^used_memory:/ {print $2+0}')
r_rss1=$(rss_kb $RPID)

# --- dkv, one node, memory engine
SPORT=19390; NPORT=19391
$DKV seed --new-cluster --listen 127.0.0.1:$SPORT >/dev/null 2>&1 & PIDS+=($!)
wait_http http://127.0.0.1:$SPORT/health
$DKV node --listen 127.0.0.1:$NPORT --seed 127.0.0.1:$SPORT --replication 1 >/dev/null 2>&1 & PIDS+=($!); NPID=$!
wait_http http://127.0.0.1:$NPORT/health
d_rss0=$(rss_kb $NPID)
$DKV bench --load --prefix key --keys $KEYS --value-size 100 -c 32 -d 600s --node http://127.0.0.1:$NPORT >/dev/null
d_keys=$(stat_of "http://127.0.0.1:$NPORT" keys)
d_rss1=$(rss_kb $NPID)

python3 - <<PY
keys = $KEYS
r_rss = ($r_rss1 - $r_rss0) * 1024 / keys
r_used = ($r_used1 - $r_used0) / keys
d_rss = ($d_rss1 - $d_rss0) * 1024 / keys
print(f"{keys} keys of 100 B (key0..key{keys-1}); Redis holds $r_keys, dkv holds $d_keys")
print(f"| store | bytes per key (RSS growth) | bytes per key (allocator) |")
print(f"|---|---|---|")
print(f"| Redis 7 | {r_rss:.0f} | {r_used:.0f} (used_memory) |")
print(f"| dkv, 1 node, memory engine | {d_rss:.0f} | |")
print(f"dkv / Redis (RSS growth): {d_rss / r_rss:.2f}x")
PY
