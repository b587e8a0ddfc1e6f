#!/usr/bin/env bash
# The floor under bench/membership.sh's idle figure: N bare Tokio processes that wake once a
# second, on Tokio's timer (`sleep`) or a kernel timer (`timerfd`), and on Tokio's timer with a
# 200-byte TCP round trip each time (`rpc`), their CPU summed
# over every thread's /proc/PID/task/TID/schedstat over WINDOW seconds, as % of one core.
#
#   bench/idle-floor.sh [N]      (default 100; WINDOW=20)
#
# Only the processes it started are killed; the run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
CARGO_TARGET_DIR=target/bench-idle-floor cargo build --release -q --manifest-path bench/idle-floor/Cargo.toml
BIN=target/bench-idle-floor/release/idle-floor
timeout -s TERM 300 python3 - "$BIN" "$N" "${WINDOW:-20}" <<'PY'
import os, subprocess, sys, time

binary, n, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def cpu_ns(pids):
    total = 0
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def measure(mode):
    procs = []
    try:
        addr = f"127.0.0.1:{20000 + os.getpid() % 9000}"
        if mode in ("rpc", "tick-rpc", "tick-send"):
            procs.append(subprocess.Popen([binary, "server", addr]))
            time.sleep(0.5)  # the server binds before the clients connect; not a measurement
        clients = [subprocess.Popen([binary, mode, addr]) for _ in range(n)]
        procs += clients
        time.sleep(3)
        pids = [p.pid for p in clients]
        a = cpu_ns(pids)
        time.sleep(window)
        b = cpu_ns(pids)
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            sys.exit(f"idle-floor: {len(dead)} processes exited early")
        print(f"{n} processes, {mode:5}: {100 * (b - a) / 1e9 / window:.2f}% of a core ({(b - a) / 1e3 / window / n:.0f} µs a second each)")
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()


measure("sleep")
measure("timerfd")
measure("rpc")
measure("tick-rpc")
measure("tick-send")
PY
