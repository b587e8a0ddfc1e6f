#!/usr/bin/env bash
# RESP on one node against Redis, like for like: both start empty and hold the same 100 000 keys
# (redis-benchmark's -r 100000 space, written by a pipelined SET first), so neither looks keys up
# in a larger store than the other. Optionally a second dkv build beside the first.
#
#   bench/resp.sh [REQUESTS] [ROUNDS]      (defaults: 200000 per unpipelined run, 3 rounds)
#   B=path bench/resp.sh                   also measure that dkv build (an A/B of two builds)
#   BUSY=50us bench/resp.sh                also measure the first build started with
#                                          `--busy-poll 50us` (dkv-busy), and add a row of GETs
#                                          from one connection (-c1: its latency)
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
# medians of req/s and of the servers' CPU per request (/proc/PID/stat), and the ratios to Redis,
# and for the -P1 rows the load generator's CPU per request too (CPU 0's busy time, from
# /proc/stat: what the client spent, in user space and in the kernel's TCP path).
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
  start "$bin" seed --new-cluster --listen 127.0.0.1:$((P + 10 * i))
  wait_http "http://127.0.0.1:$((P + 10 * i))/health"
  start "$bin" node --listen 127.0.0.1:$((P + 10 * i + 1)) --resp-listen 127.0.0.1:$((P + 10 * i + 2)) \
    --seed 127.0.0.1:$((P + 10 * i))
  wait_http "http://127.0.0.1:$((P + 10 * i + 1))/health"
  SERVERS+=("dkv$i") PORTS+=($((P + 10 * i + 2))) SPIDS+=("${PIDS[-1]}")
done
if [ -n "${BUSY:-}" ]; then
  i=$((i + 1))
  start "$DKV" seed --new-cluster --listen 127.0.0.1:$((P + 10 * i))
  wait_http "http://127.0.0.1:$((P + 10 * i))/health"
  start "$DKV" node --listen 127.0.0.1:$((P + 10 * i + 1)) --resp-listen 127.0.0.1:$((P + 10 * i + 2)) \
    --seed 127.0.0.1:$((P + 10 * i)) --busy-poll "$BUSY"
  wait_http "http://127.0.0.1:$((P + 10 * i + 1))/health"
  SERVERS+=("dkv-busy") PORTS+=($((P + 10 * i + 2))) SPIDS+=("${PIDS[-1]}")
fi
if [ -n "${FLOOR:-}" ]; then
  CARGO_TARGET_DIR=target/bench-resp-floor cargo build --release -q --manifest-path bench/resp-floor/Cargo.toml
  for mode in mio mio-deferred mio-spin tokio tokio-spin; do
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
# CPU 0's busy ticks (user, nice, system, irq, softirq): the load generator's CPU.
cpu0_ticks() { awk '$1 == "cpu0" {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
redis_benchmark() { # server-index get|set pipeline requests [connections]
  local c l out rps
  c=$(cpu_ticks "${SPIDS[$1]}") l=$(cpu0_ticks)
  out=$(taskset -c 0 redis-benchmark -p "${PORTS[$1]}" -c "${5:-64}" -P "$3" -d 100 -r 100000 -n "$4" -t "$2" -q --csv 2>/dev/null)
  c=$(($(cpu_ticks "${SPIDS[$1]}") - c)) l=$(($(cpu0_ticks) - l))
  rps=$(awk -F, -v t="\"${2^^}\"" '$1 == t {gsub(/"/, "", $2); print $2}' <<<"$out")
  record "$2 -P$3${5:+ -c$5}|${SERVERS[$1]}" "$rps" "$(us_per "$c" "$4")" "$(us_per "$l" "$4")"
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
  if [ -n "${BUSY:-}" ]; then
    for s in "${!SERVERS[@]}"; do steady redis_benchmark "$s" get 1 $((N / 8)) 1; done
  fi
done
summarize <<'PY'
works = sorted({l.split("|")[0] for l in runs}, key=lambda w: (int(w.split("-P")[1].split()[0]), w))
known = ("redis", "dkv1", "dkv2", "dkv-busy", "floor-mio", "floor-mio-deferred", "floor-mio-spin", "floor-tokio", "floor-tokio-spin")
servers = [s for s in known if any(l.endswith("|" + s) for l in runs)]
print("medians of each server's rounds; in brackets the server's CPU per request, and for -P1 with")
print("redis-benchmark the load generator's after it; each ratio the median of the rounds' own")
for w in works:
    def cell(s):
        cpu = f"{fmt(med(f'{w}|{s}', 1), '.2f')} µs"
        if med(f"{w}|{s}", 2) is not None and w.split("-P")[1].split()[0] == "1" and "dkv-bench" not in w:
            cpu += f", load {fmt(med(f'{w}|{s}', 2), '.2f')} µs"
        ratio = "" if s == "redis" else f" {fmt(paired(f'{w}|{s}', f'{w}|redis'), '.2f')}x Redis"
        return f"{s} {fmt(med(f'{w}|{s}')):>7} ({cpu}){ratio}"
    print(f"{w:18} " + "   ".join(cell(s) for s in servers))
PY
