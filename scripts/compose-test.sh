#!/usr/bin/env bash
# The Docker Compose test: the seed system's scenario against real containers.
#
#   0. a newcomer's `compose up --build` before scripts/build-static.sh: the image build (of a
#      context with the Dockerfile and no binary) stops with the message that names the script
#   1. `compose up --build --scale kv-node=3`; wait until the seed lists 3 normal members
#      and every container is healthy
#   2. the seed system's curl session, each request through a different node; then redis-cli
#      SET and GET through two other containers' RESP ports
#   3. 300 keys with distinct values written through rotating nodes
#   4. scale up to 5; 5. every key exact through rotating nodes
#   6. scale down to 2 (3 nodes leave at once); 7. every key exact through both nodes;
#   8. the remaining nodes' /stats "keys" add up to 300 x min(replication factor, 2)
#
# It runs under its own project name with short timings (heartbeat 200ms, node TTL 3s) and
# its own host ports (seed 19000, nodes 18013-18099), so it does not disturb a cluster
# started with scripts/compose-up.sh, and it always tears its project down.
# Ends with "compose: P passed, F failed"; exit status 0 only when F is 0.
#
# Environment (all optional):
#   COMPOSE_TEST_SEED_PORT   host port for the seed            (default 19000)
#   COMPOSE_TEST_NODE_PORTS  host port range for the nodes     (default 18013-18099)
#   COMPOSE_TEST_RF          replication factor of the nodes   (default: /stats
#                            "replication_factor" or "replicas" if the node reports
#                            one, else 3, the default of DESIGN.md §5)
#   COMPOSE_TEST_TIMEOUT     seconds allowed for each wait     (default 120)
#   COMPOSE_TEST_KEEP=1      leave the cluster running afterwards (for debugging)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROJECT="dkvtest$$"
KEYS=300
TIMEOUT="${COMPOSE_TEST_TIMEOUT:-120}"
TOTAL=10     # checks below; a check that cannot run counts as failed

# Read by compose.yaml; the defaults there are the production ones.
export DKV_NODE_TTL=3s
# The scale-down below must hand keys off: nodes leave on SIGTERM (compose.yaml's default
# keeps a stopped node's identity for a restart; scripts/compose-restart-test.sh tests that).
export DKV_LEAVE_ON_STOP=true
export DKV_SEED_PORT="${COMPOSE_TEST_SEED_PORT:-19000}"
export DKV_NODE_PORTS="${COMPOSE_TEST_NODE_PORTS:-18013-18099}"
export DKV_RESP_PORTS="16380-16399"

# The framework: say/pass/fail/abort/finish, teardown on every exit, cluster_is, wait_for...
TEST_NAME=compose-test SUMMARY_LABEL=compose KEEP_VAR=COMPOSE_TEST_KEEP
POLL=0.5 MEMBERS_DESC="total/normal"
. "$ROOT/scripts/lib/compose-common.sh" || exit 2

# ---------------------------------------------------------------- python helper
# JSON parsing and the bulk reads/writes (byte-exact values, URL-encoded keys).
py_helper "$WORK/ct.py" <"$ROOT/scripts/lib/ct.py"
ct() { python3 "$WORK/ct.py" "$@"; }

# ---------------------------------------------------------------- helpers
seed_members() { ct members "$@"; }   # "total normal"


expected_sum_ok() {
    local got
    got="$(ct stats-sum "${NODE_URLS[@]}")" || { SUM_INFO="$got"; return 1; }
    SUM_INFO="$got"
    local total="${got%% *}"
    case "$total" in ''|*[!0-9]*) return 1 ;; esac
    # user_123's tombstone may or may not be counted as a key: accept both.
    [ "$total" -eq $((KEYS * R)) ] || [ "$total" -eq $(((KEYS + 1) * R)) ]
}

# ---------------------------------------------------------------- the test
# 0: without the static binary, the build names the script to run (in a context of its own, so
# the repository's binary is neither needed nor touched)
mkdir -p "$WORK/no-binary"
cp Dockerfile .dockerignore "$WORK/no-binary/"
if docker build --no-cache -t "dkv-nobinary-$PROJECT" "$WORK/no-binary" >"$WORK/no-binary.log" 2>&1; then
    fail "a build without the static binary succeeded"
    docker image rm "dkv-nobinary-$PROJECT" >/dev/null 2>&1
elif grep -qE 'run-scripts-build-static.sh-first/dkv.*(does not exist|not found)' "$WORK/no-binary.log"; then
    # the classic builder: "... stat target/run-scripts-build-static.sh-first/dkv: file does not
    # exist"; BuildKit: "... "/target/run-scripts-build-static.sh-first/dkv": not found"
    pass "a build without the static binary stops with: $(grep -m1 -oE '[^:]*run-scripts-build-static.sh-first/dkv.*(does not exist|not found)' "$WORK/no-binary.log")"
else
    fail "a build without the static binary failed without naming scripts/build-static.sh: $(tail -3 "$WORK/no-binary.log" | tr '\n' ' ')"
fi

# 1 (start_cluster: build, up with 3 nodes, 3 normal members and all containers healthy)
start_cluster

# 2: the seed system's curl session, each request through a different node
check_curl_session "3 nodes"

# 3: the Redis protocol through the published 6379 of two different containers
resp_port() { docker port "$1" 6379/tcp 2>/dev/null | grep -m1 -E '^0\.0\.0\.0:[0-9]+$' | cut -d: -f2; }
if ! command -v redis-cli >/dev/null; then
    fail "RESP: redis-cli is not installed: install redis-tools (scripts/setup.sh)"
else
    r1="$(resp_port "${NODE_IDS[0]}")" r2="$(resp_port "${NODE_IDS[1]}")"
    set_out="$(redis-cli -p "${r1:-0}" SET resp_key "over RESP" 2>&1)"
    get_out="$(redis-cli -p "${r2:-0}" GET resp_key 2>&1)"
    http_out="$(curl -sS -m 10 "${NODE_URLS[2]}/get?key=resp_key" 2>&1)"
    redis-cli -p "${r1:-0}" DEL resp_key >/dev/null 2>&1
    if [ "$set_out" = OK ] && [ "$get_out" = "over RESP" ] && [ "$http_out" = "over RESP" ]; then
        pass "RESP: redis-cli SET via :$r1, GET via :$r2, and HTTP GET through a third node agree"
    else
        fail "RESP: SET via :${r1:-?} -> '$set_out', GET via :${r2:-?} -> '$get_out', HTTP -> '$http_out'"
    fi
fi

# 4
if ct write "$KEYS" "${NODE_URLS[@]}"; then
    pass "$KEYS keys written through rotating nodes (all 204)"
else
    fail "$KEYS keys written through rotating nodes"
fi

# 5
say "scaling up: up -d --no-recreate --scale kv-node=5"
if ! compose up -d --no-recreate --scale kv-node=5 >"$WORK/up5.log" 2>&1; then
    cat "$WORK/up5.log"
    fail "scale up to 5: compose up --scale kv-node=5 failed"
    node_urls || true
elif wait_for "$TIMEOUT" "5 normal members, all containers healthy" cluster_is 5; then
    pass "scale up to 5: seed lists 5 normal members, all containers healthy (${NODE_URLS[*]})"
else
    fail "scale up to 5: not 5 normal members and healthy containers within ${TIMEOUT}s"
    node_urls || true
fi

# 6
if [ "${#NODE_URLS[@]}" -gt 0 ] && ct read "$KEYS" "${NODE_URLS[@]}"; then
    pass "after scale-up: all $KEYS keys read back exact through rotating nodes"
else
    fail "after scale-up: all $KEYS keys read back exact through rotating nodes"
fi

# 7: three nodes leave at once; each hands its keys over before it exits
say "scaling down: up -d --no-recreate --scale kv-node=2"
t0=$SECONDS
if ! compose up -d --no-recreate --scale kv-node=2 >"$WORK/up2.log" 2>&1; then
    cat "$WORK/up2.log"
    fail "scale down to 2: compose up --scale kv-node=2 failed"
    node_urls || true
elif wait_for "$TIMEOUT" "exactly 2 members, all normal and healthy" cluster_is 2; then
    pass "scale down to 2: seed lists exactly 2 normal members ($((SECONDS - t0))s incl. leaves)"
else
    fail "scale down to 2: not exactly 2 normal members and healthy containers within ${TIMEOUT}s"
    node_urls || true
fi

# 8
if [ "${#NODE_URLS[@]}" -gt 0 ] && ct read-each "$KEYS" "${NODE_URLS[@]}"; then
    pass "after scale-down: all $KEYS keys read back exact through each of the ${#NODE_URLS[@]} nodes"
else
    fail "after scale-down: all $KEYS keys read back exact through each remaining node"
fi

# 9: no key lost or duplicated beyond its replicas
RF="${COMPOSE_TEST_RF:-}"
if [ -z "$RF" ] && [ "${#NODE_URLS[@]}" -gt 0 ]; then
    RF="$(ct field "${NODE_URLS[0]}" /stats replication_factor,replicas 2>/dev/null || true)"
fi
case "$RF" in ''|*[!0-9]*) RF=3 ;; esac
R=$((RF < 2 ? RF : 2))
SUM_INFO=""
if [ "${#NODE_URLS[@]}" -eq 2 ] && wait_for 30 "stats keys to add up" expected_sum_ok; then
    pass "after scale-down: sum of /stats keys = ${SUM_INFO} (= $KEYS x min(RF=$RF, 2))"
else
    fail "after scale-down: sum of /stats keys = ${SUM_INFO:-?}, want $((KEYS * R)) (= $KEYS x min(RF=$RF, 2)) or $(((KEYS + 1) * R)) with the tombstone"
fi

finish
