#!/usr/bin/env bash
# HTTP throughput of dkv next to the bare axum reference server, measured in one run.
#
#   bench/http.sh [DURATION] [ROUNDS]      (defaults: 5s per measurement, 3 rounds)
#
# All servers run at once (pinned to CPU 1; wrk on CPU 0), and every round measures each
# configuration once, in turn (the reference and dkv in alternating order), so slow drift of this
# shared machine hits all of them alike.
# The table shows the median over the rounds; ratios are of medians. Workload: wrk -t2 -c64,
# 100-byte values, GET over 100k preloaded keys, PUT over a 1M key space.
#   reference kv (axum + DashMap)             GET, PUT
#   reference proxy -> reference kv           GET        (the cost of one bare extra hop)
#   dkv, 1 node                               GET, PUT
#   dkv, 2 nodes N=1, all requests to node A  GET, PUT   (about half are forwarded to B)
#   dkv, 3 nodes N=3 W=2 R=2, requests to A   GET, PUT   (every request touches 2-3 replicas)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5s}
ROUNDS=${2:-3}
. bench/lib.sh
need wrk wrk

cargo build --release -q -p dkv
CARGO_TARGET_DIR=target/bench-reference cargo build --release -q --manifest-path bench/reference/Cargo.toml
DKV=target/release/dkv
REF=target/bench-reference/release/reference

preload() { PRELOAD=100000 taskset -c 0 wrk -t1 -c32 -d"$1" -s bench/wrk/preload.lua "$2" >/dev/null; }
RESULTS=$(mktemp)
measure() { # label url script
  local out rps p50 p99
  out=$(taskset -c 0 wrk -t2 -c64 -d"$DUR" --latency -s "bench/wrk/$3" "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "bench: $1: $(grep -E 'Non-2xx|Socket errors' <<<"$out")" >&2; fi
  printf '%s\t%s\t%s\t%s\n' "$1" "$rps" "$p50" "$p99" >> "$RESULTS"
}

P=$((20000 + RANDOM % 5000))
REFKV=http://127.0.0.1:$P PROXY=http://127.0.0.1:$((P+1))
S=127.0.0.1:$((P+10)) ONE=http://127.0.0.1:$((P+11))
S2=127.0.0.1:$((P+20)) A=http://127.0.0.1:$((P+21)) B=127.0.0.1:$((P+22))
S3=127.0.0.1:$((P+30)) R1=http://127.0.0.1:$((P+31)) R2=127.0.0.1:$((P+32)) R3=127.0.0.1:$((P+33))
start "$REF" kv $P 100000
start "$REF" proxy $((P+1)) 127.0.0.1:$P
for s in "$S" "$S2" "$S3"; do start "$DKV" seed --listen "$s"; done
wait_http "$REFKV/get?key=key1"; for s in "$S" "$S2" "$S3"; do wait_http "http://$s/health"; done
start "$DKV" node --listen "${ONE#http://}" --seed "$S"
start "$DKV" node --listen "${A#http://}" --seed "$S2" --replication 1
start "$DKV" node --listen "${R1#http://}" --seed "$S3" --replication 3
wait_http "$ONE/health"; wait_http "$A/health"; wait_http "$R1/health"
start "$DKV" node --listen "$B" --seed "$S2" --replication 1
start "$DKV" node --listen "$R2" --seed "$S3" --replication 3
start "$DKV" node --listen "$R3" --seed "$S3" --replication 3
for u in "http://$B" "http://$R2" "http://$R3"; do wait_http "$u/health"; done
preload 6s "$ONE"; preload 12s "$A"; preload 20s "$R1"
for url in "$ONE" "$A" "$R1"; do
  k=$(stat_of "$url" keys); [ "$url" = "$A" ] && k=$((k + $(stat_of "http://$B" keys)))
  [ "$k" -ge 100000 ] || { echo "bench: preload of $url stored only $k keys" >&2; exit 1; }
done
before=$(curl -fs "$A/stats")
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  # Whichever runs first in a pair measured a little faster here; alternate the order.
  pair() { if [ $((r % 2)) = 1 ]; then measure "$1" "$2" "$5"; measure "$3" "$4" "$5"; else measure "$3" "$4" "$5"; measure "$1" "$2" "$5"; fi; }
  pair "reference kv GET" "$REFKV" "dkv 1 node GET" "$ONE" kv_get.lua
  pair "reference kv PUT" "$REFKV" "dkv 1 node PUT" "$ONE" kv_put.lua
  measure "reference proxy -> kv GET" "$PROXY" kv_get.lua
  measure "dkv 2 nodes via A GET" "$A" kv_get.lua
  measure "dkv 2 nodes via A PUT" "$A" kv_put.lua
  measure "dkv 3 nodes N=3 GET" "$R1" kv_get.lua
  measure "dkv 3 nodes N=3 PUT" "$R1" kv_put.lua
done
after=$(curl -fs "$A/stats")
python3 - "$RESULTS" "$before" "$after" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, rps, p50, p99 = line.rstrip("\n").split("\t")
    rows.setdefault(label, []).append((float(rps), p50, p99))
med = {}
print(f"{'configuration':<28} {'median req/s':>13}  {'rounds':<30} p50 / p99 (median round)")
for label, runs in rows.items():
    runs.sort()
    m = runs[len(runs) // 2]
    med[label] = statistics.median(r[0] for r in runs)
    print(f"{label:<28} {med[label]:>13.0f}  {' '.join(f'{r[0]:.0f}' for r in runs):<30} {m[1]} / {m[2]}")
b, a = (json.loads(x)["requests"] for x in sys.argv[2:4])
reqs = (a["gets"] - b["gets"]) + (a["puts"] - b["puts"])
fwd = a["forwarded"] - b["forwarded"]
print(f"node A forwarded {fwd} of {reqs} requests ({100 * fwd / max(reqs, 1):.0f}%) to node B")
print("ratios of medians:")
for x, y in [("dkv 1 node GET", "reference kv GET"), ("dkv 1 node PUT", "reference kv PUT"),
             ("dkv 2 nodes via A GET", "dkv 1 node GET"), ("dkv 2 nodes via A PUT", "dkv 1 node PUT"),
             ("dkv 3 nodes N=3 GET", "dkv 1 node GET"), ("dkv 3 nodes N=3 PUT", "dkv 1 node PUT"),
             ("reference proxy -> kv GET", "reference kv GET")]:
    print(f"  {x} / {y}: {med[x] / med[y]:.2f}")
PY
rm -f "$RESULTS"
