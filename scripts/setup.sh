#!/usr/bin/env bash
# Install what the tests need on a Debian machine that has the Rust toolchain (rustup) and
# Docker, so that the one test command works on a fresh machine:
#     scripts/setup.sh && scripts/test.sh
# Idempotent: it installs only what is missing, and on a machine that has everything it changes
# nothing (and does not call apt-get at all). Runs as root, or as a user with sudo.
#
#   Debian packages   curl (compose and API tests), file (the static-binary check), python3 and
#                     diffutils (the compose tests), openssl (certificates for the compose TLS
#                     test), redis-tools and python3-redis (the RESP
#                     tests), chromium (the dashboard test), faketime (the clock-skew test),
#                     python3-venv (the schemathesis and kubernetes-validate venvs), g++ if there
#                     is no C++ compiler (libFuzzer), docker-compose if there is no Compose tool
#   Rust              the x86_64-unknown-linux-gnu target (scripts/build-static.sh, the image's
#                     static binary); cargo-fuzz (scripts/fuzz-test.sh --install-only)
#
# Options: --check   only report what is missing (exit 1 if anything is), install nothing.
# Exit: 0 when everything is in place; 1 with a message that says what failed and what to do.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive

CHECK=0
for arg in "$@"; do
    case "$arg" in
        --check) CHECK=1 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "usage: $0 [--check]" >&2; exit 2 ;;
    esac
done

TARGET=x86_64-unknown-linux-gnu
LIBFAKETIME=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
T0=$SECONDS
say() { printf '[setup %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { echo "setup: error: $*" >&2; exit 1; }
missing_any=0

# ---- the Rust toolchain (not installed here: the machine's own, from rustup)
command -v cargo >/dev/null \
    || die "cargo not found: install the Rust toolchain first (https://rustup.rs), then run $0 again"

# ---- Debian packages: each one only if what the tests use from it is missing
need=()
command -v curl >/dev/null || need+=(curl)
command -v file >/dev/null || need+=(file)
[ -x /usr/bin/python3 ] || need+=(python3)            # the tests call /usr/bin/python3 itself
command -v cmp >/dev/null || need+=(diffutils)
command -v openssl >/dev/null || need+=(openssl)
{ command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null; } || need+=(redis-tools)
/usr/bin/python3 -c 'import redis' 2>/dev/null || need+=(python3-redis)
command -v chromium >/dev/null || need+=(chromium)
[ -e "$LIBFAKETIME" ] || need+=(faketime)
# The venvs are made by the python3 on PATH (scripts/api-schema-test.sh, k8s-validate.sh).
{ command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null; } || need+=(python3-venv)
command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null || need+=(g++)
if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1 \
    && ! command -v docker-compose >/dev/null; then
    need+=(docker-compose)
fi

if [ "${#need[@]}" -eq 0 ]; then
    say "Debian packages: all present (curl, file, python3, diffutils, openssl, redis-tools, python3-redis, chromium, faketime, python3-venv)"
elif [ "$CHECK" = 1 ]; then
    say "Debian packages missing: ${need[*]}"
    missing_any=1
else
    command -v apt-get >/dev/null \
        || die "missing ${need[*]}, and this is not a Debian-like system (no apt-get): install the equivalents by hand"
    if [ "$(id -u)" = 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null; then
        # Without a terminal (CI), never wait for a password prompt: fail instead.
        if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi
    else
        die "missing ${need[*]}: run $0 as root, or install sudo, or as root: apt-get install ${need[*]}"
    fi
    say "installing: ${need[*]} (apt-get${SUDO[*]:+, with ${SUDO[*]}})"
    "${SUDO[@]}" apt-get update -q \
        || die "apt-get update failed (is the network or a Debian mirror reachable?); then run $0 again"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need[@]}" \
        || die "apt-get install ${need[*]} failed; see apt's message above"
fi

# ---- Rust: the target of the static build
if command -v rustup >/dev/null; then
    installed="$(rustup target list --installed 2>/dev/null || true)"   # no pipe into grep -q: SIGPIPE
    if grep -qx "$TARGET" <<<"$installed"; then
        say "rustup target $TARGET: present"
    elif [ "$CHECK" = 1 ]; then
        say "rustup target $TARGET: missing"
        missing_any=1
    else
        say "rustup target add $TARGET"
        rustup target add "$TARGET" || die "rustup target add $TARGET failed"
    fi
else
    say "no rustup: assuming cargo builds for $TARGET (the static build needs it)"
fi

# ---- cargo-fuzz (from crates.io, pinned; see fuzz/README.md)
if cargo fuzz --version >/dev/null 2>&1; then
    say "cargo-fuzz: present ($(cargo fuzz --version 2>/dev/null))"
elif [ "$CHECK" = 1 ]; then
    say "cargo-fuzz: missing"
    missing_any=1
else
    say "installing cargo-fuzz (scripts/fuzz-test.sh --install-only, about a minute)"
    scripts/fuzz-test.sh --install-only \
        || die "installing cargo-fuzz failed (scripts/fuzz-test.sh --install-only); it needs crates.io"
fi

# ---- what is optional or not ours to install: say so, do not fail
if cargo nextest --version >/dev/null 2>&1; then
    say "cargo-nextest: present"
else
    say "cargo-nextest: not installed; scripts/test.sh uses cargo test instead"
fi
if ! command -v docker >/dev/null; then
    say "warning: no 'docker' CLI: the container tests of scripts/test.sh will fail; install Docker, or run scripts/test.sh --no-compose"
elif ! docker info >/dev/null 2>&1; then
    say "warning: the Docker daemon is not reachable (docker info fails): start it before scripts/test.sh, or run scripts/test.sh --no-compose"
fi

if [ "$missing_any" = 1 ]; then
    say "missing pieces above: run $0 without --check to install them"
    exit 1
fi
say "ready: scripts/test.sh"
