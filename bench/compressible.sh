#!/usr/bin/env bash
# GETs from one durable node (N=1) holding values of 1 KiB that compress well, the case where
# fjall's default layout put a 7.9 MB index block in each big table and every lookup read it whole
# again (2 500-3 300 GETs/s; found by a hunt, 2026-12-07; see `keyspace_options` in
# crates/storage/src/durable.rs). KEYS keys `big0...` are written over RESP with `redis-cli
# --pipe`, then KEYS more (`bigb0...`), as the hunt did (the second load pushes the first into
# the deeper levels); values are `t1:KEY:xxx...`, which lz4 shrinks about tenfold. Then `dkv
# bench` reads random keys of the first KEYS for DURATION. Nothing is pinned to a CPU here: with
# the node on one CPU its compactions lagged the load, the tables stayed in the upper levels, and
# neither build showed the slow lookups. The node's store is on disk under /var/tmp.
# (`dkv bench --load`, whose keys come more slowly, did not make the tables that show it.)
#
#   bench/compressible.sh [KEYS] [DURATION]          (defaults: 1000000, 5s)
#   B=path/to/other/dkv bench/compressible.sh ...    the same run on a second build, after
#
# Prints per build: load time, disk used, GETs/s with p50/p99, and the node's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-1000000}
DUR=${2:-5s}
. bench/lib.sh
need "redis-tools python3" redis-cli python3
cargo build --release -q -p dkv
P=$((21000 + RANDOM % 4000))

sets() { # prefix: KEYS SET commands in RESP, values of 1 KiB that compress well
  python3 - "$1" "$KEYS" <<'PY'
import sys
prefix, n = sys.argv[1].encode(), int(sys.argv[2])
out, pad, buf = sys.stdout.buffer, b"x" * 1024, []
for i in range(n):
    k = b"%s%d" % (prefix, i)
    v = (b"t1:%s:" % k + pad)[:1024]
    buf.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1024\r\n%s\r\n" % (len(k), k, v))
    if len(buf) == 10000:
        out.write(b"".join(buf))
        buf = []
out.write(b"".join(buf))
PY
}

run() { # label, binary
  local label=$1 bin=$2 dir
  dir=$(mktemp -d /var/tmp/dkv-bench-compressible.XXXXXX)
  "$bin" seed --new-cluster --listen 127.0.0.1:$P >/dev/null 2>&1 & local seed=$!; PIDS+=($seed)
  wait_http http://127.0.0.1:$P/health
  "$bin" node --listen 127.0.0.1:$((P + 1)) --resp-listen 127.0.0.1:$((P + 2)) \
    --seed 127.0.0.1:$P --replication 1 --data-dir "$dir" >/dev/null 2>&1 & local node=$!; PIDS+=($node)
  wait_http http://127.0.0.1:$((P + 1))/health
  local t0=$SECONDS
  for prefix in big bigb; do
    sets "$prefix" | redis-cli -p $((P + 2)) --pipe >/dev/null
  done
  local loaded=$((SECONDS - t0))
  local out
  out=$("$bin" bench --node http://127.0.0.1:$((P + 1)) --protocol resp --prefix big \
    --keys "$KEYS" --read-ratio 1 -c 16 -d "$DUR")
  printf '%-6s 2 x %s keys loaded in %ss, %s on disk; %s; %s; RSS %s\n' "$label" "$KEYS" "$loaded" \
    "$(du -sh "$dir" | cut -f1)" "$(grep -o 'throughput.*requests/s' <<<"$out")" \
    "$(grep -oE 'p50 [^ ]+ .*p99 [^ ]+' <<<"$out" | sed 's/ p90 [^ ]* / /')" \
    "$(awk '/VmRSS/ {print $2 " kB"}' /proc/$node/status)"
  kill $node; wait $node 2>/dev/null || true
  kill $seed; wait $seed 2>/dev/null || true
  rm -rf "$dir"
  P=$((P + 10))
}

run this target/release/dkv
if [ -n "${B:-}" ]; then run B "$B"; fi
