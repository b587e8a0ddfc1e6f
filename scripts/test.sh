#!/usr/bin/env bash
# The one test command: every Rust test of the workspace (the abuse suite among them), 30 s of
# fuzzing per parser (scripts/fuzz-test.sh), the Kubernetes manifests' validation (scripts/k8s-validate.sh), the OpenAPI check
# (scripts/api-schema-test.sh), then the Docker tests (scripts/compose-test.sh,
# scripts/compose-restart-test.sh, scripts/compose-partition-test.sh, scripts/swarm-test.sh).
#     scripts/test.sh                # everything (what CI runs)
#     scripts/test.sh --no-compose   # without the Docker tests (quick local run)
# On a fresh machine, first install what the tests need: scripts/setup.sh && scripts/test.sh
# Exits non-zero if any part fails; every part runs even if an earlier one fails.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

COMPOSE=1
for arg in "$@"; do
    case "$arg" in
        --no-compose) COMPOSE=0 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "usage: $0 [--no-compose]" >&2; exit 2 ;;
    esac
done

# Say up front when a tool the tests use is missing (the tests that need it will fail, each
# naming its package); scripts/setup.sh installs them all.
if ! missing="$(scripts/setup.sh --check 2>&1)"; then
    echo "== warning: not everything the tests need is installed; run scripts/setup.sh first:"
    grep -E 'missing' <<<"$missing" | sed 's/^/   /'
fi

status=0
summary=()
t0=$SECONDS
if cargo nextest --version >/dev/null 2>&1; then
    echo "== cargo nextest run --workspace --no-fail-fast"
    # --no-tests=warn: a workspace without tests yet is not a failure
    cargo nextest run --workspace --no-fail-fast --no-tests=warn; rc=$?
    name="cargo nextest"
else
    echo "== cargo-nextest not installed; cargo test --workspace --no-fail-fast"
    cargo test --workspace --no-fail-fast; rc=$?
    name="cargo test"
fi
summary+=("$name: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s")
[ "$rc" -eq 0 ] || status=1

# The OpenAPI descriptions against a live seed and nodes (schemathesis, installed into a venv
# under target/ on first use), with the binary the cargo tests just built.
t0=$SECONDS
echo "== scripts/fuzz-test.sh"
scripts/fuzz-test.sh; rc=$?
summary+=("fuzzing: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s")
[ "$rc" -eq 0 ] || status=1

t0=$SECONDS
echo "== scripts/k8s-validate.sh"
scripts/k8s-validate.sh; rc=$?
summary+=("Kubernetes manifests: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s")
[ "$rc" -eq 0 ] || status=1

t0=$SECONDS
echo "== scripts/api-schema-test.sh"
DKV_BIN=target/debug/dkv scripts/api-schema-test.sh; rc=$?
summary+=("API schema test: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s")
[ "$rc" -eq 0 ] || status=1

if [ "$COMPOSE" = 1 ]; then
    t0=$SECONDS
    echo "== scripts/compose-test.sh"
    scripts/compose-test.sh; rc=$?
    summary+=("compose test: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s")
    [ "$rc" -eq 0 ] || status=1

    t0=$SECONDS
    echo "== scripts/compose-restart-test.sh"
    scripts/compose-restart-test.sh; rc=$?
    summary+=("compose restart test: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s")
    [ "$rc" -eq 0 ] || status=1

    t0=$SECONDS
    echo "== scripts/compose-partition-test.sh"
    scripts/compose-partition-test.sh; rc=$?
    summary+=("compose partition test: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s")
    [ "$rc" -eq 0 ] || status=1

    t0=$SECONDS
    echo "== scripts/swarm-test.sh"
    scripts/swarm-test.sh; rc=$?
    summary+=("swarm test: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s")
    [ "$rc" -eq 0 ] || status=1
else
    summary+=("compose tests: skipped (--no-compose)")
fi

echo "== test.sh summary"
printf '  %s\n' "${summary[@]}"
exit "$status"
