#!/usr/bin/env bash
# Membership at scale: N in-memory nodes on 127.0.0.1 started at once with short heartbeats.
#
#   bench/membership.sh [N...]      (default: 100 200)
#   HB=1s WINDOW=30 bench/membership.sh 100
#
# For each N: a seed and N nodes (`--heartbeat-interval $HB`, no pinning: both cores), started
# together. Reports, from /proc/PID/stat sampled every second by one Python process:
# * start -> all N normal at the seed, and start -> quiet: the first second after that from
#   which the nodes' CPU stays, for 3 s, within 2x their idle CPU + 1% of a core;
# * idle CPU over WINDOW seconds (default 30) once quiet, as % of one core: the seed alone,
#   all N nodes together, and per node; and again over WINDOW seconds from STEADY seconds after
#   the start (default 60; 0 skips it), a window that may hold the anti-entropy rounds that
#   failed during the start-up, run again an interval (60 s) later;
# * a join: one more node starts; from the seed's epoch moving (it registered) to every one of
#   the N nodes reporting that epoch or a later one (each node's GET /health, polled in turn:
#   /cluster says the same epoch but carries the whole view), and the same for the epoch at
#   which it became normal.
# Every run is bounded (LIMIT seconds, default 240; it also stops below 2 GiB of free memory);
# only the processes it started are killed. dkv turns transparent huge pages off for itself
# (with them an idle node held 2.5x the memory; docs/performance-log.md, "Membership at scale").
# DKV=path uses that binary and builds nothing. LOGS=dir keeps each process's log there (the seed
# in 0.log; RUST_LOG says what they log). SEED_RECORD=1 gives the seed a record of the membership
# (`--data-dir`, a temporary directory), written at every change of the start.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100 200)
if [ -z "${DKV:-}" ]; then cargo build --release -q -p dkv; DKV=target/release/dkv; fi
for n in "${SIZES[@]}"; do
  # Below the ephemeral range (32768 up), where the nodes' own outgoing connections could take a
  # listening port first.
  P=$((10000 + RANDOM % 18000))
  timeout -s TERM "${LIMIT:-240}" python3 - "$DKV" "$n" "$P" "${HB:-1s}" "${WINDOW:-30}" "${STEADY:-60}" <<'PY' || echo "bench: the run with $n nodes failed or timed out" >&2
import http.client, json, os, signal, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

dkv, n, port, hb, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
steady_at = int(sys.argv[6])
hz = os.sysconf("SC_CLK_TCK")
procs = []
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def spawn(*args):
    err = subprocess.DEVNULL
    if os.environ.get("LOGS"):
        err = open(os.path.join(os.environ["LOGS"], f"{len(procs)}.log"), "w")
    p = subprocess.Popen([dkv, *args], stdout=subprocess.DEVNULL, stderr=err)
    procs.append(p)
    return p


def ticks(pids):
    t = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return t


def get(p, path, timeout=2.0):
    c = http.client.HTTPConnection("127.0.0.1", p, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return json.loads(r.read())
    finally:
        c.close()


def seed_view():
    return get(port, "/nodes")


def mem_available_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / (1 << 20)
    return 1e9


def pct(dt_ticks, seconds):
    return 100.0 * dt_ticks / hz / seconds


record = []
try:
    if os.environ.get("SEED_RECORD") == "1":
        import tempfile
        record = ["--data-dir", tempfile.mkdtemp(prefix="dkv-seed-record-")]
    seed = spawn("seed", "--new-cluster", "--listen", f"127.0.0.1:{port}", *record)
    for _ in range(300):
        try:
            get(port, "/health")
            break
        except OSError:
            time.sleep(0.01)
    t0 = time.monotonic()
    nodes = [spawn("node", "--listen", f"127.0.0.1:{port + 1 + i}", "--seed", f"127.0.0.1:{port}",
                   "--heartbeat-interval", hb) for i in range(n)]
    node_pids = [p.pid for p in nodes]
    # One CPU sample per second from the start: (t, seed ticks, nodes' ticks).
    samples = [(time.monotonic(), ticks([seed.pid]), ticks(node_pids))]
    t_normal = None
    while time.monotonic() - t0 < 120:
        time.sleep(max(0.0, samples[-1][0] + 1.0 - time.monotonic()))
        samples.append((time.monotonic(), ticks([seed.pid]), ticks(node_pids)))
        if mem_available_gib() < 2:
            sys.exit(f"bench: under 2 GiB of memory left with {n} nodes; stopping them")
        if t_normal is None:
            try:
                v = seed_view()
                if sum(m["state"] == "normal" for m in v["nodes"]) == n:
                    t_normal = time.monotonic() - t0
            except (OSError, ValueError):
                pass
        elif time.monotonic() - t0 > t_normal + 5 and len(samples) > 8:
            # Settled enough to start the idle window once the last 3 s look flat.
            last = [pct(b[2] - a[2], b[0] - a[0]) for a, b in zip(samples[-4:], samples[-3:])]
            if max(last) - min(last) < 2.0:
                break
    if t_normal is None:
        states = {}
        for m in seed_view()["nodes"]:
            states[m["state"]] = states.get(m["state"], 0) + 1
        alive = sum(p.poll() is None for p in nodes)
        sys.exit(f"bench: not all {n} nodes normal within 120 s: {states} at the seed, {alive} processes alive")
    w0 = (time.monotonic(), ticks([seed.pid]), ticks(node_pids))
    while time.monotonic() - w0[0] < window:
        time.sleep(1.0)
        samples.append((time.monotonic(), ticks([seed.pid]), ticks(node_pids)))
    w1 = samples[-1]
    secs = w1[0] - w0[0]
    idle_seed, idle_nodes = pct(w1[1] - w0[1], secs), pct(w1[2] - w0[2], secs)
    # Quiet: from this sample on, 3 s in a row within 2x idle + 1% of a core.
    per_s = [(b[0] - t0, pct(b[2] - a[2], b[0] - a[0])) for a, b in zip(samples, samples[1:])]
    bound = 2 * idle_nodes + 1.0
    t_quiet = next((per_s[i][0] - 1 for i in range(len(per_s) - 2)
                    if per_s[i][0] >= t_normal and all(c <= bound for _, c in per_s[i:i + 3])), None)
    peak = max(c for _, c in per_s)
    # CPU the nodes spent from the start until quiet (less sensitive than the time to a busy machine).
    quiet_at = t0 + (t_quiet if t_quiet is not None else t_normal)
    upto = max((s for s in samples if s[0] <= quiet_at + 0.5), key=lambda s: s[0])
    start_cpu = (upto[2] - samples[0][2]) / hz
    rss_mib = 0
    # Idle again from STEADY seconds after the start: past the start-up's own rounds of
    # anti-entropy, though a round that failed while peers still held older views runs again an
    # interval (60 s) later, which this window may hold.
    steady = None
    if steady_at > 0:
        time.sleep(max(0.0, t0 + steady_at - time.monotonic()))
        s0 = (time.monotonic(), ticks([seed.pid]), ticks(node_pids))
        time.sleep(window)
        s1 = (time.monotonic(), ticks([seed.pid]), ticks(node_pids))
        steady = (s0[0] - t0, s1[0] - s0[0], pct(s1[1] - s0[1], s1[0] - s0[0]), pct(s1[2] - s0[2], s1[0] - s0[0]))
    for pid in node_pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss_mib += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
        except OSError:
            pass

    # A join: the time until every node holds the epoch of the registration, then of `normal`.
    before = get(port, "/health")["epoch"]
    pool = ThreadPoolExecutor(16)

    def epoch_of(p):
        try:
            return get(p, "/health", timeout=1.0)["epoch"]
        except (OSError, ValueError, KeyError):
            return -1

    tj = time.monotonic()
    spawn("node", "--listen", f"127.0.0.1:{port + 1 + n}", "--seed", f"127.0.0.1:{port}", "--heartbeat-interval", hb)
    joined = None
    while time.monotonic() - tj < 30:
        e = get(port, "/health")["epoch"]
        if e > before:
            joined = (time.monotonic(), e)
            break
        time.sleep(0.005)
    if joined is None:
        sys.exit("bench: the joining node did not register within 30 s")
    t_reg, e_reg = joined
    seen = {}
    e_normal, t_normal_join = None, None
    while time.monotonic() - t_reg < 30 and (len(seen) < n or e_normal is None or
                                             any(s[1] is None for s in seen.values())):
        if e_normal is None:
            v = seed_view()
            if any(m["addr"] == f"127.0.0.1:{port + 1 + n}" and m["state"] == "normal" for m in v["nodes"]):
                e_normal, t_normal_join = v["epoch"], time.monotonic()
        ports = [port + 1 + i for i in range(n)]
        for p, e in zip(ports, pool.map(epoch_of, ports)):
            now = time.monotonic()
            reg, norm = seen.get(p, (None, None))
            if reg is None and e >= e_reg:
                reg = now
            if norm is None and e_normal is not None and e >= e_normal:
                norm = now
            if reg is not None:
                seen[p] = (reg, norm)
    all_reg = max((s[0] for s in seen.values()), default=None) if len(seen) == n else None
    all_norm = max((s[1] for s in seen.values() if s[1]), default=None) \
        if e_normal and all(s[1] for s in seen.values()) and len(seen) == n else None
    f = lambda x: "-" if x is None else f"{x:.2f}"
    print(f"{n} nodes, heartbeat {hb}:")
    print(f"  start -> all normal            {t_normal:.1f} s")
    print(f"  start -> quiet                 {f(t_quiet)} s   (nodes' CPU peak {peak:.0f}% of a core per 1 s sample;"
          f" {start_cpu:.1f} CPU-seconds until quiet)")
    print(f"  nodes' memory                  {rss_mib / n:.0f} MiB RSS per node")
    print(f"  idle over {secs:.0f} s, % of a core  seed {idle_seed:.2f}   all nodes {idle_nodes:.2f}"
          f"   per node {idle_nodes / n:.3f}")
    if steady:
        print(f"  idle from {steady[0]:.0f} s after start, over {steady[1]:.0f} s: seed {steady[2]:.2f}"
              f"   all nodes {steady[3]:.2f}   per node {steady[3] / n:.3f}")
    print(f"  join: registered (epoch {e_reg}) -> seen by all {n}: "
          f"{f(all_reg - t_reg if all_reg else None)} s;"
          f" normal (epoch {e_normal}) -> seen by all: {f(all_norm - t_normal_join if all_norm else None)} s"
          f"  (start -> registered {t_reg - tj:.2f} s)")
    sys.stdout.flush()
finally:
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + 20
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if record:
        import shutil
        shutil.rmtree(record[1], ignore_errors=True)
PY
done
