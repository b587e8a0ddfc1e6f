#!/usr/bin/env bash
# The Docker Compose test of TLS: compose.tls.yaml over compose.yaml, against real containers.
#
#   1. certificates from scripts/make-certs.sh; `compose -f compose.yaml -f compose.tls.yaml up
#      --build --scale kv-node=3`; wait until the seed, read over https, lists 3 normal members
#      and every container is healthy (their health checks are https too)
#   2. curl --cacert: a PUT through one node, the value read back through the two others
#   3. redis-cli --tls --cacert: SET through one node's RESP port, GET through another's
#   4. the members heartbeat the seed over the transport, inside TLS (the seed's /metrics)
#   5. in the clear, neither the seed's port nor a node's answers
#
# It runs under its own project name with short timings and its own host ports (seed 19400,
# nodes 18400-18402, RESP 16440-16442), and always tears its project down.
# Ends with "compose-tls: P passed, F failed"; exit status 0 only when F is 0.
#
# Environment (all optional): COMPOSE_TEST_TIMEOUT (seconds for each wait, default 120),
# COMPOSE_TEST_KEEP=1 (leave the cluster running afterwards, for debugging).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROJECT="dkvtls$$"
TIMEOUT="${COMPOSE_TEST_TIMEOUT:-120}"
TOTAL=5

export DKV_NODE_TTL=3s
export DKV_SEED_PORT=19400
export DKV_NODE_PORTS="18400-18402"
export DKV_RESP_PORTS="16440-16442"

TEST_NAME=compose-tls-test SUMMARY_LABEL=compose-tls KEEP_VAR=COMPOSE_TEST_KEEP
POLL=0.5 MEMBERS_DESC="total/normal"
COMPOSE_FILES="-f compose.yaml -f compose.tls.yaml" SCHEME=https
. "$ROOT/scripts/lib/compose-common.sh" || exit 2
command -v redis-cli >/dev/null || { echo "$TEST_NAME: error: redis-cli is not installed (apt-get install -y redis-tools)" >&2; exit 2; }

export DKV_TLS_DIR="$WORK/tls"
scripts/make-certs.sh "$DKV_TLS_DIR" >"$WORK/certs.log" 2>&1 || { cat "$WORK/certs.log"; abort "scripts/make-certs.sh failed"; }
CA="$DKV_TLS_DIR/ca.pem"
tls_curl() { curl -sS -m 10 --cacert "$CA" "$@"; }

# "TOTAL NORMAL" of the seed's /nodes, read over TLS.
seed_members() {
    tls_curl "$1/nodes" 2>/dev/null | python3 -c '
import json, sys
nodes = json.load(sys.stdin)["nodes"]
print(len(nodes), sum(m["state"] == "normal" for m in nodes))'
}

# The published IPv4 host port of a container's RESP port.
resp_port() { docker port "$1" 6379/tcp 2>/dev/null | grep -m1 -E '^0\.0\.0\.0:[0-9]+$' | sed 's/.*://'; }

# 1
start_cluster ", TLS from $DKV_TLS_DIR"

# 2
value="over tls $$"
code="$(tls_curl -o /dev/null -w '%{http_code}' -X PUT --data-binary "$value" "${NODE_URLS[0]}/put?key=tls-key")"
got1="$(tls_curl "${NODE_URLS[1]}/get?key=tls-key")"
got2="$(tls_curl "${NODE_URLS[2]}/get?key=tls-key")"
if [ "$code" = 204 ] && [ "$got1" = "$value" ] && [ "$got2" = "$value" ]; then
    pass "curl --cacert: PUT through node 1, the value read back through nodes 2 and 3"
else
    fail "curl --cacert: PUT answered $code, nodes 2 and 3 read '$got1' and '$got2', want '$value'"
fi

# 3
p1="$(resp_port "${NODE_IDS[0]}")" p3="$(resp_port "${NODE_IDS[2]}")"
rcli() { redis-cli --tls --cacert "$CA" -h 127.0.0.1 -p "$@" 2>&1; }
set_out="$(rcli "$p3" SET resp-key via-tls)"
get_out="$(rcli "$p1" GET resp-key)"
if [ "$set_out" = OK ] && [ "$get_out" = via-tls ]; then
    pass "redis-cli --tls: SET through node 3's RESP port, GET through node 1's"
else
    fail "redis-cli --tls: SET gave '$set_out', GET gave '$get_out'"
fi

# 4
transport_heartbeats() {
    LAST_OUT="$(tls_curl "$SEED_URL/metrics" 2>&1 | grep '^dkv_seed_heartbeats_total{.*encoding="transport"' || true)"
    awk '{ n += $NF } END { exit !(n > 0) }' <<<"$LAST_OUT"
}
if wait_for 30 "heartbeats over the transport" transport_heartbeats; then
    pass "the members heartbeat the seed over the transport, inside TLS"
else
    fail "the seed counted no heartbeat over the transport"
fi

# 5
plain_seed="${SEED_URL/https:/http:}" plain_node="${NODE_URLS[0]/https:/http:}"
if ! curl -sS -m 5 -o /dev/null "$plain_seed/nodes" 2>/dev/null && ! curl -sS -m 5 -o /dev/null "$plain_node/health" 2>/dev/null; then
    pass "in the clear, neither the seed's port nor a node's answers"
else
    fail "plain HTTP was answered by $plain_seed or $plain_node"
fi

finish
