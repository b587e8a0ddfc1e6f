#!/usr/bin/env bash
# dkv-transport against tarpc on dkv's two hottest internal calls, one table of medians.
#
#   bench/rpc.sh [CALLS] [ROUNDS] [CONCURRENCY]
#     (defaults: 200000 calls per phase, 3 rounds, 64,8 concurrent callers)
#   RAW=FILE bench/rpc.sh    also writes every run's figures to FILE (tab-separated)
#
# Builds bench/rpc (its own cargo workspace, into target/bench-rpc) and runs it pinned to CPU 0;
# it starts each server itself, as `taskset -c 1 rpc-bench server TRANSPORT` on 127.0.0.1, a
# fresh one per round, transport and concurrency, and stops it (by its PID) when done.
# Transports: dkv-transport as the node uses it (postcard bodies); tarpc 0.38's serde transport
# (tokio-util length-delimited frames) with tokio-serde's bincode, and with postcard.
# Calls: apply (ApplyRequest of one entry: 10-byte key, 100-byte value) -> (), and read
# (ReadRequest) -> ReadResponse with that entry, from an in-memory map. C callers share one
# connection; each phase stops after CALLS calls or 30 s. CPU per call is user + system time of
# the server process (/proc/PID/stat) and of the client process (getrusage) over the calls made:
# on a shared 2-core machine it is the steadier figure; calls/s and latency follow the load.
# Progress goes to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-200000}
ROUNDS=${2:-3}
CONC=${3:-64,8}
command -v taskset >/dev/null || { echo "bench: taskset is missing: apt-get install -y util-linux" >&2; exit 1; }
CARGO_TARGET_DIR=target/bench-rpc cargo build --release -q --manifest-path bench/rpc/Cargo.toml
exec taskset -c 0 target/bench-rpc/release/rpc-bench --calls "$CALLS" --rounds "$ROUNDS" --conc "$CONC" \
  --secs 30 --server-cpu 1 ${RAW:+--raw "$RAW"}
