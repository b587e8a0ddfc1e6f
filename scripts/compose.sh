#!/usr/bin/env bash
# Run Docker Compose, whichever is installed: `docker compose` (v2 plugin) if it works,
# else `docker-compose` (v1, e.g. 1.29 from Debian's packages). Arguments pass through:
#     scripts/compose.sh up --build --scale kv-node=3
# Runs from the repository root so compose.yaml is found whatever the caller's directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if docker compose version >/dev/null 2>&1; then
    exec docker compose "$@"
elif command -v docker-compose >/dev/null 2>&1; then
    exec docker-compose "$@"
else
    echo "compose.sh: error: no Docker Compose found: neither 'docker compose' (v2 plugin) nor" \
         "'docker-compose' (v1) works. Install one, e.g. 'apt-get install -y docker-compose'" \
         "or Docker's docker-compose-plugin." >&2
    exit 127
fi
