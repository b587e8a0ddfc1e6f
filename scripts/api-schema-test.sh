#!/usr/bin/env bash
# The API schema test: schemathesis checks a live node and a live seed against the OpenAPI
# descriptions they serve at GET /openapi.json (crates/node/src/front/openapi.json and
# crates/seed/src/openapi.json). Every answer must match the description (status code, content
# type, headers, body schema; error bodies are one line of text) and no input may get a 5xx.
#
#   1. a Python venv with a pinned schemathesis (made once, then reused)
#   2. the debug binary: `cargo build -p dkv`, or $DKV_BIN (scripts/test.sh can pass
#      target/debug/dkv, which its cargo tests have just built with their own features)
#   3. on 127.0.0.1, free ports: a seed and 3 nodes with 100ms heartbeats and a cluster secret
#      (so the fuzzed /admin/* calls get 403 instead of stopping a node); a second, empty seed
#      without a secret for the fuzzed membership calls, so random registrations never reach the
#      nodes' ring
#   4. schemathesis against node 1, then against the second seed
#   5. stops exactly the processes it started, on every exit path: the nodes with /admin/stop
#      (no hand-off, as `dkv up` does), the seeds with SIGTERM, and by PID with SIGKILL whatever
#      is still running 5 s later
# The last line is "api-schema: P passed, F failed"; the exit status is 0 only when F is 0.
#
# Environment (all optional):
#   API_SCHEMA_VENV          where the venv lives   (default target/schemathesis-venv)
#   API_SCHEMA_MAX_EXAMPLES  cases per operation and phase (default 40)
#   API_SCHEMA_MAX_TIME      seconds of fuzzing for each of the two runs (default 50)
#   API_SCHEMA_SEED          hypothesis seed, to replay a run (default: random)
#   API_SCHEMA_KEEP=1        keep the work directory (logs, reports) afterwards
#   DKV_BIN                  a dkv binary to use instead of building one
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

SCHEMATHESIS_VERSION=4.32.5
VENV="${API_SCHEMA_VENV:-$ROOT/target/schemathesis-venv}"
MAX_EXAMPLES="${API_SCHEMA_MAX_EXAMPLES:-40}"
MAX_TIME="${API_SCHEMA_MAX_TIME:-50}"
NODES=3
START=$SECONDS

say() { printf '[api-schema %4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() {  # a missing tool or a setup failure: nothing was tested
    echo "api-schema: error: $*" >&2
    echo "api-schema: 0 passed, 2 failed"
    exit 2
}

# ---------------------------------------------------------------- tools
command -v cargo >/dev/null || [ -n "${DKV_BIN:-}" ] || die "cargo is not installed (or set DKV_BIN)"
command -v curl >/dev/null || die "curl is not installed: install curl (scripts/setup.sh)"
PYTHON="$(command -v python3)" || die "python3 is not installed: install python3 and python3-venv (scripts/setup.sh)"

if [ "$("$VENV/bin/st" --version 2>/dev/null)" != "st, version $SCHEMATHESIS_VERSION" ]; then
    say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV (once; about a minute)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" >/dev/null \
        || die "python3 -m venv failed: install Python's venv module (install python3-venv: scripts/setup.sh)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
        || die "pip install schemathesis==$SCHEMATHESIS_VERSION failed (PyPI must be reachable)"
fi
ST="$VENV/bin/st"

if [ -n "${DKV_BIN:-}" ]; then
    BIN="$DKV_BIN"
else
    say "cargo build -p dkv"
    cargo build -q -p dkv || die "cargo build -p dkv failed"
    BIN="$ROOT/target/debug/dkv"
fi
[ -x "$BIN" ] || die "no dkv binary at $BIN"

# ---------------------------------------------------------------- processes
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dkv-api-schema.XXXXXX")"
SEED_PIDS=()
NODE_PIDS=()
NODE_ADDRS=()
SECRET="api-schema-$RANDOM$RANDOM$RANDOM$RANDOM"
PASSED=0
FAILED=0

cleanup() {
    local pid addr deadline=$((SECONDS + 5))
    for addr in "${NODE_ADDRS[@]}"; do
        curl -fsS -m 2 -X POST -H "x-dkv-secret: $SECRET" "http://$addr/admin/stop" >/dev/null 2>&1 || true
    done
    for pid in "${SEED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${NODE_PIDS[@]}" "${SEED_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SEED_PIDS=()
    NODE_PIDS=()
    if [ "${API_SCHEMA_KEEP:-0}" = 1 ] || [ "$FAILED" -gt 0 ]; then
        say "logs and reports kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free ports, each checked by binding it (below the ephemeral range, so no client takes them).
read -r -a PORTS < <("$PYTHON" - "$((NODES + 2))" <<'EOF'
import random, socket, sys
ports = set()
while len(ports) < int(sys.argv[1]):
    p = random.randrange(20000, 30000)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
    ports.add(p)
print(*ports)
EOF
) || die "could not find free ports"

CLUSTER_SEED="127.0.0.1:${PORTS[0]}"
FUZZ_SEED="127.0.0.1:${PORTS[1]}"

start() {  # start NAME ARGS...: run `dkv ARGS` in the background, log to $WORK/NAME.log
    local name="$1"
    shift
    RUST_LOG="${RUST_LOG:-warn}" "$BIN" "$@" </dev/null >"$WORK/$name.log" 2>&1 &
    if [ "$1" = node ]; then NODE_PIDS+=("$!"); else SEED_PIDS+=("$!"); fi
}

# wait_until SECONDS WHAT COMMAND...: poll COMMAND every 100ms until it succeeds
wait_until() {
    local deadline=$((SECONDS + $1)) what="$2"
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out waiting for $what (logs in $WORK)"
        sleep 0.1
    done
}

cluster_normal() {  # the seed lists $NODES normal members and every node says it is healthy
    local n
    n="$(curl -fsS "http://$CLUSTER_SEED/nodes" | "$PYTHON" -c \
        'import json,sys; print(sum(m["state"] == "normal" for m in json.load(sys.stdin)["nodes"]))')" || return 1
    [ "$n" = "$NODES" ] || return 1
    for addr in "${NODE_ADDRS[@]}"; do curl -fsS "http://$addr/health" || return 1; done
}

say "starting a seed and $NODES nodes on 127.0.0.1 (logs in $WORK)"
start seed seed --new-cluster --listen "$CLUSTER_SEED" --node-ttl 2s --cluster-secret "$SECRET"
wait_until 20 "the seed at $CLUSTER_SEED" curl -fsS "http://$CLUSTER_SEED/health"
for i in $(seq 1 "$NODES"); do
    addr="127.0.0.1:${PORTS[$((i + 1))]}"
    NODE_ADDRS+=("$addr")
    start "node$i" node --listen "$addr" --advertise "$addr" --seed "$CLUSTER_SEED" \
        --heartbeat-interval 100ms --request-timeout 2s --cluster-secret "$SECRET"
done
wait_until 60 "$NODES normal nodes" cluster_normal
say "cluster of $NODES is normal"

# ---------------------------------------------------------------- schemathesis
# Statuses the descriptions document as refusals of bad input, besides schemathesis' defaults:
# 413 (a key or body over the limit) and 414 (a request target over the server's limit).
cat >"$WORK/schemathesis.toml" <<'EOF'
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422"]
EOF
# text/plain bodies (the one-line errors) are checked against their schema too.
cat >"$WORK/hooks.py" <<'EOF'
import schemathesis

@schemathesis.deserializer("text/plain")
def plain_text(ctx, response):
    return response.content.decode("utf-8")
EOF

SEED_ARGS=()
[ -n "${API_SCHEMA_SEED:-}" ] && SEED_ARGS=(--seed "$API_SCHEMA_SEED")

# run_schemathesis NAME URL [ARGS...]: one schemathesis run; counts it as passed or failed
run_schemathesis() {
    local name="$1" url="$2" rc
    shift 2
    say "schemathesis on the $name: $url"
    (cd "$WORK" && SCHEMATHESIS_HOOKS="$WORK/hooks.py" "$ST" --config-file "$WORK/schemathesis.toml" run "$url" \
        --checks all --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --workers 2 \
        --generation-database none --request-timeout 10 --no-color --output-sanitize false \
        --report junit --report-junit-path "$WORK/$name-junit.xml" "${SEED_ARGS[@]}" "$@") 2>&1 \
        | tee "$WORK/$name-schemathesis.log"
    rc="${PIPESTATUS[0]}"
    if [ "$rc" = 0 ]; then
        PASSED=$((PASSED + 1))
        say "PASS  $name conforms to its description"
    else
        FAILED=$((FAILED + 1))
        say "FAIL  $name: schemathesis exit $rc (its report above; log in $WORK/$name-schemathesis.log)"
    fi
}

# ASCII strings only: a key's limit is in bytes (after percent-decoding), and JSON Schema's
# maxLength counts characters, which are bytes only in ASCII. Keys of any bytes are the API
# tests' (crates/dkv/tests/api.rs).
run_schemathesis node "http://${NODE_ADDRS[0]}/openapi.json" --generation-codec ascii

# The membership calls run against a seed of their own, started now: it is fresh, so it also
# adopts presented views (which a seed does only within one TTL of starting).
start fuzz-seed seed --new-cluster --listen "$FUZZ_SEED" --node-ttl 10s
wait_until 20 "the seed at $FUZZ_SEED" curl -fsS "http://$FUZZ_SEED/health"
run_schemathesis seed "http://$FUZZ_SEED/openapi.json"

for pid in "${SEED_PIDS[@]}" "${NODE_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { FAILED=$((FAILED + 1)); say "FAIL  process $pid exited during the test"; }
done

say "done in $((SECONDS - START))s"
echo "api-schema: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
