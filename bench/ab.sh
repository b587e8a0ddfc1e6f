#!/usr/bin/env bash
# Two dkv builds side by side: 3 nodes with N=3 W=2 R=2 each (by default), GET and PUT,
# measured in one run, alternating which build goes first in every round.
#
#   bench/ab.sh BIN_A BIN_B [DURATION] [ROUNDS]     (defaults: 5s, 3 rounds)
#   NODES=2 REPLICATION=1 bench/ab.sh ...           (another shape: half the keys on the node
#                                                    wrk does not ask)
#
# For example, the cost of a change: build the commit before it into another target directory,
#   git worktree add /tmp/before HEAD~1 && CARGO_TARGET_DIR=/tmp/before-target \
#     cargo build --release -p dkv --manifest-path /tmp/before/Cargo.toml
#   bench/ab.sh /tmp/before-target/release/dkv target/release/dkv
# Nodes on CPU 1, wrk on CPU 0; req/s, p99 and CPU µs per request summed over the three nodes.
# A measurement during which the host took more than 3% of the CPU time is taken again (`steady`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,13p' "$0"; exit 2; }
BIN_A=$1 BIN_B=$2
NODES=${NODES:-3} REPLICATION=${REPLICATION:-3}
DUR=${3:-5s}
ROUNDS=${4:-3}
. bench/lib.sh
need wrk wrk

P=$((27000 + RANDOM % 3000))
declare -A URL PIDS_OF
for side in A B; do
  bin=BIN_$side; bin=${!bin}
  base=$P
  [ "$side" = B ] && base=$((P + 10))
  start "$bin" seed --new-cluster --listen "127.0.0.1:$base"
  wait_http "http://127.0.0.1:$base/health"
  pids=""
  for i in $(seq 1 "$NODES"); do
    start "$bin" node --listen "127.0.0.1:$((base + i))" --seed "127.0.0.1:$base" --replication "$REPLICATION"
    pids+=" ${PIDS[-1]}"
    wait_http "http://127.0.0.1:$((base + i))/health"
  done
  URL[$side]=http://127.0.0.1:$((base + 1)) PIDS_OF[$side]=$pids
  PRELOAD=100000 taskset -c 0 wrk -t1 -c32 -d20s -s bench/wrk/preload.lua "${URL[$side]}" >/dev/null
done

measure() { steady measure_once "$@"; }
measure_once() { # side op
  local t out rps n p50 p99
  t=$(cpu_ticks ${PIDS_OF[$1]})
  read -r rps n p50 p99 <<<"$(run_wrk "${URL[$1]}" "kv_$2.lua")"
  t=$(($(cpu_ticks ${PIDS_OF[$1]}) - t))
  record "$1 $2" "$rps" "$p50" "$p99" "$(us_per "$t" "$n")"
}
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  order="A B"; [ $((r % 2)) = 0 ] && order="B A"
  for op in get put; do for side in $order; do measure "$side" "$op"; done; done
done
summarize "$BIN_A" "$BIN_B" "$NODES" "$REPLICATION" <<'PY'
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}\nmedians of {len(runs['A get'])} rounds, {sys.argv[4]} nodes N={sys.argv[5]} each")
print(f"{'build op':<10} {'req/s':>8} {'p99 ms':>7} {'CPU µs':>7}")
for label in runs:
    print(f"{label:<10} {fmt(med(label)):>8} {fmt(med(label, 2), '.2f'):>7} {fmt(med(label, 3), '.1f'):>7}")
for op in ("get", "put"):
    check(f"B/A {op} req/s", med(f"B {op}"), med(f"A {op}"))
    check(f"B/A {op} CPU per request", med(f"B {op}", 3), med(f"A {op}", 3))
PY
