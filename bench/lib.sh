# shellcheck shell=bash
# What every bench script shares; sourced from the repository root after `set -euo pipefail`.
#   need "apt packages" TOOL...   exit with the install line if a tool is missing
#   PIDS / start CMD...           processes to kill at exit (start: pinned to CPU 1, quiet)
#   TMP                           a scratch directory, removed at exit if the script sets it
#   wait_http URL                 poll every 10 ms until URL answers 2xx (30 s at most)
#   stat_of URL FIELD             one number from a node's /stats
need() {
  local pkgs=$1; shift
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "bench: $t is missing: apt-get install -y $pkgs" >&2; exit 1; }
  done
}
PIDS=()
TMP=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "$TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT
start() { taskset -c 1 "$@" >/dev/null 2>&1 & PIDS+=($!); }
wait_http() {
  for _ in $(seq 1 3000); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done
  echo "bench: $1 did not come up" >&2; exit 1
}
stat_of() { curl -fs "$1/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
