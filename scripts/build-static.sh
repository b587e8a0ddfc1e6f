#!/usr/bin/env bash
# Build a statically linked `dkv` for the FROM-scratch container image.
#
# There is no container registry on the build machines, so the image cannot start from a
# base image with a libc: the binary has to carry everything. glibc with +crt-static does
# (glibc 2.36 still resolves /etc/hosts and Docker's DNS at 127.0.0.11 when static).
# `--target` is given explicitly so RUSTFLAGS apply only to the target binary, not to
# build scripts and proc macros, and so this build lives in its own directory
# (target/x86_64-unknown-linux-gnu/) without invalidating the ordinary host build.
#
# The image takes a copy of it from $IMAGE_BIN (see the Dockerfile): a directory whose name
# is the instruction, so that `docker compose up --build` before this script ran stops with
# "stat target/run-scripts-build-static.sh-first/dkv: file does not exist".
#
# Prints the path of the binary (relative to the repository root) on stdout; everything
# else goes to stderr.
set -euo pipefail

TARGET=x86_64-unknown-linux-gnu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

die() { echo "build-static: error: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
if command -v rustup >/dev/null; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        echo "build-static: installing rustup target $TARGET" >&2
        rustup target add "$TARGET" >&2 || die "rustup target add $TARGET failed"
    fi
fi

# The Dockerfile copies from the repository's own target/ directory (the build context),
# so a CARGO_TARGET_DIR pointing elsewhere would build a binary the image never sees.
BIN="target/$TARGET/release/dkv"
IMAGE_BIN="target/run-scripts-build-static.sh-first/dkv"   # keep in step with Dockerfile, .dockerignore
echo "build-static: cargo build --release --target $TARGET -p dkv (crt-static)" >&2
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --release --target "$TARGET" --target-dir "$ROOT/target" -p dkv >&2 \
    || die "cargo build failed"

[ -x "$BIN" ] || die "$BIN was not produced"

# Really static? `file` says "statically linked" or "static-pie linked"; a dynamic binary
# names an interpreter (ld-linux), which does not exist in a FROM-scratch image.
if command -v file >/dev/null; then
    info="$(file -b "$BIN")"
    case "$info" in
        *"dynamically linked"*|*interpreter*)
            die "$BIN is dynamically linked, it would not start in a FROM scratch image: $info" ;;
        *"statically linked"*|*"static-pie linked"*) ;;
        *) die "cannot tell whether $BIN is static: $info" ;;
    esac
elif command -v ldd >/dev/null; then
    out="$(ldd "$BIN" 2>&1 || true)"
    case "$out" in
        *"statically linked"*|*"not a dynamic executable"*) ;;
        *) die "$BIN is dynamically linked: $out" ;;
    esac
else
    die "neither 'file' nor 'ldd' is installed; cannot check that $BIN is static (install file: scripts/setup.sh)"
fi

mkdir -p "$(dirname "$IMAGE_BIN")" && cp -f "$BIN" "$IMAGE_BIN.tmp" && mv -f "$IMAGE_BIN.tmp" "$IMAGE_BIN" \
    || die "copying $BIN to $IMAGE_BIN (what the Dockerfile copies) failed"

echo "build-static: ok, static: $(du -h "$BIN" | cut -f1) $BIN (for the image: $IMAGE_BIN)" >&2
echo "$BIN"
