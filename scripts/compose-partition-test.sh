#!/usr/bin/env bash
# The Docker Compose partition test: one node's container is cut off from the project network
# (`docker network disconnect`) while writes go on through the other two, then reconnected.
# No acknowledged write may be lost, and all replicas must converge.
#
#   1. `compose up --build --scale kv-node=3`; wait until the seed lists 3 normal members and
#      every container is healthy
#   2. 100 keys written through rotating nodes; wait until every node holds all 100
#   3. `docker network disconnect` the third node (its address and host port noted first)
#   4. 200 writes through the other two nodes only: 125 new keys, 50 overwrites of old keys and
#      25 second overwrites (through the other coordinator), each answered 204; then the partition
#      is held until both coordinators hold hints for every write they sent (the replica's
#      request timed out), so the return has to go through hints and anti-entropy
#   5. `docker network connect` again: same container IP (the node advertises the address it had
#      at start), the seed still lists 3 normal members at the same addresses
#   6. every node's /stats "keys" reaches the 225 distinct keys (N=3 on 3 nodes: each node holds
#      every key), polled with a deadline
#   7. every key read through each node with r=all: the newest acknowledged value, exact bytes
#   8. every key read through each node with r=1, which answers from the node's own copy when it
#      has one: each replica itself holds the newest acknowledged value
#
# Short timings (heartbeat 200ms, anti-entropy every 2s) but a long node TTL (60s), so the
# partitioned node stays a member throughout and its return exercises hinted hand-off and
# anti-entropy rather than expiry and a re-join. Its own project name and host ports (seed 19100,
# nodes 18113-18199), so it disturbs neither scripts/compose-up.sh nor scripts/compose-test.sh,
# and it always tears its project down.
# Ends with "partition: P passed, F failed"; exit status 0 only when F is 0.
#
# Environment (all optional):
#   PARTITION_TEST_SEED_PORT   host port for the seed            (default 19100)
#   PARTITION_TEST_NODE_PORTS  host port range for the nodes     (default 18113-18199)
#   PARTITION_TEST_TIMEOUT     seconds allowed for cluster start (default 120)
#   PARTITION_TEST_CONVERGE    seconds allowed for convergence   (default 60)
#   PARTITION_TEST_KEEP=1      leave the cluster running afterwards (for debugging)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROJECT="dkvpart$$"
TIMEOUT="${PARTITION_TEST_TIMEOUT:-120}"
CONVERGE="${PARTITION_TEST_CONVERGE:-60}"
HINT_WAIT=30   # longest the partition is held waiting for the coordinators' hints
TOTAL=8        # checks below; a check that cannot run counts as failed

# Read by compose.yaml; the defaults there are the production ones.
export DKV_NODE_TTL=60s
export DKV_ANTI_ENTROPY_INTERVAL=2s
export DKV_SEED_PORT="${PARTITION_TEST_SEED_PORT:-19100}"
export DKV_NODE_PORTS="${PARTITION_TEST_NODE_PORTS:-18113-18199}"
export DKV_RESP_PORTS="16420-16439"

# The framework: say/pass/fail/abort/finish, teardown on every exit, cluster_is, wait_for...
TEST_NAME=partition-test SUMMARY_LABEL=partition KEEP_VAR=PARTITION_TEST_KEEP
POLL=0.25 MEMBERS_DESC="(total normal epoch addrs)"
. "$ROOT/scripts/lib/compose-common.sh" || exit 2
STATE="$WORK/writes.json"

# ---------------------------------------------------------------- python helper
# The writes (and which were acknowledged, kept in $STATE), /stats, and the reads.
py_helper "$WORK/pt.py" <<'PY'
import http.client, json, random, sys, time, urllib.parse

BASE, NEW, OVER, OVER2 = 100, 125, 50, 25   # keys before; new keys, overwrites, second overwrites

def key(i):
    k = "pt-%04d" % i
    if i % 25 == 7:                    # some keys that need URL encoding
        k += " a/b&c=d?e%f+g\u00e9"
    return k

def value(i, gen):
    r = random.Random(i * 7919 + gen * 104729 + 3)   # reproducible in the write and read phases
    n = r.choice([0, 1, 16, 100, 1000, 5000])
    return ("value %04d gen %d|" % (i, gen)).encode() + bytes(r.getrandbits(8) for _ in range(n))

def path(op, k, extra=""):
    return "/%s?key=%s%s" % (op, urllib.parse.quote(k.encode(), safe=""), extra)

def load(state):
    try:
        with open(state) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"attempts": {}, "via": {}}

def plan(phase):
    """(key index, node slot) pairs in write order; generations follow the order per key."""
    if phase == "base":
        return [(i, i) for i in range(BASE)]
    ops = [BASE + k for k in range(NEW)] + list(range(OVER)) + list(range(OVER2))
    random.Random(42).shuffle(ops)
    return [(i, j) for j, i in enumerate(ops)]

def write(state, phase, urls):
    st = load(state)
    nodes = [Node(u) for u in urls]
    bad, lat, t0 = [], [], time.monotonic()
    for i, slot in plan(phase):
        n = nodes[slot % len(nodes)]
        att = st["attempts"].setdefault(str(i), [])
        gen = len(att) + 1
        t = time.monotonic()
        try:
            code, body = n.req("PUT", path("put", key(i)), value(i, gen))
            err = None if code == 204 else "status %d: %s" % (code, body[:200].decode("utf-8", "replace").strip())
        except Exception as e:
            err = str(e)
        lat.append(time.monotonic() - t)
        att.append([gen, err is None])
        if err is None:
            st["via"][phase] = st["via"].get(phase, {})
            st["via"][phase][n.url] = st["via"][phase].get(n.url, 0) + 1
        else:
            bad.append("PUT %r gen %d via %s: %s" % (key(i), gen, n.url, err))
    with open(state, "w") as f:
        json.dump(st, f)
    for b in bad[:10]:
        print("    " + b)
    if len(bad) > 10:
        print("    ... and %d more" % (len(bad) - 10))
    lat.sort()
    print("    %d of %d writes acknowledged (204) through %d node(s) in %.2fs; latency median %.1f ms, max %.1f ms"
          % (len(lat) - len(bad), len(lat), len(nodes), time.monotonic() - t0,
             1000 * lat[len(lat) // 2], 1000 * lat[-1]))
    return 1 if bad else 0

def key_range(st):
    """(keys with an acknowledged write, keys with any write)."""
    att = st["attempts"].values()
    return sum(1 for a in att if any(ok for _, ok in a)), len(st["attempts"])

def converged(state, urls):
    """One sample: every node holds every key (N >= nodes), or the sum fits N copies each."""
    lo, hi = key_range(load(state))
    try:
        ss = [Node(u).stats() for u in urls]
    except Exception as e:
        print("stats: %s" % e); return 1
    keys = [int(s["keys"]) for s in ss]
    rf = min(int(s.get("replicas") or 3) for s in ss)
    print("keys per node %s (want %s each), hints pending %s"
          % (keys, lo if lo == hi else "%d..%d" % (lo, hi), [s.get("hints_pending") for s in ss]))
    if rf >= len(urls):
        return 0 if len(set(keys)) == 1 and lo <= keys[0] <= hi else 1
    c = min(rf, len(urls))
    return 0 if lo * c <= sum(keys) <= hi * c else 1

def counters(urls):
    """Replication counters, one line per node."""
    for u in urls:
        s = Node(u).stats(); r = s.get("requests", {})
        print("    %s id %s addr %s epoch %s keys %s: hints pending %s, hints delivered %s, entries by anti-entropy %s, read repairs %s"
              % (u.rsplit(":", 1)[1], s.get("id"), s.get("addr"), s.get("epoch"), s.get("keys"), s.get("hints_pending"),
                 r.get("hints_delivered"), r.get("repaired_by_sync"), r.get("read_repairs")))
    return 0

def hints_held(state, timeout, urls):
    """Poll until each coordinator has shown as many pending hints as partition writes it took.

    A hint is kept once a write's call to the cut-off replica failed (after the node's request
    timeout). Delivery attempts take the hints out of the store while they run, so the count is
    only visible between attempts: poll often and remember the highest count seen per node."""
    via = load(state)["via"].get("partition", {})
    want = {u: via.get(u, 0) for u in urls}
    seen = {u: 0 for u in urls}
    nodes = [Node(u) for u in urls]
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        for n in nodes:
            try:
                seen[n.url] = max(seen[n.url], int(n.stats().get("hints_pending") or 0))
            except Exception:
                pass
        if all(seen[u] >= want[u] for u in urls):
            print("after %.1fs: hints held %s" % (time.monotonic() - t0,
                  ", ".join("%s=%d/%d" % (u.rsplit(":", 1)[1], seen[u], want[u]) for u in urls)))
            return 0
        time.sleep(0.05)
    print("not within %ds: most hints seen %s" % (timeout,
          ", ".join("%s=%d/%d" % (u.rsplit(":", 1)[1], seen[u], want[u]) for u in urls)))
    return 1

def verify(state, r, urls):
    """Every key through every node with r=R: the newest acknowledged value, exact bytes."""
    st = load(state)
    nodes = [Node(u) for u in urls]
    bad, checked, over = [], 0, 0
    for si, att in sorted(st["attempts"].items(), key=lambda kv: int(kv[0])):
        i = int(si)
        last = max((k for k, (_, ok) in enumerate(att) if ok), default=None)
        # the newest acknowledged value; a later unacknowledged write may or may not have landed
        ok_values = {value(i, g): g for g, _ in att[(last or 0):]}
        may_be_absent = last is None
        over += len(att) > 1
        for n in nodes:
            checked += 1
            try:
                code, body = n.req("GET", path("get", key(i), "&r=" + r))
            except Exception as e:
                bad.append("GET %r r=%s via %s: %s" % (key(i), r, n.url, e)); continue
            if code == 404 and may_be_absent:
                continue
            if code != 200:
                bad.append("GET %r r=%s via %s: status %d" % (key(i), r, n.url, code))
            elif body not in ok_values:
                old = next((g for g, _ in att if value(i, g) == body), None)
                want = att[last][0] if last is not None else "?"
                bad.append("GET %r r=%s via %s: %s (want gen %s)" % (key(i), r, n.url,
                           "an older value, gen %d" % old if old else "wrong value (%d bytes)" % len(body), want))
    for b in bad[:10]:
        print("    " + b)
    if len(bad) > 10:
        print("    ... and %d more" % (len(bad) - 10))
    print("    %d of %d reads exact (%d keys, %d of them overwritten) through %d node(s)"
          % (checked - len(bad), checked, len(st["attempts"]), over, len(nodes)))
    return 1 if bad else 0

def members(seed):
    """total normal epoch addr,addr,..."""
    st, body = Node(seed).req("GET", "/nodes")
    if st != 200:
        print("0 0 0 status=%d" % st); return 1
    doc = json.loads(body)
    nodes = doc["nodes"]
    print(len(nodes), sum(1 for m in nodes if m.get("state") == "normal"), doc.get("epoch", "?"),
          ",".join(sorted(m.get("addr", "?") for m in nodes)))
    return 0

def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "write":      return write(a[0], a[1], a[2:])
    if cmd == "converged":  return converged(a[0], a[1:])
    if cmd == "counters":   return counters(a)
    if cmd == "hints-held": return hints_held(a[0], float(a[1]), a[2:])
    if cmd == "verify":     return verify(a[0], a[1], a[2:])
    if cmd == "members":    return members(a[0])
    if cmd == "range":      lo, hi = key_range(load(a[0])); print(lo, hi); return 0
    print("unknown command", cmd); return 2

sys.exit(main())
PY
pt() { python3 "$WORK/pt.py" "$@"; }

# ---------------------------------------------------------------- helpers
seed_members() { pt members "$@"; }   # "total normal epoch addr,addr,..."

converged() {  # one sample of the nodes' key counts, kept for the timeout message
    LAST_OUT="$(pt converged "$STATE" "$@" 2>&1)"
}

# network name and IPv4 address of a container ("" when it is on no network)
net_of() {
    docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}{{"\n"}}{{end}}' "$1" \
        2>/dev/null | grep -m1 . || true
}

# ---------------------------------------------------------------- the test
# 1 (start_cluster: build, up with 3 nodes, 3 normal members and all containers healthy)
start_cluster ", node TTL $DKV_NODE_TTL, anti-entropy every $DKV_ANTI_ENTROPY_INTERVAL"
MEMBERS_BEFORE="$LAST_MEMBERS"

# 2: the keys that exist before the partition, on every replica
if pt write "$STATE" base "${NODE_URLS[@]}" && wait_for 30 "every node holds the 100 keys" converged "${NODE_URLS[@]}"; then
    pass "100 keys written through rotating nodes (all 204), every node holds them"
else
    abort "100 keys before the partition: not all acknowledged or not on every node ($LAST_OUT)"
fi

# 3: cut the third node off its network
P_ID="${NODE_IDS[2]}"
P_NAME="$(docker inspect -f '{{.Name}}' "$P_ID" | sed 's|^/||')"
P_URL_BEFORE="${NODE_URLS[2]}"
A_URL="${NODE_URLS[0]}" B_URL="${NODE_URLS[1]}"
read -r NET P_IP <<<"$(net_of "$P_ID")"
P_NODE_ID="$(pt counters "$P_URL_BEFORE" | sed -n 's/.* id \([^ ]*\) .*/\1/p')"
say "cutting off $P_NAME (node $P_NODE_ID, $P_IP on $NET, host port ${P_URL_BEFORE##*:}); writes go through ${A_URL##*:} and ${B_URL##*:}"
if [ -z "$NET" ] || [ -z "$P_IP" ]; then
    abort "could not find the network and address of $P_NAME"
fi
if docker network disconnect "$NET" "$P_ID" >"$WORK/disc.log" 2>&1 && [ -z "$(net_of "$P_ID")" ]; then
    T_CUT=$SECONDS
    pass "partition: $P_NAME disconnected from $NET (it was $P_IP), it is on no network now"
else
    cat "$WORK/disc.log"
    abort "docker network disconnect $NET $P_NAME failed"
fi

# 4: writes through the two reachable nodes; W=2 of N=3 can still be met
if pt write "$STATE" partition "$A_URL" "$B_URL"; then
    pass "during the partition: 200 writes (125 new keys, 50 overwrites, 25 second overwrites) through ${A_URL##*:} and ${B_URL##*:}, all 204"
else
    fail "during the partition: not every write through the two reachable nodes was acknowledged"
fi
# Hold the partition until the writes' calls to the cut-off replica have given up (after the
# node's request timeout) and became hints, so they cannot simply arrive late over TCP.
say "holding the partition until both coordinators hold hints for their writes"
if out="$(pt hints-held "$STATE" "$HINT_WAIT" "$A_URL" "$B_URL")"; then
    say "  $out"
else
    say "  note: $out; reconnecting anyway (anti-entropy must still converge)"
fi

# 5: reconnect; the node must come back under the address it advertised at start
docker network connect "$NET" "$P_ID" >"$WORK/conn.log" 2>&1; rc=$?
read -r _ P_IP_AFTER <<<"$(net_of "$P_ID")"
if [ "$rc" -eq 0 ] && [ -n "$P_IP_AFTER" ] && [ "$P_IP_AFTER" != "$P_IP" ]; then
    # Docker chose another address: ask for the old one (only possible on networks with a
    # user-configured subnet; compose's default network has none).
    say "reconnected as $P_IP_AFTER, not $P_IP: reconnecting with --ip $P_IP"
    docker network disconnect "$NET" "$P_ID" >>"$WORK/conn.log" 2>&1
    docker network connect --ip "$P_IP" "$NET" "$P_ID" >>"$WORK/conn.log" 2>&1; rc=$?
    read -r _ P_IP_AFTER <<<"$(net_of "$P_ID")"
fi
say "partition lasted $((SECONDS - T_CUT))s; $P_NAME reconnected as ${P_IP_AFTER:-?}"
P_URL="$(host_url "$P_ID")"
reconnected() {  # the same 3 normal members at the same addresses, the node healthy, its port published
    P_URL="$(host_url "$P_ID")"
    [ -n "$P_URL" ] || { LAST_OUT="no host port published for $P_NAME"; return 1; }
    LAST_MEMBERS="$(pt members "$SEED_URL" 2>/dev/null)" || return 1
    [ "$(cut -d' ' -f1,2,4 <<<"$LAST_MEMBERS")" = "$(cut -d' ' -f1,2,4 <<<"$MEMBERS_BEFORE")" ] || return 1
    all_healthy && curl -sf -m 2 -o /dev/null "$P_URL/health"
}
if [ "$rc" -ne 0 ] || [ "$P_IP_AFTER" != "$P_IP" ]; then
    cat "$WORK/conn.log"
    fail "reconnect: $P_NAME is back as '${P_IP_AFTER:-nothing}', not its advertised $P_IP"
elif wait_for 30 "the node back: same members, healthy, reachable" reconnected; then
    pass "reconnect: $P_NAME back at $P_IP (host port ${P_URL_BEFORE##*:} -> ${P_URL##*:}), still one of 3 normal members (seed epoch $(cut -d' ' -f3 <<<"$MEMBERS_BEFORE") -> $(cut -d' ' -f3 <<<"$LAST_MEMBERS"))"
else
    fail "reconnect: $P_NAME is not back as a member at $P_IP within 30s"
fi
[ -n "$P_URL" ] || P_URL="$P_URL_BEFORE"
ALL_URLS=("$A_URL" "$B_URL" "$P_URL")

# 6: the replicas converge: each node holds every key
t0=$SECONDS
if wait_for "$CONVERGE" "every replica holds every key" converged "${ALL_URLS[@]}"; then
    pass "convergence after $((SECONDS - t0))s of reconnection: $LAST_OUT"
else
    fail "convergence: not within ${CONVERGE}s ($LAST_OUT)"
fi
say "replication counters (the partitioned node is ${P_URL##*:}):"
pt counters "${ALL_URLS[@]}" || true

# 7
if pt verify "$STATE" all "${ALL_URLS[@]}"; then
    pass "no acknowledged write lost: every key exact and newest through each of the 3 nodes (r=all)"
else
    fail "acknowledged writes read back through each of the 3 nodes (r=all)"
fi

# 8: r=1 answers from the node's own copy when it has one
if pt verify "$STATE" 1 "${ALL_URLS[@]}"; then
    pass "replicas converged: each node's own copy (r=1 through it) is the newest acknowledged value"
else
    fail "each node's own copy (r=1 through it) is the newest acknowledged value"
fi

finish
