#!/usr/bin/env bash
# Start a dkv cluster in containers, in the foreground, as the seed system did:
#     scripts/compose-up.sh 3      # = build the static binary, then
#                                  #   compose up --build --scale kv-node=3
# The seed is on http://localhost:9000 (GET /nodes), nodes on host ports from 8013-8099
# (`scripts/compose.sh ps` or `scripts/compose.sh port --index=2 kv-node 8080` tells which).
# Extra arguments go to `compose up`. Ctrl-C stops the cluster; `scripts/compose.sh down`
# removes it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

N="${1:-3}"
case "$N" in
    ''|*[!0-9]*) echo "usage: $0 [N nodes, default 3] [compose up options...]" >&2; exit 2 ;;
esac
[ "$#" -gt 0 ] && shift

scripts/build-static.sh >/dev/null
exec scripts/compose.sh up --build --scale "kv-node=$N" "$@"
