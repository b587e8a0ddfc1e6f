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
#
# The sourcing script sets, before sourcing (with `set -uo pipefail`, from the repository root):
#   TEST_NAME      prefix of progress lines and messages, e.g. compose-test
#   SUMMARY_LABEL  first word of the summary line, e.g. compose
#   TOTAL          number of checks (abort counts the ones not run as failed)
# and defines dump_logs and teardown (they run only at exit, so they may come later).
: "${TEST_NAME:?}" "${SUMMARY_LABEL:?}" "${TOTAL:?}"

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
