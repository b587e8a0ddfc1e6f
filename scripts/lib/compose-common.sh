# shellcheck shell=bash
# The framework shared by the Docker Compose tests (scripts/compose-test.sh,
# compose-partition-test.sh, compose-restart-test.sh and compose-tls-test.sh). Sourced, not run:
# each test keeps only its scenario.
#
# What it provides, on top of scripts/lib/harness.sh (say / pass / fail / abort / finish, the
# traps, $WORK, py_helper):
#   - the short timings the tests use (heartbeat 200ms, healthcheck every 1s)
#   - compose (this project), and the dump_logs and teardown the harness calls at exit
#   - seed_url, node_urls (with NODE_IDS), host_url and all_healthy, which the harness's
#     cluster_is asks
#   - start_cluster: build the static binary, `compose up --build --scale kv-node=3`, and the
#     first check (3 normal members, all containers healthy)
#
# The sourcing script sets, before sourcing (with `set -uo pipefail`, from the repository root):
#   TEST_NAME      prefix of progress lines and messages, e.g. compose-test
#   SUMMARY_LABEL  first word of the summary line, e.g. compose
#   KEEP_VAR       name of the variable that leaves the cluster up, e.g. COMPOSE_TEST_KEEP
#   PROJECT        compose project name
#   TOTAL          number of checks (abort counts the ones not run as failed)
#   TIMEOUT        seconds allowed for the cluster of 3 to form
#   POLL           seconds between two tries of wait_for
#   MEMBERS_DESC   how wait_for's timeout message names what seed_members printed
#   and exports DKV_SEED_PORT, DKV_NODE_PORTS and any other DKV_* setting of its own; and may set
#   COMPOSE_FILES  the compose files, as -f arguments (default: -f compose.yaml)
#   SCHEME         how the seed and the nodes are reached from the host (default: http)
# and defines, before calling cluster_is (or start_cluster):
#   seed_members SEED_URL   prints "TOTAL NORMAL ..." of the seed's /nodes, fails if it cannot
# (see harness.sh).
: "${TEST_NAME:?}" "${SUMMARY_LABEL:?}" "${KEEP_VAR:?}" "${PROJECT:?}" "${TOTAL:?}" \
  "${TIMEOUT:?}" "${POLL:?}" "${MEMBERS_DESC:?}" "${DKV_SEED_PORT:?}" "${DKV_NODE_PORTS:?}"

# Read by compose.yaml; the defaults there are the production ones.
export DKV_HEARTBEAT_INTERVAL=200ms
export DKV_HEALTHCHECK_INTERVAL=1s

# shellcheck source=scripts/lib/harness.sh
. "$(dirname "${BASH_SOURCE[0]}")/harness.sh" || exit 2

COMPOSE_FILES="${COMPOSE_FILES:--f compose.yaml}"
SCHEME="${SCHEME:-http}"
# shellcheck disable=SC2086  # COMPOSE_FILES is a list of arguments, split on purpose
compose() { scripts/compose.sh $COMPOSE_FILES -p "$PROJECT" "$@"; }

dump_logs() {
    echo "---- compose ps ($PROJECT) ----"
    compose ps 2>&1 || true
    echo "---- compose logs --tail=100 ($PROJECT) ----"
    compose logs --no-color --tail=100 2>&1 || true
    echo "---- end of logs ----"
}
teardown() {
    if [ "${!KEEP_VAR:-0}" = 1 ]; then
        say "$KEEP_VAR=1: leaving project $PROJECT up; remove it with:"
        say "  scripts/compose.sh -p $PROJECT down -v --remove-orphans"
    else
        say "tearing down project $PROJECT"
        # `down` also removes a container that is still disconnected, and then the network.
        compose down -v --remove-orphans --timeout 20 >"$WORK/down.log" 2>&1 \
            || { echo "$TEST_NAME: warning: teardown failed:"; cat "$WORK/down.log"; }
        # Each rebuild leaves the previous dkv image dangling (~40 MB): remove those, and
        # only those (the label is set in the Dockerfile).
        docker image prune -f --filter "label=org.opencontainers.image.title=dkv" >/dev/null 2>&1 || true
    fi
}

# ---------------------------------------------------------------- helpers
NODE_IDS=()    # container ids, in the order of NODE_URLS (container numbers)

seed_url() {
    local hp
    hp="$(compose port seed 9000 2>/dev/null | grep -m1 -E '^0\.0\.0\.0:[0-9]+$' || true)"
    [ -n "$hp" ] && SEED_URL="$SCHEME://127.0.0.1:${hp##*:}"
}

# Published IPv4 host port of a container's 8080. Docker allocates the IPv4 and IPv6
# bindings separately, so they can differ; host ports do not follow container numbers
# either, and change when a container is reconnected to its network: each lookup goes
# through the engine.
host_url() {
    local hp
    hp="$(docker port "$1" 8080/tcp 2>/dev/null | grep -m1 -E '^0\.0\.0\.0:[0-9]+$' || true)"
    [ -n "$hp" ] && echo "$SCHEME://127.0.0.1:${hp##*:}"
}

# kv-node containers in container-number order, with their published IPv4 port for 8080.
node_urls() {
    NODE_URLS=(); NODE_IDS=()
    local ids num id url
    ids="$(compose ps -q kv-node 2>/dev/null)" || return 1
    [ -n "$ids" ] || return 1
    while read -r num id; do
        url="$(host_url "$id")" || return 1
        [ -n "$url" ] || return 1
        NODE_URLS+=("$url"); NODE_IDS+=("$id")
    done < <(docker inspect -f '{{index .Config.Labels "com.docker.compose.container-number"}} {{.Id}}' $ids | sort -n)
}

# All containers of the project are running and healthy (prints the unhealthy ones).
all_healthy() {
    local ids out
    ids="$(compose ps -q 2>/dev/null)" || return 1
    [ -n "$ids" ] || return 1
    out="$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' $ids)" || return 1
    LAST_HEALTH="$(grep -v ' running healthy$' <<<"$out" || true)"
    [ -z "$LAST_HEALTH" ]
}


# start_cluster [DETAIL]: build the static binary, start the project with 3 nodes (DETAIL is
# added to the progress line), then the first check: the seed lists 3 normal members and
# every container is healthy within $TIMEOUT s. Aborts the test if any of it fails.
start_cluster() {
    say "building the static binary"
    if ! scripts/build-static.sh >/dev/null; then
        echo "$TEST_NAME: error: static build failed" >&2
        abort "static build failed"
    fi

    say "project $PROJECT: up --build --scale kv-node=3 (seed :$DKV_SEED_PORT, nodes $DKV_NODE_PORTS${1:-})"
    if ! compose up -d --build --scale kv-node=3 >"$WORK/up.log" 2>&1; then
        cat "$WORK/up.log"
        abort "compose up --build --scale kv-node=3 failed"
    fi

    if wait_for "$TIMEOUT" "3 normal members, all containers healthy" cluster_is 3; then
        pass "cluster of 3: seed lists 3 normal members, all containers healthy (${NODE_URLS[*]})"
    else
        abort "cluster of 3 did not form within ${TIMEOUT}s"
    fi
}
