#!/usr/bin/env bash
# User-space instructions per RESP command, dkv's node against Redis, counted by callgrind: on
# this noisy VM req/s and even CPU time per request move by a tenth from one minute to the
# next, while an instruction count is the same in every run. It leaves out the kernel (three
# quarters of either server's time here, and the same for both: one read and one write per
# command) and counts instructions, not cache misses, so it compares the servers' own work.
#
#   bench/resp-instructions.sh [get|set] [PIPELINE]     (defaults: get, 1)
#   B=path bench/resp-instructions.sh                   also count that dkv build (an A/B)
#   FLOOR=1 bench/resp-instructions.sh                  also count bench/resp-floor's two servers
#
# Each server runs under `valgrind --tool=callgrind`, counting only while the load runs: after
# 20 000 keys of 100 bytes are written, 20 000 commands (`dkv bench --protocol resp -c 16`) or,
# with PIPELINE > 1, 200 000 (`redis-benchmark -c 16 -P PIPELINE`). Slow (valgrind), about a
# minute per server. Needs valgrind (apt-get install -y valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
OP=${1:-get}
PL=${2:-1}
. bench/lib.sh
need "valgrind" valgrind callgrind_control callgrind_annotate
need "redis-server redis-tools" redis-server redis-benchmark redis-cli
if [ -z "${DKV:-}" ]; then cargo build --release -q -p dkv; DKV=target/release/dkv; fi
OUT=$(mktemp -d /var/tmp/dkv-resp-instructions.XXXXXX) # kept, for callgrind_annotate
N=20000; [ "$PL" -gt 1 ] && N=200000
load() { # PORT: the keys, then the counted commands
  if [ "$PL" -gt 1 ]; then
    redis-benchmark -p "$1" -c 16 -P 16 -d 100 -r 20000 -n 40000 -t set -q >/dev/null 2>&1
  else
    "$DKV" bench --node "http://127.0.0.1:$1" --protocol resp --resp-port "$1" -c 16 --keys 20000 --load >/dev/null
  fi
  callgrind_control -i on "$2" >/dev/null 2>&1
  if [ "$PL" -gt 1 ]; then
    redis-benchmark -p "$1" -c 16 -P "$PL" -d 100 -r 20000 -n $N -t "$OP" -q >/dev/null 2>&1
  else
    "$DKV" bench --node "http://127.0.0.1:$1" --protocol resp --resp-port "$1" -c 16 --keys 20000 -n $N -d 300s \
      --read-ratio "$([ "$OP" = get ] && echo 1 || echo 0)" >/dev/null
  fi
  callgrind_control -i off "$2" >/dev/null 2>&1
  callgrind_control -d "$2" >/dev/null 2>&1
}
count() { # NAME OUT: instructions per command, once the dump is written
  local total
  total=$(callgrind_total "$2.1")
  printf '%-11s %s -P%s: %6d instructions per command (%s in all)\n' "$1" "${OP^^}" "$PL" $((total / N)) "$total"
}
P=$((23000 + RANDOM % 3000))
valgrind --tool=callgrind --callgrind-out-file="$OUT/redis" --instr-atstart=no \
  redis-server --port "$P" --save '' --appendonly no >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 600); do redis-cli -p "$P" ping >/dev/null 2>&1 && break; sleep 0.1; done
load "$P" "${PIDS[-1]}"
count redis "$OUT/redis"
i=0
for bin in "$DKV" ${B:+"$B"}; do
  i=$((i + 1))
  start "$bin" seed --new-cluster --listen 127.0.0.1:$((P + 10 * i))
  wait_http "http://127.0.0.1:$((P + 10 * i))/health"
  valgrind --tool=callgrind --callgrind-out-file="$OUT/dkv$i" --instr-atstart=no "$bin" node \
    --listen 127.0.0.1:$((P + 10 * i + 1)) --resp-listen 127.0.0.1:$((P + 10 * i + 2)) \
    --seed 127.0.0.1:$((P + 10 * i)) >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 600); do curl -fs -o /dev/null "http://127.0.0.1:$((P + 10 * i + 1))/health" && break; sleep 0.1; done
  load $((P + 10 * i + 2)) "${PIDS[-1]}"
  count "dkv$i" "$OUT/dkv$i"
done
if [ -n "${FLOOR:-}" ]; then
  CARGO_TARGET_DIR=target/bench-resp-floor cargo build --release -q --manifest-path bench/resp-floor/Cargo.toml
  for mode in mio tokio; do
    i=$((i + 1))
    valgrind --tool=callgrind --callgrind-out-file="$OUT/floor-$mode" --instr-atstart=no \
      target/bench-resp-floor/release/resp-floor "$mode" $((P + 10 * i)) >/dev/null 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 600); do redis-cli -p $((P + 10 * i)) ping >/dev/null 2>&1 && break; sleep 0.1; done
    load $((P + 10 * i)) "${PIDS[-1]}"
    count "floor-$mode" "$OUT/floor-$mode"
  done
fi
echo "callgrind files: $OUT (callgrind_annotate FILE.1 | head -40 names the heaviest functions)"
