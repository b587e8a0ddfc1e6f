#!/usr/bin/env bash
# The one test command: every Rust test of the workspace (the abuse suite among them), the code's
# documentation built with warnings as errors, 30 s of fuzzing per parser (scripts/fuzz-test.sh),
# the Kubernetes manifests' validation (scripts/k8s-validate.sh), the OpenAPI check
# (scripts/api-schema-test.sh), fault injection with a history checker (scripts/nemesis-test.sh),
# then the Docker tests (scripts/compose-test.sh,
# scripts/compose-restart-test.sh, scripts/compose-partition-test.sh,
# scripts/compose-tls-test.sh, scripts/swarm-test.sh).
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
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
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
# step NAME CMD...: run one part, note its outcome and time for the summary, go on either way.
step() {
    local name=$1 t0=$SECONDS rc
    shift
    echo "== $*"
    "$@"; rc=$?
    summary+=("$name: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s")
    [ "$rc" -eq 0 ] || status=1
}

if cargo nextest --version >/dev/null 2>&1; then
    # --no-tests=warn: a workspace without tests yet is not a failure
    step "cargo nextest" cargo nextest run --workspace --no-fail-fast --no-tests=warn
else
    echo "== cargo-nextest is not installed (scripts/setup.sh installs it); falling back to cargo test"
    step "cargo test" cargo test --workspace --no-fail-fast
fi
# The code's documentation, private items included: a broken or ambiguous link is an error.
step "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --quiet
step "fuzzing" scripts/fuzz-test.sh
step "Kubernetes manifests" scripts/k8s-validate.sh
# The OpenAPI descriptions against a live seed and nodes (schemathesis, installed into a venv
# under target/ on first use), with the binary the cargo tests just built.
step "API schema test" env DKV_BIN=target/debug/dkv scripts/api-schema-test.sh
# 90 s of faults on a cluster of 5 with a history checker: no acknowledged write lost, no stale read.
step "fault injection" env DKV_BIN=target/debug/dkv scripts/nemesis-test.sh

if [ "$COMPOSE" = 1 ]; then
    step "compose test" scripts/compose-test.sh
    step "compose restart test" scripts/compose-restart-test.sh
    step "compose partition test" scripts/compose-partition-test.sh
    step "compose TLS test" scripts/compose-tls-test.sh
    step "swarm test" scripts/swarm-test.sh
else
    summary+=("compose tests: skipped (--no-compose)")
fi

echo "== test.sh summary"
printf '  %s\n' "${summary[@]}"
exit "$status"
