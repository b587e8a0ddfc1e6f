#!/usr/bin/env bash
# Fault injection with a history checker (scripts/nemesis.py) as a test: 90 s of faults, one at a
# time, on a seed and 5 durable nodes on 127.0.0.1, with the leave cut by a kill or a pause past
# the seed's TTL, a majority paused past it, skewed clocks, and network partitions among them
# (--extra; the skew needs Debian's faketime, the partitions root and iptables), from a random
# seed it prints. It fails on any lost
# acknowledged write, stale read, key not back at N copies, or node that does not come back.
#     scripts/nemesis-test.sh                  # with target/debug/dkv (what the cargo tests built)
#     DKV_BIN=path scripts/nemesis-test.sh     # another build
#     NEMESIS_SEED=S scripts/nemesis-test.sh   # the faults of an earlier run again
# Every other run (by the random seed's parity) gives the seed its record of the membership
# (--seed-record), so the test covers both kinds of seed; the printed command says which.
# The run's logs, data and history stay in the directory it prints when it fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DKV_BIN=${DKV_BIN:-target/debug/dkv}
[ -x "$DKV_BIN" ] || cargo build -q -p dkv
root=$(mktemp -d /tmp/dkv-nemesis.XXXXXX)
seed="${NEMESIS_SEED:-$((RANDOM * 32768 + RANDOM))}"
seed_args=(--seed "$seed")
[ $((seed % 2)) -eq 0 ] || seed_args+=(--seed-record)
if python3 scripts/nemesis.py --dkv "$DKV_BIN" --root "$root" --duration "${NEMESIS_SECONDS:-90}" \
    --node-ttl 2s --gap 1 --extra "${seed_args[@]}"; then
    rm -rf "$root"
else
    echo "nemesis: FAILED; the run's logs, data and history: $root" >&2
    exit 1
fi
