#!/usr/bin/env bash
# User-space instructions per HTTP request, dkv's node against the bare axum reference server
# (`bench/reference`), counted by callgrind. The HTTP twin of `resp-instructions.sh`: req/s and
# CPU time move by a tenth from one minute to the next on this VM, an instruction count does not.
# It leaves out the kernel (two thirds of either server's time, one read and one write per
# request for both) and cache misses, so it compares the servers' own work.
#
#   bench/http-instructions.sh [get|put]      (default: put)
#   B=path bench/http-instructions.sh         also count that dkv build (an A/B)
#
# Each server runs under `valgrind --tool=callgrind`, counting only while the load runs: after
# 100 000 keys of 100 bytes are written, 20 000 requests from `dkv bench -c 16` (keys over a
# million for PUT, as `wrk/kv_put.lua` picks them; over the 100 000 written for GET). Slow
# (valgrind), about a minute per server. Needs valgrind (apt-get install -y valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
OP=${1:-put}
. bench/lib.sh
need "valgrind" valgrind callgrind_control callgrind_annotate
build
OUT=$(mktemp -d /var/tmp/dkv-http-instructions.XXXXXX) # kept, for callgrind_annotate
N=20000
load() { # URL PID: the keys, then the counted requests
  "$DKV" bench --node "$1" -c 16 --keys 100000 --prefix key --load >/dev/null
  callgrind_control -i on "$2" >/dev/null 2>&1
  local keys=100000 ratio=1
  [ "$OP" = put ] && keys=1000000 ratio=0
  "$DKV" bench --node "$1" -c 16 --keys $keys --prefix key -n $N -d 300s --read-ratio $ratio >/dev/null
  callgrind_control -i off "$2" >/dev/null 2>&1
  callgrind_control -d "$2" >/dev/null 2>&1
}
count() { # NAME OUT: instructions per request, once the dump is written
  local total
  total=$(callgrind_total "$2.1")
  printf '%-10s %s: %6d instructions per request (%s in all)\n' "$1" "${OP^^}" $((total / N)) "$total"
}
P=$((26000 + RANDOM % 3000))
valgrind --tool=callgrind --callgrind-out-file="$OUT/reference" --instr-atstart=no "$REF" kv "$P" 0 >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$P/get?key=x" && break; sleep 0.1; done
load "http://127.0.0.1:$P" "${PIDS[-1]}"
count reference "$OUT/reference"
i=0
for bin in "$DKV" ${B:+"$B"}; do
  i=$((i + 1))
  start "$bin" seed --new-cluster --listen 127.0.0.1:$((P + 10 * i))
  wait_http "http://127.0.0.1:$((P + 10 * i))/health"
  valgrind --tool=callgrind --callgrind-out-file="$OUT/dkv$i" --instr-atstart=no "$bin" node \
    --listen 127.0.0.1:$((P + 10 * i + 1)) --seed 127.0.0.1:$((P + 10 * i)) >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 600); do curl -fs -o /dev/null "http://127.0.0.1:$((P + 10 * i + 1))/health" && break; sleep 0.1; done
  load "http://127.0.0.1:$((P + 10 * i + 1))" "${PIDS[-1]}"
  count "dkv$i" "$OUT/dkv$i"
done
echo "callgrind files: $OUT (callgrind_annotate FILE.1 | head -40 names the heaviest functions)"
