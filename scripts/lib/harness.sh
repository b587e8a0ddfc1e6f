# shellcheck shell=bash
# The harness of the tests against real containers: the Compose tests (through
# scripts/lib/compose-common.sh) and scripts/swarm-test.sh. Sourced, not run.
#
# What it provides:
#   - the tool checks (docker, curl, python3), PASSED/FAILED/START and a work directory $WORK
#   - say / pass / fail / abort, finish, and the EXIT/INT/TERM traps: the sourcing script's
#     teardown runs on every exit path, its dump_logs after a failure, and the last line is
#     "$SUMMARY_LABEL: P passed, F failed" (FINISHED=1 before an exit of its own skips them)
#   - py_helper FILE: writes a Python helper, the shared HTTP client (scripts/lib/node_client.py)
#     followed by the script's own code from stdin
#   - wait_for (polling with a deadline), cluster_is N (the seed lists N normal members and the
#     N node containers are healthy, their URLs in NODE_URLS), http_code, and check_curl_session
#     (the seed system's curl session, each request through another node)
#
# The sourcing script sets, before sourcing (with `set -uo pipefail`, from the repository root):
#   TEST_NAME      prefix of progress lines and messages, e.g. compose-test
#   SUMMARY_LABEL  first word of the summary line, e.g. compose
#   TOTAL          number of checks (abort counts the ones not run as failed)
#   POLL           seconds between two tries of wait_for
# and may set MEMBERS_DESC, how wait_for's timeout message names what seed_members printed
# (default: total/normal). It defines dump_logs and teardown (they run only at exit, so they
# may come later), and, before calling cluster_is:
#   seed_members SEED_URL   prints "TOTAL NORMAL ..." of the seed's /nodes, fails if it cannot
#   all_healthy             every container of the test is running and healthy; else false,
#                           with what is not in LAST_HEALTH
#   node_urls               NODE_URLS: the host URL of each node container, in order
#   seed_url                sets SEED_URL (called by cluster_is only while it is empty)
: "${TEST_NAME:?}" "${SUMMARY_LABEL:?}" "${TOTAL:?}" "${POLL:?}"
MEMBERS_DESC="${MEMBERS_DESC:-total/normal}"
SEED_URL="${SEED_URL:-}"
NODE_URLS=()

for tool in docker curl python3; do
    command -v "$tool" >/dev/null || {
        [ "$tool" = docker ] && pkg="Docker (docker.io)" || pkg="$tool"
        echo "$TEST_NAME: error: '$tool' is not installed: install $pkg (scripts/setup.sh installs what the tests need)" >&2
        exit 2
    }
done

PASSED=0
FAILED=0
FINISHED=0
START=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dkv-$TEST_NAME.XXXXXX")"

say() { printf '[%s %4ds] %s\n' "$TEST_NAME" "$((SECONDS - START))" "$*"; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }
abort() {  # the remaining checks cannot run: count them as failed and stop
    FAILED=$((TOTAL - PASSED))
    printf 'FAIL  %s (%d check(s) not run)\n' "$*" "$FAILED"
    finish
}

# The normal end: logs on failure, teardown, then the summary as the very last line.
finish() {
    FINISHED=1
    [ "$FAILED" -eq 0 ] || dump_logs
    teardown
    say "done in $((SECONDS - START))s"
    echo "$SUMMARY_LABEL: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit
}
# Any other exit (Ctrl-C, an unexpected error): still tear down.
on_exit() {
    local rc=$?
    if [ "$FINISHED" = 0 ]; then
        dump_logs
        teardown
        echo "$TEST_NAME: interrupted (exit $rc)"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# py_helper FILE: FILE gets the shared HTTP client, then the script's own Python from stdin.
py_helper() {
    { cat "$(dirname "${BASH_SOURCE[0]}")/node_client.py"; echo; cat; } >"$1"
}

# Exactly N members, all normal, and N node containers, all healthy, with known ports.
cluster_is() {
    local n="$1" got normal
    [ -n "$SEED_URL" ] || seed_url || return 1
    got="$(seed_members "$SEED_URL" 2>/dev/null)" || { LAST_MEMBERS="seed not answering"; return 1; }
    LAST_MEMBERS="$got"
    [ "${got%% *}" = "$n" ] || return 1
    read -r _ normal _ <<<"$got"
    [ "$normal" = "$n" ] || return 1
    all_healthy || return 1
    node_urls || return 1
    [ "${#NODE_URLS[@]}" -eq "$n" ]
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll every $POLL s until COMMAND succeeds.
# On a timeout it says what it last saw: LAST_MEMBERS and LAST_HEALTH (set by cluster_is)
# and LAST_OUT (set by the script's own commands). WAITED: the seconds it took.
wait_for() {
    local limit="$1" what="$2"; shift 2
    local deadline=$((SECONDS + limit)) t0=$SECONDS
    LAST_MEMBERS=""; LAST_HEALTH=""; LAST_OUT=""
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "timed out after ${limit}s waiting for $what"
            [ -z "$LAST_MEMBERS" ] || say "  last seen: seed members $MEMBERS_DESC = $LAST_MEMBERS"
            [ -z "$LAST_HEALTH" ] || say "  last seen: not healthy: $(tr '\n' ';' <<<"$LAST_HEALTH")"
            [ -z "$LAST_OUT" ] || say "  last seen: $LAST_OUT"
            return 1
        fi
        sleep "$POLL"
    done
    WAITED=$((SECONDS - t0))
    say "$what: after ${WAITED}s"
}

http_code() {  # http_code OUTFILE CURL-ARGS... -> prints the status code
    curl -sS -m 10 -o "$1" -w '%{http_code}' "${@:2}" 2>"$WORK/curl.err" || true
}

# check_curl_session WHAT: the seed system's curl session (PUT, GET, DELETE, GET), each request
# through another of the first three NODE_URLS; one check, named "curl session through WHAT".
check_curl_session() {
    local n1="${NODE_URLS[0]}" n2="${NODE_URLS[1]}" n3="${NODE_URLS[2]}" s1 s2 s3 s4 v2 detail
    s1="$(http_code "$WORK/b1" -X PUT --data-binary "John Doe" "$n1/put?key=user_123")"
    s2="$(http_code "$WORK/b2" "$n2/get?key=user_123")"
    s3="$(http_code "$WORK/b3" -X DELETE "$n3/delete?key=user_123")"
    s4="$(http_code "$WORK/b4" "$n1/get?key=user_123")"
    printf 'John Doe' >"$WORK/want"
    v2="$(head -c 100 "$WORK/b2" 2>/dev/null | tr -c '[:print:]' '.')"
    detail="PUT ${n1##*:} $s1, GET ${n2##*:} $s2 '$v2', DELETE ${n3##*:} $s3, GET ${n1##*:} $s4"
    if [ "$s1" = 204 ] && [ "$s2" = 200 ] && cmp -s "$WORK/b2" "$WORK/want" \
        && [ "$s3" = 204 ] && [ "$s4" = 404 ]; then
        pass "curl session through $1 ($detail)"
    else
        fail "curl session through $1 ($detail; want 204, 200 'John Doe', 204, 404)"
    fi
}
