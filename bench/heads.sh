#!/usr/bin/env bash
# Commands that need a key's length or existence, not its value, on large values: 3 nodes with
# N=3 (R=2), RESP through the first node. Each build holds KEYS values of SIZE bytes, then
# redis-benchmark runs STRLEN, EXISTS and GET of one of them (for scale: GET brings the value).
# Since 2026-12-05 the first three read the entries' heads from the replicas, not their values
# (README, "Reads of heads"); B=path measures a second build beside the first, an A/B.
#
#   bench/heads.sh [SIZE] [REQUESTS]       (defaults: 1048576 bytes, 2000 requests per command)
#   B=path bench/heads.sh                  also measure that dkv build
#
# Servers on CPU 1, redis-benchmark -c8 on CPU 0. Prints req/s and the CPU per request summed
# over the three nodes (/proc/PID/stat), per build and command.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need "redis-tools" redis-benchmark redis-cli
SIZE=${1:-1048576}
REQUESTS=${2:-2000}
build

measure() { # label dkv-binary port-offset
  local label=$1 bin=$2 off=$3 seed pids="" i
  seed=127.0.0.1:$((19400 + off))
  start "$bin" seed --new-cluster --listen "$seed"
  for i in 0 1 2; do
    start "$bin" node --listen 127.0.0.1:$((18400 + off + i)) --resp-listen 127.0.0.1:$((16400 + off + i)) \
      --seed "$seed" --replication 3
    pids+=" ${PIDS[-1]}"
  done
  for i in 0 1 2; do wait_http "http://127.0.0.1:$((18400 + off + i))/health"; done
  for _ in $(seq 1 300); do [ "$(stat_of "http://127.0.0.1:$((18400 + off))" members)" = 3 ] && break; sleep 0.01; done
  local port=$((16400 + off))
  head -c "$SIZE" /dev/urandom > "$TMP/value"
  redis-cli -p "$port" -x SET big < "$TMP/value" > /dev/null
  for cmd in STRLEN EXISTS GET; do
    # shellcheck disable=SC2086
    local t0 out rps
    t0=$(cpu_ticks $pids)
    out=$(taskset -c 0 redis-benchmark -p "$port" -c 8 -n "$REQUESTS" -q $cmd big 2>/dev/null)
    rps=$(grep -oE '[0-9.]+ requests per second' <<<"$out" | awk '{print $1}')
    # shellcheck disable=SC2086
    record "$label" "$cmd" "$rps" "$(us_per $(($(cpu_ticks $pids) - t0)) "$REQUESTS")"
  done
}

TMP=$(mktemp -d)
measure "dkv" "$DKV" 0
[ -z "${B:-}" ] || measure "B" "$B" 10
summarize "$SIZE" <<'EOF'
print(f"3 nodes N=3, one value of {sys.argv[2]} bytes, redis-benchmark -c8 through node 1")
print(f"{'build':<6} {'command':<8} {'req/s':>9} {'CPU µs/request':>15}")
for label, rounds in runs.items():
    for cmd, rps, cpu in rounds:
        print(f"{label:<6} {cmd:<8} {float(rps):>9.0f} {float(cpu):>15.1f}")
EOF
