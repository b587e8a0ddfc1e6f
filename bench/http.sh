#!/usr/bin/env bash
# HTTP throughput of dkv next to the bare axum reference server, measured in one run.
#
#   bench/http.sh [DURATION]        (default 10s per measurement)
#
# Measures, with wrk -t2 -c64 and 100-byte values over 100k preloaded keys:
#   reference kv (axum + DashMap)             GET, PUT
#   reference kv behind reference proxy       GET        (the cost of one bare extra hop)
#   dkv, 1 node                               GET, PUT
#   dkv, 2 nodes, all requests to node A      GET, PUT   (about half are forwarded to B)
# Servers are pinned to CPU 1 and wrk to CPU 0 (2-core machine) to reduce the spread.
# Only ratios within one run mean anything: the machine is shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
command -v wrk >/dev/null || { echo "bench: wrk is missing: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q -p dkv
CARGO_TARGET_DIR=target/bench-reference cargo build --release -q --manifest-path bench/reference/Cargo.toml
DKV=target/release/dkv
REF=target/bench-reference/release/reference

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_http() { # url
  for _ in $(seq 1 200); do curl -fs -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "bench: $1 did not come up" >&2; exit 1
}
start() { taskset -c 1 "$@" >/dev/null 2>&1 & PIDS+=($!); }
measure() { # label url script -> prints "label req/s p50 p99"
  local out
  out=$(taskset -c 0 wrk -t2 -c64 -d"$DUR" --latency -s "bench/wrk/$3" "$2")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local errs; errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  printf '%-44s %10s req/s  p50 %-8s p99 %-8s %s\n' "$1" "$rps" "$p50" "$p99" "$errs"
  echo "$1=$rps" >> "$RESULTS"
}
preload() { # url
  PRELOAD=100000 taskset -c 0 wrk -t1 -c32 -d6s -s bench/wrk/preload.lua "$1" >/dev/null
}
RESULTS=$(mktemp)

P=$((20000 + RANDOM % 5000))
start "$REF" kv $P 100000; wait_http "http://127.0.0.1:$P/get?key=key1"
start "$REF" proxy $((P+1)) 127.0.0.1:$P; sleep 0.2
measure "reference kv GET" "http://127.0.0.1:$P" kv_get.lua
measure "reference kv PUT" "http://127.0.0.1:$P" kv_put.lua
measure "reference proxy -> kv GET" "http://127.0.0.1:$((P+1))" kv_get.lua
cleanup; PIDS=()

S=$((P+10)); A=$((P+11)); B=$((P+12))
start "$DKV" seed --listen 127.0.0.1:$S
wait_http "http://127.0.0.1:$S/health"
start "$DKV" node --listen 127.0.0.1:$A --seed 127.0.0.1:$S
wait_http "http://127.0.0.1:$A/health"
preload "http://127.0.0.1:$A"
keys=$(curl -fs "http://127.0.0.1:$A/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"])')
[ "$keys" -ge 100000 ] || { echo "bench: preload stored only $keys keys" >&2; exit 1; }
measure "dkv 1 node GET" "http://127.0.0.1:$A" kv_get.lua
measure "dkv 1 node PUT" "http://127.0.0.1:$A" kv_put.lua

start "$DKV" node --listen 127.0.0.1:$B --seed 127.0.0.1:$S
wait_http "http://127.0.0.1:$B/health"
before=$(curl -fs "http://127.0.0.1:$A/stats")
measure "dkv 2 nodes via A GET (part forwarded)" "http://127.0.0.1:$A" kv_get.lua
measure "dkv 2 nodes via A PUT (part forwarded)" "http://127.0.0.1:$A" kv_put.lua
after=$(curl -fs "http://127.0.0.1:$A/stats")
python3 - "$before" "$after" <<'PY'
import json, sys
b, a = (json.loads(x)["requests"] for x in sys.argv[1:3])
reqs = (a["gets"] - b["gets"]) + (a["puts"] - b["puts"])
fwd = a["forwarded"] - b["forwarded"]
print(f"  forwarded by node A: {fwd} of {reqs} requests ({100 * fwd / max(reqs, 1):.0f}%)")
PY

echo
echo "ratios (same run):"
python3 - "$RESULTS" <<'PY'
import sys
r = dict(l.strip().split("=") for l in open(sys.argv[1]) if "=" in l)
r = {k: float(v) for k, v in r.items()}
def ratio(a, b):
    if a in r and b in r:
        print(f"  {a} / {b}: {r[a] / r[b]:.2f}")
ratio("dkv 1 node GET", "reference kv GET")
ratio("dkv 1 node PUT", "reference kv PUT")
ratio("dkv 2 nodes via A GET (part forwarded)", "dkv 1 node GET")
ratio("reference proxy -> kv GET", "reference kv GET")
PY
rm -f "$RESULTS"
