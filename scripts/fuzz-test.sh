#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads bytes from the network (fuzz/README.md):
# builds the fuzz targets with `cargo fuzz` on the stable toolchain, runs each one for a bounded
# time from its committed corpus, and fails if any finds a crash, a timeout or runs out of memory,
# printing the input that did it and how to reproduce it.
#     scripts/fuzz-test.sh                   # every target, FUZZ_SECONDS (30) each
#     scripts/fuzz-test.sh resp_frame query  # only these targets
#     scripts/fuzz-test.sh --install         # first install what is missing (cargo-fuzz), then run
#     scripts/fuzz-test.sh --install-only    # only install what is missing (what CI does first)
#     scripts/fuzz-test.sh --merge           # then add the new inputs that reach new code to fuzz/corpus/
# Environment: FUZZ_SECONDS per target (30), FUZZ_JOBS targets at once (the number of cores),
# FUZZ_TIMEOUT seconds one input may take (10), FUZZ_RSS_MB memory limit (2048).
# Exit: 0 when every target ran clean, 1 when one found something, 2 when a tool is missing.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

# The cargo-fuzz release this was written against; `cargo install --locked` keeps its build
# reproducible.
CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH="${FUZZ_SECONDS:-30}"
JOBS="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
ALL_TARGETS=(resp_frame transport_frame wire_message query seed_request)

usage() { sed -n '2,13p' "$0"; }

install=0
install_only=0
merge=0
targets=()
for arg in "$@"; do
    case "$arg" in
        --install) install=1 ;;
        --install-only) install=1; install_only=1 ;;
        --merge) merge=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "fuzz-test: unknown option $arg" >&2; usage >&2; exit 2 ;;
        *)
            if [[ " ${ALL_TARGETS[*]} " != *" $arg "* ]]; then
                echo "fuzz-test: no target $arg; the targets are: ${ALL_TARGETS[*]}" >&2
                exit 2
            fi
            targets+=("$arg") ;;
    esac
done
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for n in "$SECONDS_EACH" "$JOBS" "$TIMEOUT" "$RSS_MB"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz-test: FUZZ_SECONDS, FUZZ_JOBS, FUZZ_TIMEOUT and FUZZ_RSS_MB must be positive integers" >&2; exit 2; }
done

# ---- tools
have_cargo_fuzz() { cargo fuzz --version >/dev/null 2>&1; }
have_cxx() { command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null; }

command -v cargo >/dev/null || { echo "fuzz-test: cargo not found: install Rust (rustup)" >&2; exit 2; }
if ! have_cargo_fuzz && [ "$install" = 1 ]; then
    echo "== cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION --locked (about a minute)"
    t0=$SECONDS
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked || { echo "fuzz-test: installing cargo-fuzz failed" >&2; exit 2; }
    echo "cargo-fuzz installed in $((SECONDS - t0))s"
fi
if ! have_cargo_fuzz; then
    cat >&2 <<EOF
fuzz-test: cargo-fuzz is not installed. Install it from crates.io (about a minute):
    cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION --locked
or run: scripts/setup.sh (which installs everything the tests need) or scripts/fuzz-test.sh --install
EOF
    exit 2
fi
if ! have_cxx; then
    echo "fuzz-test: no C++ compiler: libfuzzer-sys builds libFuzzer from C++ (install g++: scripts/setup.sh)" >&2
    exit 2
fi
[ "$install_only" = 1 ] && { echo "fuzz-test: $(cargo fuzz --version) and a C++ compiler are installed"; exit 0; }

# ---- build
# --sanitizer none: the stable toolchain has no AddressSanitizer (-Zsanitizer is nightly-only);
# coverage instrumentation and libFuzzer need only stable flags (see fuzz/README.md).
# --codegen-units 16: cargo-fuzz's default of 1 makes the build a minute slower for little speed.
echo "== cargo fuzz build --sanitizer none (${targets[*]})"
t0=$SECONDS
build_failed=0
if [ "${#targets[@]}" = "${#ALL_TARGETS[@]}" ]; then
    cargo fuzz build --sanitizer none --codegen-units 16 || build_failed=1
else
    for t in "${targets[@]}"; do
        cargo fuzz build --sanitizer none --codegen-units 16 "$t" || build_failed=1
    done
fi
[ "$build_failed" = 0 ] || { echo "fuzz-test: building the fuzz targets failed" >&2; exit 1; }
echo "built in $((SECONDS - t0))s"

HOST="$(rustc -vV | sed -n 's/^host: //p')"
BIN_DIR="fuzz/target/$HOST/release"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dkv-fuzz.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# ---- run, JOBS targets at a time
# Each run reads the committed corpus (fuzz/corpus/<target>, never written) and writes what it
# finds to a scratch corpus in $WORK, with the target's dictionary (fuzz/dict/<target>.dict) when
# it has one; what breaks goes to fuzz/artifacts/<target>/, where `cargo fuzz run` also puts it.
run_one() {
    local t="$1" dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
    mkdir -p "$WORK/corpus/$t" "fuzz/artifacts/$t"
    "$BIN_DIR/$t" "$WORK/corpus/$t" "fuzz/corpus/$t" "${dict[@]}" \
        -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$WORK/$t.log" 2>&1
}

echo "== fuzzing ${#targets[@]} targets, ${SECONDS_EACH}s each, $JOBS at a time"
t0=$SECONDS
touch "$WORK/started"
declare -A status
for ((i = 0; i < ${#targets[@]}; i += JOBS)); do
    batch=("${targets[@]:i:JOBS}")
    pids=()
    for t in "${batch[@]}"; do
        run_one "$t" &
        pids+=($!)
    done
    for j in "${!batch[@]}"; do
        wait "${pids[$j]}"
        status[${batch[$j]}]=$?
    done
done

passed=0
failed=0
for t in "${targets[@]}"; do
    log="$WORK/$t.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    if [ "${status[$t]}" = 0 ]; then
        passed=$((passed + 1))
        printf '  %-16s ok: %s runs, %s\n' "$t" "${runs:-?}" "${cov:-cov: ?}"
        continue
    fi
    failed=$((failed + 1))
    printf '  %-16s FAILED (libFuzzer exit %s)\n' "$t" "${status[$t]}"
    found=$(find "fuzz/artifacts/$t" -type f -name '[a-z]*-[0-9a-f]*' -newer "$WORK/started" 2>/dev/null)
    saved="fuzz/artifacts/$t/fuzz-$(date +%Y%m%d-%H%M%S).log"
    cp "$log" "$saved"
    echo "---- $t: what failed (the whole output: $ROOT/$saved)"
    # The panic message, without the backtrace; then libFuzzer's own report.
    sed -n '/panicked at/,/^stack backtrace:/p' "$log" | grep -v '^stack backtrace:' | head -20
    sed -n '/^==[0-9]*== ERROR: libFuzzer/,$p' "$log" | grep -vE '^(stat::|NOTE:|      Combine)' | head -12
    if [ -z "$found" ]; then
        echo "---- $t: no input was saved"
        continue
    fi
    while IFS= read -r input; do
        cat <<EOF
---- $t: the input that failed: $ROOT/$input
reproduce:    $BIN_DIR/$t $input
  or:         cargo fuzz run --sanitizer none --codegen-units 16 $t $input
minimize it:  cargo fuzz tmin --sanitizer none --codegen-units 16 $t $input
then add a unit test with it next to the parser, fix, and run this script again.
EOF
    done <<<"$found"
done
echo "fuzzed in $((SECONDS - t0))s"

if [ "$merge" = 1 ] && [ "$failed" = 0 ]; then
    # Set cover over edges alone (no hit counts, no comparisons): the fewest inputs that reach code
    # the corpus does not, so it stays small.
    echo "== merging the new inputs that reach new code into fuzz/corpus/"
    for t in "${targets[@]}"; do
        before=$(find "fuzz/corpus/$t" -type f | wc -l)
        "$BIN_DIR/$t" -set_cover_merge=1 -use_counters=0 -use_cmp=0 "fuzz/corpus/$t" "$WORK/corpus/$t" \
            >"$WORK/$t.merge.log" 2>&1 \
            || { echo "  $t: merge failed"; tail -5 "$WORK/$t.merge.log"; }
        echo "  $t: $before -> $(find "fuzz/corpus/$t" -type f | wc -l) files"
    done
fi

echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
