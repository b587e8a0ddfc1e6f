#!/usr/bin/env bash
# dkv next to Redis, etcd and the bare axum reference server, the same workloads in one run.
#
#   bench/compare.sh [DURATION] [REQUESTS] [ROUNDS]
#     (defaults: 5s per wrk run, 200000 per redis-benchmark run, 3 rounds)
#
# Needs: wrk, redis-server + redis-benchmark (redis-server, redis-tools), etcd (etcd-server):
#   apt-get install -y wrk redis-server redis-tools etcd-server
#
# Servers are pinned to CPU 1 and load generators to CPU 0 (2-core machine); only the ratios
# within one run mean anything. 100-byte values; GETs read keys that exist (etcd's excepted:
# its GETs pick random keys of which its PUT run wrote a part). Every round runs every workload
# once on every server, the servers a row compares back to back and in reverse order every
# other round; the table gives the medians, and each ratio is the median of the rounds' own. A
# measurement during which the host took more than 3% of this VM's CPU time is taken again
# (`steady` in bench/lib.sh; STEAL_MAX, STEAL_TRIES).
#   HTTP (wrk -t2 -c64):     reference kv, dkv 1 node (N=1), dkv 3 nodes (N=3 W=2 R=2) via one
#                            node, etcd's JSON gateway (put / range)
#   RESP (redis-benchmark -c64 -t get,set, -P1 and -P16): Redis, dkv 1 node, dkv 3 nodes N=3
#                            via one node (dkv's --resp-listen)
# The table gives requests/s and the ratios the project's targets (issue 9) are stated in, and
# beside them the CPU time per request of each side's server processes (utime + stime from
# /proc/PID/stat over the run; dkv's seeds not counted): steadier than req/s on a shared machine,
# and what tells two stores apart when the load generator, not the store, is the limit (as
# redis-benchmark is without pipelining).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5s}
NREQ=${2:-200000}
ROUNDS=${3:-3}
. bench/lib.sh
need "wrk redis-server redis-tools etcd-server" wrk redis-server redis-benchmark etcd
build
TMP=$(mktemp -d /var/tmp/dkv-compare.XXXXXX)
wait_redis() { for _ in $(seq 1 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "bench: RESP :$1 did not come up" >&2; exit 1; }
# shellcheck disable=SC2086  # $2 is a list of PIDs, split on purpose
wrk_rps() { steady wrk_once "$@"; }
wrk_once() { # label "server PIDs" url script [VAR=V...]
  local label=$1 pids=$2 out rps n t; shift 2
  t=$(cpu_ticks $pids)
  out=$(run_wrk "$@")
  t=$(($(cpu_ticks $pids) - t))
  read -r rps n _ <<<"$out"
  record "$label" "$rps" "$(us_per "$t" "$n")"
}
# shellcheck disable=SC2086
rb_rps() { steady rb_once "$@"; }
rb_once() { # label "server PIDs" port pipeline requests test
  local out t
  t=$(cpu_ticks $2)
  out=$(taskset -c 0 redis-benchmark -p "$3" -c 64 -P "$4" -d 100 -r 100000 -n "$5" -t "$6" -q --csv 2>/dev/null)
  t=$(($(cpu_ticks $2) - t))
  record "$1" "$(awk -F, -v t="\"${6^^}\"" '$1 == t {gsub(/"/, "", $2); print $2}' <<<"$out")" "$(us_per "$t" "$5")"
}

P=$((22000 + RANDOM % 3000))
# Redis (no persistence), etcd (its own data dir), the reference server.
# The PIDs of each store's servers (start records the last one in PIDS), for their CPU time.
start redis-server --port $((P + 1)) --save '' --appendonly no; REDIS_PID=${PIDS[-1]}
start etcd --data-dir "$TMP/etcd" --listen-client-urls http://127.0.0.1:$((P + 2)) \
  --advertise-client-urls http://127.0.0.1:$((P + 2)) --listen-peer-urls http://127.0.0.1:$((P + 3))
ETCD_PID=${PIDS[-1]}
start "$REF" kv $((P + 4)) 100000; REF_PID=${PIDS[-1]}
# dkv: one node with N=1, and three nodes with N=3 W=2 R=2, each with RESP.
start "$DKV" seed --new-cluster --listen 127.0.0.1:$((P + 10))
start "$DKV" seed --new-cluster --listen 127.0.0.1:$((P + 20))
wait_http http://127.0.0.1:$((P + 10))/health; wait_http http://127.0.0.1:$((P + 20))/health
start "$DKV" node --listen 127.0.0.1:$((P + 11)) --seed 127.0.0.1:$((P + 10)) --replication 1 --resp-listen 127.0.0.1:$((P + 12))
ONE_PID=${PIDS[-1]} THREE_PIDS=""
for i in 0 1 2; do
  start "$DKV" node --listen 127.0.0.1:$((P + 21 + 2 * i)) --seed 127.0.0.1:$((P + 20)) --replication 3 \
    --resp-listen 127.0.0.1:$((P + 22 + 2 * i))
  THREE_PIDS="$THREE_PIDS ${PIDS[-1]}"
  wait_http http://127.0.0.1:$((P + 21 + 2 * i))/health
done
wait_http http://127.0.0.1:$((P + 11))/health; wait_http http://127.0.0.1:$((P + 4))/get?key=key1
wait_redis $((P + 1)); wait_http http://127.0.0.1:$((P + 2))/health
ONE=http://127.0.0.1:$((P + 11)) THREE=http://127.0.0.1:$((P + 21)) ETCD=http://127.0.0.1:$((P + 2))

# Every store's GETs find their keys: dkv gets key0..key99999 written once (the reference server
# preloads the same); RESP runs start with the pipelined SET, which covers redis-benchmark's
# whole key space (-r 100000) before anything reads it.
for url in $ONE $THREE; do
  taskset -c 0 "$DKV" bench --load --prefix key --keys 100000 --value-size 100 -c 32 -d 600s --node "$url" >/dev/null
done

# Redis is topped up to as many keys as the one-node dkv holds before each RESP block (the HTTP
# rows' PUTs over a 1M key space land in that node too), so neither looks its keys up in a
# larger store than the other: with 100 000 keys in Redis against several hundred thousand in
# dkv, the pipelined GET measured 0.51x where stores of the same size gave 0.68x (2026-12-01).
FILLED=0
match_redis() {
  local want have
  want=$(stat_of "$ONE" keys) have=$(redis-cli -p $((P + 1)) dbsize)
  [ "$want" -gt "$have" ] || return 0
  python3 - "$FILLED" $((want - have)) <<'PY' | redis-cli -p $((P + 1)) --pipe >/dev/null
import sys
start, n = int(sys.argv[1]), int(sys.argv[2])
v, out = b"v" * 100, sys.stdout.buffer
for i in range(start, start + n):
    k = b"fill:%d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(k), k, v))
PY
  FILLED=$((FILLED + want - have))
  echo "  Redis topped up to $want keys, as many as the one-node dkv holds" >&2
}

# Each workload is measured on the servers it compares back to back, in reverse order every other
# round (whichever goes first in a row measured a little faster here), and a ratio is the median
# of each round's own (`paired` in bench/lib.py): the host's speed drifts over the minutes a
# round takes, so a row measured far apart compares two hosts.
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS: HTTP ($DUR each)" >&2
  for op in PUT GET; do
    script=kv_${op,,}.lua
    servers=("reference|$REF_PID|http://127.0.0.1:$((P + 4))" "dkv 1 node HTTP|$ONE_PID|$ONE"
      "dkv 3 nodes HTTP|$THREE_PIDS|$THREE")
    [ $((r % 2)) = 1 ] || servers=("${servers[2]}" "${servers[1]}" "${servers[0]}")
    for server in "${servers[@]}"; do
      IFS='|' read -r name pids url <<<"$server"
      wrk_rps "$name $op" "$pids" "$url" "$script"
    done
  done
  wrk_rps "etcd PUT" "$ETCD_PID" $ETCD etcd.lua ETCD_OP=put
  wrk_rps "etcd GET" "$ETCD_PID" $ETCD etcd.lua ETCD_OP=range

  echo "round $r/$ROUNDS: RESP ($NREQ requests each, 16 x as many pipelined)" >&2
  match_redis
  stores=("redis:$((P + 1)):$REDIS_PID" "dkv 1 node:$((P + 12)):$ONE_PID" "dkv 3 nodes:$((P + 22)):$THREE_PIDS")
  [ $((r % 2)) = 1 ] || stores=("${stores[2]}" "${stores[1]}" "${stores[0]}")
  # The pipelined SET first: it covers redis-benchmark's whole key space before anything reads it.
  for workload in "SET P16:16:set" "SET:1:set" "GET:1:get" "GET P16:16:get"; do
    IFS=: read -r what pipeline test <<<"$workload"
    for store in "${stores[@]}"; do
      IFS=: read -r name port pids <<<"$store"
      rb_rps "$name $what" "$pids" "$port" "$pipeline" $((NREQ * pipeline)) "$test"
    done
  done
done

summarize <<'PY'
rows = [
    ("HTTP GET", "dkv 1 node HTTP GET", "reference GET", ">= 0.95"),
    ("HTTP PUT", "dkv 1 node HTTP PUT", "reference PUT", ">= 0.95"),
    ("HTTP GET, 3 nodes N=3", "dkv 3 nodes HTTP GET", "dkv 1 node HTTP GET", ">= 0.5"),
    ("HTTP PUT, 3 nodes N=3", "dkv 3 nodes HTTP PUT", "dkv 1 node HTTP PUT", ">= 0.5"),
    ("HTTP GET vs etcd", "dkv 1 node HTTP GET", "etcd GET", None),
    ("HTTP PUT vs etcd", "dkv 1 node HTTP PUT", "etcd PUT", None),
    ("RESP GET, 1 node", "dkv 1 node GET", "redis GET", ">= 1.1"),
    ("RESP SET, 1 node", "dkv 1 node SET", "redis SET", ">= 1.1"),
    ("RESP GET -P16, 1 node", "dkv 1 node GET P16", "redis GET P16", ">= 0.6"),
    ("RESP SET -P16, 1 node", "dkv 1 node SET P16", "redis SET P16", ">= 0.6"),
    ("RESP GET, 3 nodes N=3", "dkv 3 nodes GET", "dkv 1 node GET", ">= 0.5"),
    ("RESP SET, 3 nodes N=3", "dkv 3 nodes SET", "dkv 1 node SET", ">= 0.5"),
    ("RESP GET -P16, 3 nodes N=3", "dkv 3 nodes GET P16", "dkv 1 node GET P16", None),
    ("RESP SET -P16, 3 nodes N=3", "dkv 3 nodes SET P16", "dkv 1 node SET P16", None),
]
print(f"medians of {len(runs['redis GET'])} rounds; ratios are medians of each round's own; Redis held as many keys as the one-node dkv")
print("CPU: µs of server CPU time per request, dkv's / the other side's (their ratio: below 1, dkv spends less)")
print("| workload | dkv req/s | compared with | req/s | ratio | target | CPU µs | CPU ratio |")
print("|---|---|---|---|---|---|---|---|")
for name, a, b, target in rows:
    x, y, r = med(a), med(b), paired(a, b)
    ratio = fmt(r, ".2f") if r is not None else "n/a"
    verdict = f"{target}: {meets(r, target)}" if r is not None and target else target or ""
    cx, cy, cr = med(a, 1), med(b, 1), paired(a, b, 1)
    cpu = f"{fmt(cx, '.1f')} / {fmt(cy, '.1f')}"
    cpu_ratio = fmt(cr, ".2f") if cr is not None else "n/a"
    print(f"| {name} | {fmt(x)} | {b} | {fmt(y)} | {ratio} | {verdict} | {cpu} | {cpu_ratio} |")
print()
print("each round (req/s; CPU µs per request):")
for label in runs:
    print(f"  {label:<24} {rounds(label):<26} {rounds(label, 1, '.1f')}")
PY
