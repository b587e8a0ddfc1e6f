#!/usr/bin/env bash
# The Docker Swarm test: deploy/swarm/stack.yml deployed with `docker stack deploy` on this
# engine, scaled, and updated one node at a time under a writer.
#
#   1. build the static binary and an image of it; deploy the stack with 3 nodes; wait until
#      the seed lists 3 normal members and every task is running and healthy
#   2. the seed system's curl session, each request through a different node's host port
#   3. 300 keys with distinct values written through rotating nodes
#   4. scale up to 5; 5. every key exact through rotating nodes
#   6. scale down to 3: `dkv leave` on the nodes of slots 4 and 5 (they hand their keys off and
#      exit 0, which the on-failure restart policy leaves alone), then `docker service scale`,
#      which removes the two finished slots; 3 normal members, the tasks of slots 1-3 untouched
#   7. every key exact through each remaining node, and 8. the nodes' /stats "keys" add up to
#      300 x min(replication factor, 3)
#   9. `docker service update --force` of the nodes (one at a time, stop-first, each waited for
#      until healthy) while a writer puts keys through whichever nodes are up: the update
#      completes without a rollback, every task is new, and every node is back as itself (same
#      ids and tokens: its slot's volume kept its data directory)
#  10. every write acknowledged during the update, and the 300 keys, read back exact
#  11. a second stack with deploy/swarm/tls.yml over it (certificates from scripts/make-certs.sh,
#      as Swarm secrets): 3 normal members listed by the seed over https, every task healthy
#      (their health checks go over TLS), a PUT and GETs through three nodes with
#      `curl --cacert`, and plain HTTP refused on a node's port and on the seed's
#  12. a third stack with deploy/swarm/hosts.yml over it, this host labelled dkv.seed and
#      dkv.node (labels it added are removed at the end), 1 node: the seed's record in its
#      volume names the member, and the seed restarted by `docker service update --force`
#      lists the same member and tokens at once and is not fresh (it restored its record)
#
# It needs an engine that can run Swarm services. If the engine is not in a swarm, the test
# makes it a single-node swarm (`docker swarm init --advertise-addr 127.0.0.1`) and leaves that
# swarm at the end; a swarm it finds is used and left as it was (this host must be a manager).
# Where the engine cannot do Swarm at all, the test says why and exits 0 ("swarm: skipped").
#
# Its own stack names, image tag and seed ports (19300, 19301 for TLS, 19302 for the pinned
# stack), short timings (heartbeat 200ms, healthcheck every 1s, update monitor 5s); nodes
# publish on host ports the engine picks. It always removes what it created: the stacks, their
# volumes and networks, its image, the labels it added, the swarm.
# Ends with "swarm: P passed, F failed"; exit status 0 only when F is 0.
#
# Environment (all optional):
#   SWARM_TEST_SEED_PORT   host port for the seed                (default 19300)
#   SWARM_TEST_TIMEOUT     seconds allowed for each wait         (default 120)
#   SWARM_TEST_KEEP=1      leave the stack (and the swarm) running afterwards, for debugging
#   SWARM_TEST_NO_BUILD=1  use the static binary already built, do not run cargo
#
# Functions reached only through wait_for "$@" and the traps look unreachable to shellcheck.
# shellcheck disable=SC2317
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

TEST_NAME=swarm-test
SUMMARY_LABEL=swarm
STACK="dkvswarm$$"
SEED_SERVICE="${STACK}_seed"
NODE_SERVICE="${STACK}_node"
IMAGE="dkv-swarmtest:$$"
KEYS=300
TIMEOUT="${SWARM_TEST_TIMEOUT:-120}"
POLL=0.5
TOTAL=12     # checks below; a check that cannot run counts as failed
DKV_BIN="target/x86_64-unknown-linux-gnu/release/dkv"

# Read by deploy/swarm/stack.yml when the stack is deployed; its defaults are the production ones.
export DKV_IMAGE="$IMAGE"
export DKV_SEED_PORT="${SWARM_TEST_SEED_PORT:-19300}"
export DKV_HEARTBEAT_INTERVAL=200ms
export DKV_HEALTHCHECK_INTERVAL=1s
# Longer than a node's restart in the rolling update, so the seed keeps it meanwhile.
export DKV_NODE_TTL=10s
export DKV_UPDATE_DELAY=1s
export DKV_UPDATE_MONITOR=5s

# shellcheck source=scripts/lib/harness.sh
. "$ROOT/scripts/lib/harness.sh" || exit 2

CREATED_SWARM=0
CREATED_GWBRIDGE=0
DEPLOYED=0
TLS_STACK="${STACK}tls"
TLS_DEPLOYED=0
HOSTS_STACK="${STACK}hosts"
HOSTS_DEPLOYED=0
LABELS_ADDED=""   # the placement labels this test put on the engine's swarm node (removed again)
BUILT_IMAGE=0
WRITER_PID=""

skip() {
    FINISHED=1
    say "SKIP: $*"
    echo "swarm: skipped"
    exit 0
}

# ---------------------------------------------------------------- swarm mode
# Use the engine's swarm if it is in one as a manager; make one if it is in none.
swarm_state() { docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null; }
enter_swarm() {
    local state
    state="$(swarm_state)" || skip "cannot talk to the Docker engine (docker info failed)"
    case "$state" in
        "active true")
            say "the engine is a swarm manager already: using its swarm (it stays as it is)" ;;
        "active false")
            skip "this engine is a swarm worker; run the test on a manager" ;;
        "inactive "*)
            docker network inspect docker_gwbridge >/dev/null 2>&1 || CREATED_GWBRIDGE=1
            say "docker swarm init --advertise-addr 127.0.0.1 (left again at the end)"
            if ! docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 \
                >"$WORK/init.log" 2>&1; then
                skip "this engine cannot enter swarm mode: $(tr '\n' ' ' <"$WORK/init.log")"
            fi
            CREATED_SWARM=1 ;;
        *)
            skip "the engine's swarm state is '${state% *}' (pending, error or locked); not touching it" ;;
    esac
}

# ---------------------------------------------------------------- teardown
stack_containers() { docker ps -aq --filter "label=com.docker.stack.namespace=$1"; }
stack_networks() { docker network ls -q --filter "label=com.docker.stack.namespace=$1"; }
gone() { [ -z "$("$@" 2>/dev/null)" ]; }

dump_logs() {
    [ "$DEPLOYED" = 1 ] && dump_stack "$STACK"
    [ "$TLS_DEPLOYED" = 1 ] && dump_stack "$TLS_STACK"
    [ "$HOSTS_DEPLOYED" = 1 ] && dump_stack "$HOSTS_STACK"
    return 0
}
dump_stack() {
    echo "---- docker service ps ($1) ----"
    docker service ps --no-trunc --format '{{.Name}} {{.CurrentState}} {{.DesiredState}} {{.Error}}' \
        "$1_seed" "$1_node" 2>&1 || true
    for s in "$1_seed" "$1_node"; do
        echo "---- docker service logs --tail 60 $s ----"
        docker service logs --no-trunc --tail 60 "$s" 2>&1 || true
    done
    echo "---- end of logs ----"
}

stop_writer() {
    if [ -n "$WRITER_PID" ]; then
        touch "$WORK/stop"
        local deadline=$((SECONDS + 30))
        while kill -0 "$WRITER_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        kill "$WRITER_PID" 2>/dev/null || true
        wait "$WRITER_PID" 2>/dev/null || true
        WRITER_PID=""
    fi
}

# Remove stack $1 with its volumes, network and secrets.
remove_stack() {
    say "removing stack $1, its volumes and network"
    docker stack rm "$1" >"$WORK/rm.log" 2>&1 || cat "$WORK/rm.log"
    # Services go at once, their containers shortly after; volumes in use cannot be removed.
    wait_for 60 "the stack's containers to go" gone stack_containers "$1" >/dev/null \
        || say "warning: containers of $1 still exist: $(stack_containers "$1" | tr '\n' ' ')"
    if ! wait_for 30 "the stack's network to go" gone stack_networks "$1" >/dev/null; then
        # shellcheck disable=SC2046 # one network id per word
        docker network rm $(stack_networks "$1") >/dev/null 2>&1 \
            || say "warning: network of $1 not removed"
    fi
    local vols
    vols="$(docker volume ls -q --filter "label=com.docker.stack.namespace=$1")"
    if [ -n "$vols" ]; then
        # shellcheck disable=SC2086 # one volume name per word
        docker volume rm $vols >/dev/null || say "warning: volumes not removed: $vols"
    fi
}

teardown() {
    stop_writer
    if [ "${SWARM_TEST_KEEP:-0}" = 1 ]; then
        say "SWARM_TEST_KEEP=1: leaving stack $STACK up; remove it with:"
        say "  docker stack rm $STACK; docker volume rm \$(docker volume ls -q --filter label=com.docker.stack.namespace=$STACK)"
        [ "$CREATED_SWARM" = 0 ] || say "  docker swarm leave --force   (this test made the swarm)"
        return
    fi
    [ "$DEPLOYED" = 0 ] || remove_stack "$STACK"
    [ "$TLS_DEPLOYED" = 0 ] || remove_stack "$TLS_STACK"
    [ "$HOSTS_DEPLOYED" = 0 ] || remove_stack "$HOSTS_STACK"
    local label
    for label in $LABELS_ADDED; do
        docker node update --label-rm "$label" "$SELF_NODE" >/dev/null 2>&1 || say "warning: label $label not removed"
    done
    if [ "$BUILT_IMAGE" = 1 ]; then
        docker image rm "$IMAGE" >/dev/null 2>&1 || say "warning: image $IMAGE not removed"
    fi
    if [ "$CREATED_SWARM" = 1 ]; then
        say "docker swarm leave --force (the test made the swarm)"
        docker swarm leave --force >"$WORK/leave.log" 2>&1 || cat "$WORK/leave.log"
        # The bridge that swarm containers use to reach the host: made for our tasks only.
        if [ "$CREATED_GWBRIDGE" = 1 ]; then
            docker network rm docker_gwbridge >/dev/null 2>&1 || true
        fi
    fi
}

py_helper "$WORK/ct.py" <"$ROOT/scripts/lib/ct.py"
ct() { python3 "$WORK/ct.py" "$@"; }

# sw.py: the writer that runs through the rolling update, and the read-back of what it wrote.
py_helper "$WORK/sw.py" <<'PY'
import collections, os, random, subprocess, sys, time

def docker(*args):
    return subprocess.run(("docker",) + args, capture_output=True, text=True, timeout=20).stdout

def task_urls(service):
    """Host URLs of the service's running containers (their ports change with every task)."""
    urls = []
    for cid in docker("ps", "-q", "--filter", "label=com.docker.swarm.service.name=" + service).split():
        for line in docker("port", cid, "8080/tcp").splitlines():
            if line.startswith("0.0.0.0:"):
                urls.append("http://127.0.0.1:" + line.rsplit(":", 1)[1])
                break
    return urls

def key(i):
    return "rw-%06d" % i

def value(i):
    r = random.Random(i * 104729 + 3)
    return ("rolling %06d|" % i).encode() + bytes(r.getrandbits(8) for _ in range(r.choice([0, 10, 200])))

def writer(service, acked_path, stop_path):
    """Put keys one after the other through the running nodes, in turn, until stop_path exists;
    append each key acknowledged (204) to acked_path. The tasks are listed again every second
    and after any failure, since the update replaces them (and their host ports)."""
    nodes, urls, listed = {}, [], 0.0
    attempts, errors, i = 0, collections.Counter(), 0
    with open(acked_path, "w") as out:
        while not os.path.exists(stop_path):
            if not urls or time.monotonic() - listed > 1.0:
                try:
                    urls = task_urls(service)
                except Exception:
                    urls = []
                listed = time.monotonic()
                nodes = {u: nodes.get(u) or Node(u) for u in urls}
                if not urls:
                    time.sleep(0.1)
                    continue
            url = urls[i % len(urls)]
            attempts += 1
            try:
                st, body = nodes[url].req("PUT", "/put?key=" + key(i), value(i))
                if st == 204:
                    out.write(key(i) + "\n"); out.flush()
                else:
                    errors["status %d" % st] += 1
                    listed = 0.0
            except Exception as e:
                errors[type(e).__name__] += 1
                listed = 0.0
            i += 1
    acked = sum(1 for _ in open(acked_path))
    print("writer: %d writes acknowledged of %d attempted; not acknowledged: %s"
          % (acked, attempts, ", ".join("%s x%d" % kv for kv in errors.most_common()) or "none"))

def read_acked(acked_path, urls):
    nodes = [Node(u) for u in urls]
    keys = [k.strip() for k in open(acked_path) if k.strip()]
    bad = []
    for n, k in enumerate(keys):
        i = int(k.split("-")[1])
        node = nodes[n % len(nodes)]
        try:
            st, body = node.req("GET", "/get?key=" + k)
            if st != 200:
                bad.append("GET %s via %s: status %d" % (k, node.url, st))
            elif body != value(i):
                bad.append("GET %s via %s: wrong value" % (k, node.url))
        except Exception as e:
            bad.append("GET %s via %s: %s" % (k, node.url, e))
    for b in bad[:10]:
        print("    " + b)
    print("    %d of %d acknowledged writes read back exact through %d node(s)"
          % (len(keys) - len(bad), len(keys), len(nodes)))
    return 1 if bad or not keys else 0

if sys.argv[1] == "writer":
    writer(*sys.argv[2:5])
elif sys.argv[1] == "read-acked":
    sys.exit(read_acked(sys.argv[2], sys.argv[3:]))
PY
sw() { python3 "$WORK/sw.py" "$@"; }

# ---------------------------------------------------------------- helpers
SEED_URL="http://127.0.0.1:$DKV_SEED_PORT"
NODE_URLS=()    # running node tasks in slot order: host URL of their 8080
NODE_SLOTS=()   # their slots
NODE_IDS=()     # their container ids

# Running node containers, sorted by task slot, with their published IPv4 port for 8080.
node_urls() {
    NODE_URLS=(); NODE_SLOTS=(); NODE_IDS=()
    local id slot hp
    while read -r slot id; do
        [ -n "$id" ] || continue
        hp="$(docker port "$id" 8080/tcp 2>/dev/null | grep -m1 -E '^0\.0\.0\.0:[0-9]+$')" || return 1
        NODE_URLS+=("http://127.0.0.1:${hp##*:}"); NODE_SLOTS+=("$slot"); NODE_IDS+=("$id")
    done < <(docker ps --filter "label=com.docker.swarm.service.name=$NODE_SERVICE" \
                --format '{{.ID}} {{.Label "com.docker.swarm.task.name"}}' 2>/dev/null \
             | awk '{ split($2, p, "."); print p[2], $1 }' | sort -n)
    [ "${#NODE_URLS[@]}" -gt 0 ]
}

# The running containers of the stack (default $STACK), all healthy (sets LAST_HEALTH to the others).
all_healthy() {
    local ids out
    ids="$(docker ps -q --filter "label=com.docker.stack.namespace=${1:-$STACK}")"
    [ -n "$ids" ] || { LAST_HEALTH="no running containers"; return 1; }
    # shellcheck disable=SC2086 # one id per word
    out="$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' $ids)" || return 1
    LAST_HEALTH="$(grep -v ' running healthy$' <<<"$out" || true)"
    [ -z "$LAST_HEALTH" ]
}

seed_members() { ct members "$@"; }   # "total normal"

# The slots of the node service's tasks, "1 2 3 ": those Swarm wants running, or all it keeps.
running_slots() { task_slots --filter desired-state=running; }
task_slots() {
    docker service ps "$@" --format '{{.Name}}' "$NODE_SERVICE" 2>/dev/null \
        | awk -F. '{ print $2 }' | sort -nu | tr '\n' ' '
}
# Slots 4 and 5 are gone from the service, finished tasks included (sets LAST_OUT).
only_slots_1_to_3() { LAST_OUT="slots of the service's tasks: $(task_slots)"; [ "$(task_slots)" = "1 2 3 " ]; }

# The containers of slots 4 and 5 have exited and the seed lists exactly 3 normal members.
left_and_gone() {
    local c running=0
    for c in "${LEAVERS[@]}"; do
        [ "$(docker inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ] && running=$((running + 1))
    done
    LAST_OUT="$running of ${#LEAVERS[@]} leaving containers still running"
    [ "$running" -eq 0 ] || return 1
    LAST_MEMBERS="$(ct members "$SEED_URL" 2>/dev/null)" || return 1
    [ "$LAST_MEMBERS" = "3 3" ]
}

update_state() { docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$NODE_SERVICE" 2>/dev/null; }
update_done() {
    LAST_OUT="update state: $(update_state)"
    case "$LAST_OUT" in
        *": completed") return 0 ;;
        *rollback*|*paused*) UPDATE_FAILED=1; return 0 ;;
        *) return 1 ;;
    esac
}

# The seed lists the members and tokens noted in $RING (sets LAST_OUT).
same_ring() { LAST_OUT="$(ct ring "$SEED_URL" 2>&1)" && [ "$LAST_OUT" = "$RING" ]; }

acked_count() { if [ -s "$WORK/acked" ]; then wc -l <"$WORK/acked"; else echo 0; fi; }
writer_has() { LAST_OUT="$(acked_count) writes acknowledged"; [ "$(acked_count)" -ge "$1" ]; }

# ---------------------------------------------------------------- the test
enter_swarm

# 1
if [ "${SWARM_TEST_NO_BUILD:-0}" = 1 ] && [ -x "$DKV_BIN" ]; then
    say "SWARM_TEST_NO_BUILD=1: image $IMAGE of the existing $DKV_BIN"
else
    say "building the static binary and image $IMAGE"
    if ! scripts/build-static.sh >/dev/null 2>"$WORK/build.log"; then
        tail -20 "$WORK/build.log"
        abort "static build failed"
    fi
fi
if ! docker build -q -t "$IMAGE" . >"$WORK/image.log" 2>&1; then
    cat "$WORK/image.log"
    abort "docker build failed"
fi
BUILT_IMAGE=1

say "docker stack deploy $STACK (seed :$DKV_SEED_PORT, 3 nodes on host ports the engine picks)"
DEPLOYED=1
if ! DKV_NODES=3 docker stack deploy --resolve-image never -c deploy/swarm/stack.yml "$STACK" \
    >"$WORK/deploy.log" 2>&1; then
    cat "$WORK/deploy.log"
    abort "docker stack deploy failed"
fi
if wait_for "$TIMEOUT" "3 normal members, all tasks healthy" cluster_is 3; then
    pass "cluster of 3: seed lists 3 normal members, all tasks running and healthy (${NODE_URLS[*]})"
else
    abort "cluster of 3 did not form within ${TIMEOUT}s"
fi

# 2: the seed system's curl session, each request through a different node
check_curl_session "3 nodes' host ports"

# 3
if ct write "$KEYS" "${NODE_URLS[@]}"; then
    pass "$KEYS keys written through rotating nodes (all 204)"
else
    abort "$KEYS keys written through rotating nodes"
fi

# 4
say "docker service scale $NODE_SERVICE=5"
if ! docker service scale --detach "$NODE_SERVICE=5" >"$WORK/scale5.log" 2>&1; then
    cat "$WORK/scale5.log"
    abort "scale up to 5: docker service scale failed"
elif wait_for "$TIMEOUT" "5 normal members, all tasks healthy" cluster_is 5; then
    pass "scale up to 5: seed lists 5 normal members, all tasks healthy (slots ${NODE_SLOTS[*]})"
else
    abort "scale up to 5: not 5 normal members and healthy tasks within ${TIMEOUT}s"
fi

# 5
if ct read "$KEYS" "${NODE_URLS[@]}"; then
    pass "after scale-up: all $KEYS keys read back exact through rotating nodes"
else
    fail "after scale-up: all $KEYS keys read back exact through rotating nodes"
fi

# 6: the nodes of slots 4 and 5 leave (hand their keys off, exit 0), then the service shrinks
KEEPERS=() LEAVERS=()
for i in "${!NODE_SLOTS[@]}"; do
    if [ "${NODE_SLOTS[$i]}" -le 3 ]; then KEEPERS+=("${NODE_IDS[$i]}"); continue; fi
    LEAVERS+=("${NODE_IDS[$i]}")
    say "dkv leave --node ${NODE_URLS[$i]} (slot ${NODE_SLOTS[$i]})"
    "$DKV_BIN" leave --node "${NODE_URLS[$i]}" >>"$WORK/leave.log" 2>&1 || cat "$WORK/leave.log"
done
t0=$SECONDS
if ! wait_for "$TIMEOUT" "slots 4 and 5 to leave and exit" left_and_gone; then
    fail "scale down: the nodes of slots 4 and 5 did not leave within ${TIMEOUT}s"
else
    codes="$(docker inspect -f '{{.State.ExitCode}}' "${LEAVERS[@]}" 2>&1 | tr '\n' ' ')"
    say "the leavers exited with status ${codes}; slots Swarm wants running: $(running_slots)"
    say "docker service scale $NODE_SERVICE=3"
    if ! docker service scale --detach "$NODE_SERVICE=3" >"$WORK/scale3.log" 2>&1; then
        cat "$WORK/scale3.log"
        fail "scale down to 3: docker service scale failed"
    elif wait_for "$TIMEOUT" "the tasks of slots 4 and 5 to be removed" only_slots_1_to_3 \
        && wait_for "$TIMEOUT" "3 normal members, 3 healthy tasks" cluster_is 3 \
        && [ "${NODE_IDS[*]}" = "${KEEPERS[*]}" ] && [ "$codes" = "0 0 " ]; then
        pass "scale down to 3: slots 4, 5 left (exit 0) and were removed, slots 1-3 untouched, 3 normal members ($((SECONDS - t0))s)"
    else
        fail "scale down to 3: want leavers' exit status 0 0, slots 1 2 3 with their containers (${KEEPERS[*]}) and 3 normal members; got exit status ${codes}slots $(task_slots)containers ${NODE_IDS[*]}, members ${LAST_MEMBERS:-?}"
    fi
fi

# 7
if node_urls && ct read-each "$KEYS" "${NODE_URLS[@]}"; then
    pass "after scale-down: all $KEYS keys read back exact through each of the ${#NODE_URLS[@]} nodes"
else
    fail "after scale-down: all $KEYS keys read back exact through each remaining node"
fi

# 8: every key on min(RF, 3) nodes: none lost, none left behind on a node that left
RF="$(ct field "${NODE_URLS[0]}" /stats replication_factor,replicas 2>/dev/null || true)"
case "$RF" in ''|*[!0-9]*) RF=3 ;; esac
R=$((RF < 3 ? RF : 3))
SUM_INFO=""
expected_sum_ok() {
    local total
    SUM_INFO="$(ct stats-sum "${NODE_URLS[@]}")" || return 1
    total="${SUM_INFO%% *}"
    case "$total" in ''|*[!0-9]*) return 1 ;; esac
    # user_123's tombstone may or may not be counted as a key: accept both.
    [ "$total" -eq $((KEYS * R)) ] || [ "$total" -eq $(((KEYS + 1) * R)) ]
}
if [ "${#NODE_URLS[@]}" -eq 3 ] && wait_for 30 "stats keys to add up" expected_sum_ok; then
    pass "after scale-down: sum of /stats keys = $SUM_INFO (= $KEYS x min(RF=$RF, 3))"
else
    fail "after scale-down: sum of /stats keys = ${SUM_INFO:-?}, want $((KEYS * R)) (= $KEYS x min(RF=$RF, 3)) or $(((KEYS + 1) * R)) with the tombstone"
fi

# 9: a rolling restart of every node under a writer
RING="$(ct ring "$SEED_URL" 2>&1)"
OLD_IDS=("${NODE_IDS[@]}")
python3 "$WORK/sw.py" writer "$NODE_SERVICE" "$WORK/acked" "$WORK/stop" >"$WORK/writer.log" 2>&1 &
WRITER_PID=$!
wait_for 30 "the writer to get going" writer_has 20 || true
before=$(acked_count)
say "docker service update --force $NODE_SERVICE (writer running, $before writes so far)"
UPDATE_FAILED=0
t0=$SECONDS
if ! docker service update --force --detach "$NODE_SERVICE" >"$WORK/update.log" 2>&1; then
    cat "$WORK/update.log"
    fail "rolling update: docker service update failed"
elif ! wait_for $((TIMEOUT * 2)) "the rolling update to finish" update_done || [ "$UPDATE_FAILED" = 1 ]; then
    fail "rolling update: did not complete within $((TIMEOUT * 2))s (${LAST_OUT:-?})"
else
    during=$(($(acked_count) - before))
    took=$((SECONDS - t0))
    reused=()
    if wait_for "$TIMEOUT" "3 normal members, all tasks healthy" cluster_is 3 \
        && wait_for 10 "the same ids and tokens" same_ring; then
        for c in "${OLD_IDS[@]}"; do
            [[ " ${NODE_IDS[*]} " == *" $c "* ]] && reused+=("$c")
        done
        if [ "${#reused[@]}" -eq 0 ] && [ "$during" -gt 0 ]; then
            pass "rolling update: completed in ${took}s, all 3 tasks new, same ids and tokens ($RING), $during writes acknowledged meanwhile"
        else
            fail "rolling update: containers not replaced: ${reused[*]:-none}; writes acknowledged during it: $during"
        fi
    else
        fail "rolling update: not back as the same 3 members (seed shows: ${LAST_OUT:-$LAST_MEMBERS}; before: $RING)"
    fi
fi
stop_writer
cat "$WORK/writer.log"

# 10
node_urls || true
if [ "${#NODE_URLS[@]}" -gt 0 ] && sw read-acked "$WORK/acked" "${NODE_URLS[@]}" \
    && ct read "$KEYS" "${NODE_URLS[@]}"; then
    pass "after the rolling update: every acknowledged write ($(acked_count)) and all $KEYS keys read back exact"
else
    fail "after the rolling update: every acknowledged write and all $KEYS keys read back exact"
fi

# 11: the same stack with TLS everywhere (deploy/swarm/tls.yml), its certificates as secrets
TLS_SEED_PORT=$((DKV_SEED_PORT + 1))
TLS_URLS=()
tls_curl() { curl -sS -m 10 --cacert "$WORK/tls/ca.pem" "$@"; }
# 3 normal members listed by the seed over https, every task healthy, the nodes' https URLs known.
tls_cluster_up() {
    local id hp
    LAST_MEMBERS="$(tls_curl "https://127.0.0.1:$TLS_SEED_PORT/nodes" 2>&1 | python3 -c '
import json, sys
try:
    nodes = json.load(sys.stdin)["nodes"]
except Exception as e:
    sys.exit("no membership from the seed: %s" % e)
print(len(nodes), sum(m["state"] == "normal" for m in nodes))')" || return 1
    [ "$LAST_MEMBERS" = "3 3" ] && all_healthy "$TLS_STACK" || return 1
    TLS_URLS=()
    for id in $(docker ps -q --filter "label=com.docker.swarm.service.name=${TLS_STACK}_node"); do
        hp="$(docker port "$id" 8080/tcp 2>/dev/null | grep -m1 -E '^0\.0\.0\.0:[0-9]+$')" || return 1
        TLS_URLS+=("https://127.0.0.1:${hp##*:}")
    done
    [ "${#TLS_URLS[@]}" -eq 3 ]
}
deploy_tls() {
    TLS_DEPLOYED=1 # from here on, the teardown removes whatever part of it was made
    DKV_NODES=3 DKV_SEED_PORT=$TLS_SEED_PORT DKV_TLS_DIR="$WORK/tls" docker stack deploy --resolve-image never \
        -c deploy/swarm/stack.yml -c deploy/swarm/tls.yml "$TLS_STACK" >"$WORK/deploy-tls.log" 2>&1
}
say "docker stack deploy $TLS_STACK with deploy/swarm/tls.yml (seed :$TLS_SEED_PORT)"
if ! scripts/make-certs.sh "$WORK/tls" >"$WORK/certs.log" 2>&1; then
    cat "$WORK/certs.log"
    fail "TLS stack: scripts/make-certs.sh failed"
elif ! deploy_tls; then
    cat "$WORK/deploy-tls.log"
    fail "TLS stack: docker stack deploy failed"
elif ! wait_for "$TIMEOUT" "3 normal members over TLS, all tasks healthy" tls_cluster_up; then
    fail "TLS stack: 3 normal members and healthy tasks not seen within ${TIMEOUT}s (seed: ${LAST_MEMBERS:-?})"
else
    T1="${TLS_URLS[0]}" T2="${TLS_URLS[1]}" T3="${TLS_URLS[2]}"
    s1="$(tls_curl -o /dev/null -w '%{http_code}' -X PUT --data-binary "over TLS" "$T1/put?key=tls_key" 2>&1)"
    v2="$(tls_curl "$T2/get?key=tls_key" 2>&1)"
    v3="$(tls_curl "$T3/get?key=tls_key" 2>&1)"
    plain_node="$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "http://${T1#https://}/health" 2>/dev/null)"
    plain_seed="$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TLS_SEED_PORT/nodes" 2>/dev/null)"
    detail="PUT ${T1##*:} $s1, GET ${T2##*:} '$v2', GET ${T3##*:} '$v3', plain HTTP to a node ${plain_node:-none}, to the seed ${plain_seed:-none}"
    if [ "$s1" = 204 ] && [ "$v2" = "over TLS" ] && [ "$v3" = "over TLS" ] \
        && { [ -z "$plain_node" ] || [ "$plain_node" = 000 ]; } && { [ -z "$plain_seed" ] || [ "$plain_seed" = 000 ]; }; then
        pass "TLS stack: 3 normal members over https, tasks healthy over TLS, $detail"
    else
        fail "TLS stack: want PUT 204, both GETs 'over TLS' and no answer in plain HTTP; got $detail"
    fi
fi

# 12: the stack pinned to hosts (deploy/swarm/hosts.yml) on this one host, labelled as both the
# seed's host and a node's: the seed keeps its record of the membership in its volume there, so
# the seed restarted by an update comes back with the member at once, not fresh (a seed without
# a record is fresh for a TTL, and lists only the members that registered again)
HOSTS_SEED_PORT=$((DKV_SEED_PORT + 2))
HOSTS_SEED="http://127.0.0.1:$HOSTS_SEED_PORT"
hosts_seed_task() { docker ps -q --filter "label=com.docker.swarm.service.name=${HOSTS_STACK}_seed"; }
hosts_up() { LAST_MEMBERS="$(ct members "$HOSTS_SEED" 2>/dev/null)" && [ "$LAST_MEMBERS" = "1 1" ] && all_healthy "$HOSTS_STACK"; }
# A new seed task answers; sets SEED_FRESH to the first "fresh" it gave and SEED_RING to its ring.
restarted_seed_answers() {
    local task
    task="$(hosts_seed_task)"
    LAST_OUT="seed task ${task:-none} (before: $OLD_SEED)"
    [ -n "$task" ] && [ "$task" != "$OLD_SEED" ] || return 1
    [ -n "$SEED_FRESH" ] || SEED_FRESH="$(ct field "$HOSTS_SEED" /health fresh 2>/dev/null)"
    [ -n "$SEED_FRESH" ] || return 1
    SEED_RING="$(ct ring "$HOSTS_SEED" 2>&1)"
    [ "$SEED_RING" = "$RING" ] || [ "$SEED_FRESH" = True ]
}
SELF_NODE=""   # this engine's node in the swarm (`docker node update` does not take "self")
label_self() {
    local label
    SELF_NODE="$(docker info --format '{{.Swarm.NodeID}}')" && [ -n "$SELF_NODE" ] || return 1
    for label in dkv.seed dkv.node; do
        if [ -z "$(docker node inspect -f "{{index .Spec.Labels \"$label\"}}" "$SELF_NODE" 2>/dev/null)" ]; then
            docker node update --label-add "$label=true" "$SELF_NODE" >/dev/null || return 1
            LABELS_ADDED="$LABELS_ADDED $label"
        fi
    done
}
say "docker stack deploy $HOSTS_STACK with deploy/swarm/hosts.yml (seed :$HOSTS_SEED_PORT, 1 node)"
HOSTS_DEPLOYED=1
if ! label_self; then
    fail "pinned stack: could not label this host dkv.seed and dkv.node"
elif ! DKV_NODES=1 DKV_SEED_PORT=$HOSTS_SEED_PORT docker stack deploy --resolve-image never \
    -c deploy/swarm/stack.yml -c deploy/swarm/hosts.yml "$HOSTS_STACK" >"$WORK/deploy-hosts.log" 2>&1; then
    cat "$WORK/deploy-hosts.log"
    fail "pinned stack: docker stack deploy failed"
elif ! wait_for "$TIMEOUT" "the pinned stack's member normal, tasks healthy" hosts_up; then
    fail "pinned stack: 1 normal member and healthy tasks not seen within ${TIMEOUT}s (seed: ${LAST_MEMBERS:-?}; ${LAST_HEALTH:-})"
else
    RING="$(ct ring "$HOSTS_SEED" 2>&1)" OLD_SEED="$(hosts_seed_task)" SEED_FRESH="" SEED_RING=""
    record="$(docker volume inspect -f '{{.Mountpoint}}' "${HOSTS_STACK}_seed-record" 2>/dev/null)/membership.json"
    recorded="$(python3 -c '
import json, sys
try:
    print(" ".join(str(m["id"]) for m in json.load(open(sys.argv[1]))["nodes"]))
except Exception as e:
    print("none (%s)" % e)' "$record")"
    timeout 120 docker service update -q --force "${HOSTS_STACK}_seed" >"$WORK/update-seed.log" 2>&1 \
        || say "docker service update of the seed: $(tr '\n' ' ' <"$WORK/update-seed.log")"
    if ! wait_for "$TIMEOUT" "the restarted seed to answer" restarted_seed_answers; then
        fail "pinned stack: the seed restarted by an update did not answer within ${TIMEOUT}s (${LAST_OUT:-})"
    elif [ "$SEED_FRESH" = False ] && [ "$SEED_RING" = "$RING" ] && [ "${RING%%:*}" = "$recorded" ]; then
        pass "pinned stack: the seed's record in its volume names the member ($recorded), and the seed restarted by an update lists it at once, not fresh"
    else
        fail "pinned stack: want the record naming the member and the restarted seed not fresh with the same ring; record: $recorded; fresh: $SEED_FRESH; ring: $SEED_RING (before: $RING)"
    fi
fi

finish
