#!/usr/bin/env bash
# RESP on one node against Redis, like for like: both start empty and hold the same 100 000 keys
# (redis-benchmark's -r 100000 space, written by a pipelined SET first), so neither looks keys up
# in a larger store than the other. Optionally a second dkv build beside the first.
#
#   bench/resp.sh [REQUESTS] [ROUNDS]      (defaults: 200000 per unpipelined run, 3 rounds)
#   B=path bench/resp.sh                   also measure that dkv build (an A/B of two builds)
#   FLOOR=1 bench/resp.sh                  also measure bench/resp-floor, a RESP server that does
#                                          nothing but parse, look up and answer, on its own epoll
#                                          loop (floor-mio; floor-mio-deferred writes the replies
#                                          after every ready connection was read, as Redis does)
#                                          and on Tokio (floor-tokio): the least a command can
#                                          cost here
#
# redis-benchmark -c64 -d100 -r100000, -P1 and -P16 (16 x REQUESTS), GET and SET; servers on
# CPU 1, redis-benchmark on CPU 0; every round measures each server once, in turn, again while
# the host takes more than 3% of this VM's CPU time (`steady` in bench/lib.sh). Prints the
# medians of req/s and of the servers' CPU per request (/proc/PID/stat), and the ratios to Redis.
# Without pipelining, redis-benchmark itself uses all of CPU 0 (measured: 4.38 s of CPU in a
# 4.47 s run), so the -P1 rows are bounded by the load generator: CPU per request is the figure
# that tells the servers apart there. The rows "-P1 dkv-bench" load the servers with
# `dkv bench --protocol resp` instead (REQUESTS GETs or SETs over its own 100 000 keys, written
# first to every server), which costs less per request: with it the servers, not the load
# generator, bound req/s (docs/performance-log.md, "Figures of 2026-12-03 midday").
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
ROUNDS=${2:-3}
. bench/lib.sh
need "redis-server redis-tools" redis-server redis-benchmark redis-cli
if [ -z "${DKV:-}" ]; then cargo build --release -q -p dkv; DKV=target/release/dkv; fi
P=$((22000 + RANDOM % 3000))
start redis-server --port $((P + 1)) --save '' --appendonly no
SERVERS=(redis) PORTS=($((P + 1))) SPIDS=("${PIDS[-1]}")
i=0
for bin in "$DKV" ${B:+"$B"}; do
  i=$((i + 1))
  start "$bin" seed --listen 127.0.0.1:$((P + 10 * i))
  wait_http "http://127.0.0.1:$((P + 10 * i))/health"
  start "$bin" node --listen 127.0.0.1:$((P + 10 * i + 1)) --resp-listen 127.0.0.1:$((P + 10 * i + 2)) \
    --seed 127.0.0.1:$((P + 10 * i))
  wait_http "http://127.0.0.1:$((P + 10 * i + 1))/health"
  SERVERS+=("dkv$i") PORTS+=($((P + 10 * i + 2))) SPIDS+=("${PIDS[-1]}")
done
if [ -n "${FLOOR:-}" ]; then
  CARGO_TARGET_DIR=target/bench-resp-floor cargo build --release -q --manifest-path bench/resp-floor/Cargo.toml
  for mode in mio mio-deferred tokio; do
    i=$((i + 1))
    start target/bench-resp-floor/release/resp-floor "$mode" $((P + 10 * i))
    SERVERS+=("floor-$mode") PORTS+=($((P + 10 * i))) SPIDS+=("${PIDS[-1]}")
  done
fi
for port in "${PORTS[@]}"; do
  for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
dkv_bench() {
  taskset -c 0 "$DKV" bench --node "http://127.0.0.1:$1" --protocol resp --resp-port "$1" -c 64 --keys 100000 "${@:2}"
}
redis_benchmark() { # server-index get|set pipeline requests
  local c out rps
  c=$(cpu_ticks "${SPIDS[$1]}")
  out=$(taskset -c 0 redis-benchmark -p "${PORTS[$1]}" -c 64 -P "$3" -d 100 -r 100000 -n "$4" -t "$2" -q --csv 2>/dev/null)
  c=$(($(cpu_ticks "${SPIDS[$1]}") - c))
  rps=$(awk -F, -v t="\"${2^^}\"" '$1 == t {gsub(/"/, "", $2); print $2}' <<<"$out")
  record "$2 -P$3|${SERVERS[$1]}" "$rps" "$(us_per "$c" "$4")"
}
with_dkv_bench() { # server-index get|set
  local c out rps
  c=$(cpu_ticks "${SPIDS[$1]}")
  out=$(dkv_bench "${PORTS[$1]}" -n "$N" -d 60s --read-ratio "$([ "$2" = get ] && echo 1 || echo 0)")
  c=$(($(cpu_ticks "${SPIDS[$1]}") - c))
  rps=$(awk '$1 == "throughput" {print $2}' <<<"$out")
  record "$2 -P1 dkv-bench|${SERVERS[$1]}" "$rps" "$(us_per "$c" "$N")"
}
for port in "${PORTS[@]}"; do
  taskset -c 0 redis-benchmark -p "$port" -c 64 -P 16 -d 100 -r 100000 -n 400000 -t set -q >/dev/null 2>&1
  dkv_bench "$port" --load >/dev/null
done
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  for pl in 1 16; do
    n=$N; [ $pl = 16 ] && n=$((N * 16))
    for t in get set; do
      for s in "${!SERVERS[@]}"; do steady redis_benchmark "$s" "$t" "$pl" "$n"; done
    done
  done
  for t in get set; do
    for s in "${!SERVERS[@]}"; do steady with_dkv_bench "$s" "$t"; done
  done
done
summarize <<'PY'
works = sorted({l.split("|")[0] for l in runs}, key=lambda w: (int(w.split("-P")[1].split()[0]), w))
servers = [s for s in ("redis", "dkv1", "dkv2", "floor-mio", "floor-mio-deferred", "floor-tokio") if any(l.endswith("|" + s) for l in runs)]
print("medians of each server's rounds; in brackets the server's CPU per request")
for w in works:
    redis = med(f"{w}|redis")
    cells = [f"redis {fmt(redis):>7} ({fmt(med(f'{w}|redis', 1), '.2f')} µs)"]
    for s in servers[1:]:
        rps = med(f"{w}|{s}")
        cells.append(f"{s} {fmt(rps):>7} ({fmt(med(f'{w}|{s}', 1), '.2f')} µs) {fmt(rps / redis, '.2f')}x Redis")
    print(f"{w:18} " + "   ".join(cells))
PY
