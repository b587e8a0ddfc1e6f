#!/usr/bin/env bash
# The Docker Compose restart test: every kv-node keeps its identity and keys in its /data
# volume, so restarting or killing all of them at once loses nothing.
#
#   1. `compose up --build --scale kv-node=3`; wait until the seed lists 3 normal members and
#      every container is healthy
#   2. 300 keys written through rotating nodes (all 204); the members' ids and tokens noted
#   3. `compose restart kv-node` (SIGTERM, which with a data directory stops a node rather
#      than making it leave): 3 normal members again, the same ids and tokens, and the nodes on
#      the same 3 host ports (the port range is exactly 3 long, as scripts/compose-up.sh 3 makes it)
#   4. every key reads back exact through rotating nodes
#   5. `compose kill kv-node` (SIGKILL, all three at once), then `compose up -d` with the same
#      containers: 3 normal members again, the same ids and tokens
#   6. every key reads back exact through each node
#   7. `compose stop kv-node`, then `compose restart seed` while they are down: the seed, restored
#      from its record of the membership in its own /data volume, lists the same ids and tokens
#      with no node running (a seed without the record lists none)
#   8. `compose start kv-node`: 3 normal members again, the same ids and tokens, and every key
#      reads back exact through each node
#   9. one node's process killed from the host (SIGKILL, as the kernel's OOM killer ends a
#      process; a panic's abort exits non-zero the same way), not by Compose: the engine restarts
#      its container (`restart: on-failure`), it comes back as the same member, and every key
#      reads back exact through each node
#
# Short timings (heartbeat 200ms) and a node TTL (20s) longer than a restart, so the seed keeps
# the members while their containers are down and nothing has to move. Its own project name and
# host ports (seed 19200, nodes 18213-18215); it always tears its project down.
# Ends with "restart: P passed, F failed"; exit status 0 only when F is 0.
#
# Environment (all optional):
#   RESTART_TEST_SEED_PORT   host port for the seed            (default 19200)
#   RESTART_TEST_NODE_PORTS  host port range for the nodes     (default 18213-18215: exactly 3)
#   RESTART_TEST_TIMEOUT     seconds allowed for each wait     (default 120)
#   RESTART_TEST_KEEP=1      leave the cluster running afterwards (for debugging)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROJECT="dkvrestart$$"
KEYS=300
TIMEOUT="${RESTART_TEST_TIMEOUT:-120}"
TOTAL=11     # checks below; a check that cannot run counts as failed

# Read by compose.yaml; the defaults there are the production ones.
export DKV_NODE_TTL=20s
export DKV_SEED_PORT="${RESTART_TEST_SEED_PORT:-19200}"
export DKV_NODE_PORTS="${RESTART_TEST_NODE_PORTS:-18213-18215}"
export DKV_RESP_PORTS="16400-16402"

TEST_NAME=restart-test SUMMARY_LABEL=restart KEEP_VAR=RESTART_TEST_KEEP
POLL=0.5 MEMBERS_DESC="total/normal"
. "$ROOT/scripts/lib/compose-common.sh" || exit 2

py_helper "$WORK/ct.py" <"$ROOT/scripts/lib/ct.py"
ct() { python3 "$WORK/ct.py" "$@"; }
seed_members() { ct members "$@"; }   # "total normal"

# same_ring: the seed lists the members and tokens noted in $RING (sets LAST_OUT).
same_ring() {
    LAST_OUT="$(ct ring "$SEED_URL" 2>&1)" || return 1
    [ "$LAST_OUT" = "$RING" ]
}

# The nodes' host ports, sorted: the same set after every restart (the range has no other).
host_ports() { printf '%s\n' "${NODE_URLS[@]##*:}" | sort -n | paste -sd' '; }

# after DESCRIPTION: the cluster is back with 3 normal members, the same ring and the same ports.
back_as_before() {
    if wait_for "$TIMEOUT" "3 normal members, all containers healthy" cluster_is 3 \
        && wait_for 10 "the same ids and tokens" same_ring; then
        if [ "$(host_ports)" = "$PORTS" ]; then
            pass "$1: 3 normal members, same ids and tokens ($RING), same host ports ($PORTS)"
        else
            fail "$1: 3 normal members, same ids and tokens, but host ports $(host_ports) instead of $PORTS"
        fi
    else
        fail "$1: not back as the same 3 members within ${TIMEOUT}s (seed shows: ${LAST_OUT:-?}; before: $RING)"
        node_urls || true
    fi
}

# 1
start_cluster

# 2
PORTS="$(host_ports)"
if ct write "$KEYS" "${NODE_URLS[@]}" && RING="$(ct ring "$SEED_URL")"; then
    pass "$KEYS keys written through rotating nodes (all 204); ring: $RING; host ports: $PORTS"
else
    abort "$KEYS keys written through rotating nodes"
fi

# 3 and 4
say "compose restart kv-node"
if compose restart kv-node >"$WORK/restart.log" 2>&1; then
    back_as_before "after compose restart"
else
    cat "$WORK/restart.log"
    fail "compose restart kv-node failed"
fi
if [ "${#NODE_URLS[@]}" -gt 0 ] && ct read "$KEYS" "${NODE_URLS[@]}"; then
    pass "after compose restart: all $KEYS keys read back exact through rotating nodes"
else
    fail "after compose restart: all $KEYS keys read back exact through rotating nodes"
fi

# 5 and 6
say "compose kill kv-node, then compose up -d --no-recreate --scale kv-node=3"
if compose kill kv-node >"$WORK/kill.log" 2>&1 \
    && compose up -d --no-recreate --scale kv-node=3 >"$WORK/up-again.log" 2>&1; then
    back_as_before "after compose kill and up"
else
    cat "$WORK/kill.log" "$WORK/up-again.log"
    fail "compose kill / up failed"
fi
if [ "${#NODE_URLS[@]}" -gt 0 ] && ct read-each "$KEYS" "${NODE_URLS[@]}"; then
    pass "after compose kill and up: all $KEYS keys read back exact through each node"
else
    fail "after compose kill and up: all $KEYS keys read back exact through each node"
fi

# 7
say "compose stop kv-node, then compose restart seed"
if compose stop kv-node >"$WORK/stop.log" 2>&1 && compose restart seed >"$WORK/seed.log" 2>&1; then
    if wait_for "$TIMEOUT" "the seed to list the same ids and tokens" same_ring; then
        pass "seed restarted with every node down: its record lists the same ids and tokens ($RING)"
    else
        fail "seed restarted with every node down: it lists ${LAST_OUT:-nothing}, not the recorded $RING"
    fi
else
    cat "$WORK/stop.log" "$WORK/seed.log"
    fail "compose stop kv-node / restart seed failed"
fi

# 8
say "compose start kv-node"
if compose start kv-node >"$WORK/start.log" 2>&1; then
    back_as_before "after the seed's restart"
else
    cat "$WORK/start.log"
    fail "compose start kv-node failed"
fi
if [ "${#NODE_URLS[@]}" -gt 0 ] && ct read-each "$KEYS" "${NODE_URLS[@]}"; then
    pass "after the seed's restart: all $KEYS keys read back exact through each node"
else
    fail "after the seed's restart: all $KEYS keys read back exact through each node"
fi

# 9
# restarts CONTAINER: how many times the engine has restarted it (sets LAST_OUT).
restarts() { LAST_OUT="$(docker inspect -f '{{.RestartCount}}' "$1" 2>&1)"; }
restarted_since() { restarts "$1" && [ "$LAST_OUT" -gt "$2" ] 2>/dev/null; }
say "one node's process killed from the host, not through Compose"
VICTIM="$(compose ps -q kv-node 2>/dev/null | head -n 1)"
INIT_PID="$(docker inspect -f '{{.State.Pid}}' "$VICTIM" 2>/dev/null)"
# PID 1 of the container is docker-init (compose.yaml's `init: true`); dkv is its child.
DKV_PID="$(cat "/proc/$INIT_PID/task/$INIT_PID/children" 2>/dev/null | awk '{print $1}')"
# Killing a container's process takes root (or sudo without a password) and the engine's PID
# namespace beside ours: without them (rootless Docker, a remote engine) the step is skipped.
KILL=(kill)
[ "$(id -u)" = 0 ] || KILL=(sudo -n kill)
if [ -z "$DKV_PID" ] || ! "${KILL[@]}" -0 "$DKV_PID" 2>/dev/null; then
    say "SKIP: cannot signal the container's dkv process from here (root and the engine's PID namespace are needed); 2 checks skipped"
    TOTAL=$((TOTAL - 2))
elif restarts "$VICTIM" && BEFORE="$LAST_OUT" && "${KILL[@]}" -KILL "$DKV_PID"; then
    if wait_for "$TIMEOUT" "the engine to restart the container" restarted_since "$VICTIM" "$BEFORE"; then
        back_as_before "after a node's process was killed from the host (restarted by the engine)"
    else
        fail "a node's process killed from the host: its container was not restarted within ${TIMEOUT}s (restart count ${LAST_OUT:-?}, policy $(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$VICTIM" 2>&1))"
    fi
    if [ "${#NODE_URLS[@]}" -gt 0 ] && ct read-each "$KEYS" "${NODE_URLS[@]}"; then
        pass "after the engine restarted a killed node: all $KEYS keys read back exact through each node"
    else
        fail "after the engine restarted a killed node: all $KEYS keys read back exact through each node"
    fi
else
    fail "could not kill the dkv process of container ${VICTIM:-?} from the host (docker-init pid ${INIT_PID:-?}, dkv pid ${DKV_PID:-?})"
    fail "after the engine restarted a killed node: not checked"
fi

finish
