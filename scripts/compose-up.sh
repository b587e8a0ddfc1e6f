#!/usr/bin/env bash
# Start a dkv cluster in containers, in the foreground, as the seed system did:
#     scripts/compose-up.sh 3      # = build the static binary, then
#                                  #   compose up --build --scale kv-node=3
# The seed is on http://localhost:9000 (GET /nodes, the dashboard at /). The N nodes get exactly
# the host ports 7001 ... 7000+N (RESP 6381 ... 6380+N), one of each per node: the ranges are
# made as long as the scale, so the engine has no other port to give. A container restarted
# alone comes back on its own port; `restart` of all of them keeps the same N ports but may
# shuffle them (`scripts/compose.sh port --index=2 kv-node 8080` tells which is where).
# DKV_NODE_PORTS / DKV_RESP_PORTS, if set, are used as they are.
# Extra arguments go to `compose up`. Ctrl-C stops the cluster; `scripts/compose.sh down`
# removes it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

N="${1:-3}"
case "$N" in
    ''|*[!0-9]*|0|00*) echo "usage: $0 [N nodes, default 3] [compose up options...]" >&2; exit 2 ;;
esac
[ "$#" -gt 0 ] && shift

export DKV_NODE_PORTS="${DKV_NODE_PORTS:-7001-$((7000 + N))}"
export DKV_RESP_PORTS="${DKV_RESP_PORTS:-6381-$((6380 + N))}"

scripts/build-static.sh >/dev/null
echo "compose-up: seed http://localhost:${DKV_SEED_PORT:-9000}/ (dashboard), nodes on host ports $DKV_NODE_PORTS, RESP on $DKV_RESP_PORTS" >&2
exec scripts/compose.sh up --build --scale "kv-node=$N" "$@"
