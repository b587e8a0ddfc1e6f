#!/usr/bin/env python3
"""Fault injection with a history checker, in the manner of Jepsen, against a local dkv cluster.

A seed and 5 durable nodes (N=3, W=2, R=2) on 127.0.0.1 take overwrites of a small key space
from a few writers, each write a unique value, and reads, every one recorded with its start and
end on one monotonic clock. Meanwhile a nemesis injects one fault at a time, from a random seed
it prints: SIGKILL and restart on the same data directory, SIGSTOP for 1-5 s, SIGTERM and
restart, a leave and then a brand-new node (its join sometimes cut by a SIGKILL), the seed killed
and restarted; with --extra also the seed paused, a leave cut by a SIGKILL or by a pause past
the seed's TTL, a majority of the nodes paused past the TTL at once (beyond what N=3, W=2
keep available, not beyond what they keep correct: requests may fail, none may answer wrong),
a node restarted with its wall clock off by 50 ms to 3 s (libfaketime), within the
cluster's clock bound or past it, and network partitions: one or two nodes cut off from the
others (the seed on either side, or reached by both), or nodes cut off from the seed alone, past
its TTL or not (see `Partitions`: needs root, iptables and cgroup v2, else skipped with a line).
With --seed-record the seed keeps its record of the membership (`dkv seed --data-dir`), so
each restart of the seed restores it instead of rebuilding it from the members.
After each fault it waits, with a deadline, until the seed lists every node
`normal` and every node has taken that view, and still so after the seed's next expiry pass. So, but for the majority pause, at most one node is
down at a time: within what N=3, W=2 tolerate. At the end it checks:
  - no read returned a value older than a write acknowledged before the read started (stale),
    "not found" for a key acknowledged before, or a value nobody wrote;
  - every key reads back, through every node with r=all and with the default quorum, as its
    last acknowledged write or a write that ran after it, the same through every node;
  - the cluster is all normal again, no hint is pending, and every key has exactly N copies;
  - no node hung in a leave or a SIGTERM.
Any of those is an anomaly: the run prints them and exits 1. `scripts/nemesis-test.sh` runs it
in the test command.

Usage: scripts/nemesis.py [--dkv PATH] [--root DIR] [--seed S] [--duration SECS] [--extra] ...
       scripts/nemesis.py --check-only RUN_DIR      (the checker again, on a saved history)

Only processes this script started are signalled, by PID; everything runs on 127.0.0.1.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

DKV = None  # the binary, from --dkv
INF = float("inf")
THINK = 0.003
N = 3
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"  # Debian's faketime


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')} {time.monotonic():.3f}]", *a, flush=True)


def free_port(used):
    for _ in range(1000):
        p = random.randint(20000, 31000)
        if p in used:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        used.add(p)
        return p
    raise RuntimeError("no free port")


def http_req(addr, method, path, body=None, timeout=3.0):
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def http_json(addr, path, timeout=2.0):
    try:
        st, b = http_req(addr, "GET", path, timeout=timeout)
        if st != 200:
            return None
        return json.loads(b)
    except Exception:
        return None


class Proc:
    def __init__(self, name, args, logpath):
        self.name, self.args, self.logpath = name, args, logpath
        self.p = None
        self.env = {}  # added to the environment at every start (the skew fault's libfaketime)
        self.cgroup = None  # a cgroup v2 directory it starts in (the partition faults' handle on its sockets)

    def start(self, extra=()):
        with open(self.logpath, "a") as f:
            f.write(f"\n===== chaos: start {self.name} at {time.strftime('%H:%M:%S')} =====\n")
        lf = open(self.logpath, "a")
        env = dict(os.environ, RUST_LOG="info", **self.env)
        args = self.args + list(extra)
        if self.cgroup:
            # Into its cgroup before exec, so every socket it opens belongs to it; same PID.
            args = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', os.path.join(self.cgroup, "cgroup.procs"), *args]
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, env=env)
        lf.close()
        return self.p.pid

    def running(self):
        return self.p is not None and self.p.poll() is None

    def signal(self, sig):
        if self.running():
            os.kill(self.p.pid, sig)

    def wait_exit(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


class Partitions:
    """Network partitions between processes that all listen on 127.0.0.1.

    Each node runs in a cgroup (v2) of its own, and an iptables chain of this run drops the
    packets that a node's sockets send to the port of a node (or of the seed) on the other side.
    Dropped, not refused: a peer across the cut hangs, as across a real partition, until the
    caller's deadline. The load generator stays in its own cgroup and reaches every node, as
    clients on both sides of a partition would. Needs root, iptables and a cgroup v2 hierarchy;
    `available()` says what is missing. Everything it adds is removed in `close()`.
    """

    def __init__(self):
        self.cg_root = None
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    self.cg_root = parts[1]
                    break
        self.name = f"dkv-nemesis-{os.getpid()}"
        self.chain = f"DKVNEM{os.getpid()}"[:28]
        self.ready = False
        self.cgroups = []

    def available(self):
        if os.geteuid() != 0:
            return "not root"
        if self.cg_root is None:
            return "no cgroup2 hierarchy mounted"
        if subprocess.run(["iptables", "-w", "-L", "OUTPUT", "-n"], capture_output=True).returncode != 0:
            return "iptables does not work here"
        if shutil.which("iptables-restore") is None:
            return "iptables-restore is not installed"
        return None

    def ipt(self, *args):
        r = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(args)}: {r.stderr.strip()}")

    def open(self):
        os.makedirs(os.path.join(self.cg_root, self.name), exist_ok=True)
        self.ipt("-N", self.chain)
        self.ipt("-I", "OUTPUT", "-o", "lo", "-j", self.chain)
        self.ready = True

    def cgroup(self, name):
        path = os.path.join(self.cg_root, self.name, name)
        os.makedirs(path, exist_ok=True)
        self.cgroups.append(path)
        return path

    def cut(self, drops):
        """For each (proc, port) of `drops`, drop what `proc`'s sockets send to `port` on
        127.0.0.1: all in one iptables-restore, so the cut begins whole. Added one call at a time
        (about 20 ms each), a cut was partial and one-way for up to a quarter of a second."""
        lines = ["*filter"]
        for proc, port in drops:
            rel = os.path.relpath(proc.cgroup, self.cg_root)
            lines.append(f"-A {self.chain} -p tcp -m cgroup --path {rel} --dport {port} -j DROP")
        lines.append("COMMIT")
        r = subprocess.run(["iptables-restore", "-w", "--noflush"], input="\n".join(lines) + "\n",
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"iptables-restore --noflush: {r.stderr.strip()}")

    def heal(self):
        if self.ready:
            self.ipt("-F", self.chain)

    def close(self):
        """Remove the rules, the chain and the cgroups (once their processes are gone)."""
        if self.ready:
            for args in (("-F", self.chain), ("-D", "OUTPUT", "-o", "lo", "-j", self.chain), ("-X", self.chain)):
                try:
                    self.ipt(*args)
                except RuntimeError as e:
                    log("partitions: cleanup:", e)
            self.ready = False
        for path in self.cgroups + [os.path.join(self.cg_root or "/nonexistent", self.name)]:
            try:
                os.rmdir(path)
            except OSError:
                pass


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


class Cluster:
    def __init__(self, root, node_ttl, fsync, partitions=None, seed_record=False):
        self.root = root
        self.partitions = partitions  # Partitions, or None: nodes then run in the caller's cgroup
        self.logdir = os.path.join(root, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.used = set()
        self.seed_addr = f"127.0.0.1:{free_port(self.used)}"
        record = ["--data-dir", os.path.join(root, "seed")] if seed_record else []
        self.seed = Proc("seed", [DKV, "seed", "--listen", self.seed_addr, "--node-ttl", node_ttl] + record,
                         os.path.join(self.logdir, "seed.log"))
        self.fsync = fsync
        self.ttl_s = float(node_ttl[:-2]) / 1000 if node_ttl.endswith("ms") else float(node_ttl.rstrip("s"))
        self.nodes = {}  # slot -> Proc (with .addr)
        self.next_slot = 0
        self.lock = threading.Lock()
        self.all_procs = [self.seed]

    def start_seed(self, first=False):
        # The first start begins a new cluster; a restart (the nemesis's) is a restart.
        pid = self.seed.start(["--new-cluster"] if first else [])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if http_json(self.seed_addr, "/health") is not None:
                return pid
            time.sleep(0.05)
        raise RuntimeError("seed did not answer")

    def add_node(self):
        slot = self.next_slot
        self.next_slot += 1
        addr = f"127.0.0.1:{free_port(self.used)}"
        ddir = os.path.join(self.root, f"node-{slot}")
        args = [DKV, "node", "--listen", addr, "--advertise", addr, "--seed", self.seed_addr,
                "--heartbeat-interval", "100ms", "--request-timeout", "2s", "--leave-timeout", "20s",
                "--anti-entropy-interval", "2s", "--data-dir", ddir, "--fsync", self.fsync]
        p = Proc(f"node-{slot}", args, os.path.join(self.logdir, f"node-{slot}.log"))
        p.addr = addr
        p.slot = slot
        if self.partitions:
            p.cgroup = self.partitions.cgroup(f"node-{slot}")
        p.start()
        with self.lock:
            self.nodes[slot] = p
            self.all_procs.append(p)
        return slot

    def live_addrs(self):
        with self.lock:
            return [p.addr for p in self.nodes.values() if p.running()]

    def member_addrs(self):
        with self.lock:
            return [p.addr for p in self.nodes.values()]

    def is_normal(self, n):
        view = http_json(self.seed_addr, "/nodes")
        if view is None:
            return False, "seed unreachable"
        ms = view.get("nodes", [])
        if len(ms) != n or any(m.get("state") != "normal" for m in ms):
            return False, f"seed view: {[(m['addr'], m['state']) for m in ms]}"
        with self.lock:
            procs = list(self.nodes.values())
        addrs = {m["addr"] for m in ms}
        for p in procs:
            if not p.running():
                return False, f"{p.name} not running"
            if p.addr not in addrs:
                return False, f"{p.name} not in seed view"
            h = http_json(p.addr, "/health", timeout=1.0)
            if h is None or h.get("epoch") != view["epoch"] or h.get("status") != "normal":
                return False, f"{p.name} health {h} vs epoch {view['epoch']}"
        return True, view["epoch"]

    def wait_normal(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        why = None
        while time.monotonic() < deadline:
            ok, why = self.is_normal(n)
            if ok:
                return True, why
            time.sleep(0.1)
        return False, why

    def kill_all(self):
        for p in self.all_procs:
            try:
                if p.running():
                    os.kill(p.p.pid, signal.SIGCONT)
                    os.kill(p.p.pid, signal.SIGKILL)
                    p.p.wait(timeout=10)
            except Exception as e:
                log("kill error", p.name, e)


def wait_stopped(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ok = True
            for t in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{t}/stat") as f:
                    st = f.read().rsplit(")", 1)[1].strip()
                if not st.startswith(("T", "t")):
                    ok = False
            if ok:
                return True
        except FileNotFoundError:
            return False
        time.sleep(0.01)
    return False


class ConnPool:
    def __init__(self, timeout):
        self.timeout = timeout
        self.conns = {}

    def request(self, addr, method, path, body=None):
        c = self.conns.get(addr)
        if c is None:
            host, port = addr.split(":")
            c = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
            self.conns[addr] = c
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            data = r.read()
            if r.getheader("connection", "").lower() == "close":
                c.close()
                self.conns.pop(addr, None)
            return r.status, data
        except Exception:
            c.close()
            self.conns.pop(addr, None)
            raise


def writer(wid, cluster, keys, stop, out, rng, deadline):
    pool = ConnPool(timeout=6.0)
    i = 0
    while not stop.is_set() and time.monotonic() < deadline and i < 200000:
        addrs = cluster.live_addrs()
        if not addrs:
            time.sleep(0.05)
            continue
        addr = rng.choice(addrs)
        key = rng.choice(keys)
        val = f"w{wid}-{i}"
        i += 1
        t0 = time.monotonic()
        try:
            st, body = pool.request(addr, "PUT", f"/put?key={urllib.parse.quote(key)}", val.encode())
            err = None if st == 204 else body[:200].decode("utf8", "replace")
        except ConnectionRefusedError as e:
            st, err = -1, f"refused: {e}"
        except Exception as e:
            st, err = -2, f"{type(e).__name__}: {e}"
        t1 = time.monotonic()
        out.append({"key": key, "value": val, "start": t0, "end": t1, "ok": st == 204, "status": st,
                    "err": err, "node": addr})
        if st < 0:
            time.sleep(0.05)
        time.sleep(THINK)


def reader(rid, cluster, keys, stop, out, rng, deadline):
    pool = ConnPool(timeout=6.0)
    n = 0
    while not stop.is_set() and time.monotonic() < deadline and n < 200000:
        n += 1
        addrs = cluster.live_addrs()
        if not addrs:
            time.sleep(0.05)
            continue
        addr = rng.choice(addrs)
        key = rng.choice(keys)
        t0 = time.monotonic()
        try:
            st, body = pool.request(addr, "GET", f"/get?key={urllib.parse.quote(key)}")
        except Exception as e:
            st, body = -2, f"{type(e).__name__}: {e}".encode()
        t1 = time.monotonic()
        if st == 200:
            out.append({"key": key, "value": body.decode(), "start": t0, "end": t1, "ok": True, "node": addr})
        elif st == 404:
            out.append({"key": key, "value": None, "start": t0, "end": t1, "ok": True, "node": addr})
        else:
            out.append({"key": key, "value": None, "start": t0, "end": t1, "ok": False, "status": st,
                        "err": body[:200].decode("utf8", "replace"), "node": addr})
            time.sleep(0.02)
        time.sleep(THINK)


class Nemesis:
    def __init__(self, cluster, rng, events, anomalies, extra=False, only=None):
        self.c, self.rng, self.events, self.anomalies = cluster, rng, events, anomalies
        self.extra, self.only = extra, only
        self.counts = {}

    def ev(self, what, **kw):
        e = {"t": time.monotonic(), "wall": time.strftime("%H:%M:%S"), "what": what, **kw}
        self.events.append(e)
        log("NEMESIS", what, kw)

    def settle(self, n):
        # Normal, and still so at the same epoch a quarter TTL later (the seed's expiry passes
        # come every sixteenth of it since 2026-12-06): a node cut off just long enough may be expired a moment after the view looked
        # settled, and the next fault would then overlap that change.
        deadline = time.monotonic() + 60
        while True:
            ok, why = self.c.wait_normal(n, timeout=max(1, deadline - time.monotonic()))
            if not ok or time.monotonic() > deadline:
                break
            time.sleep(self.c.ttl_s / 4 + 0.1)
            again, epoch = self.c.is_normal(n)
            if again and epoch == why:
                break
        if not ok:
            self.ev("NOT-NORMAL", why=str(why))
            self.anomalies.append({"type": "cluster-not-normal", "t": time.monotonic(), "why": str(why)})
        else:
            self.ev("normal", epoch=why)
        return ok

    def pick(self):
        with self.c.lock:
            return self.rng.choice(list(self.c.nodes.values()))

    def run_one(self):
        kinds = ["kill", "pause", "term", "leave_join", "seed_restart"]
        weights = [35, 30, 10, 15, 10]
        if self.extra:
            kinds += ["seed_pause", "leave_kill", "leave_pause", "majority_pause", "skew", "partition", "seed_cut"]
            weights += [10, 8, 8, 6, 8, 12, 8]
            if not self.c.partitions:
                weights[-2:] = [0, 0]
        if self.only:
            weights = [w if k in self.only else 0 for k, w in zip(kinds, weights)]
        kind = self.rng.choices(kinds, weights=weights)[0]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        n = len(self.c.nodes)
        if kind == "kill":
            p = self.pick()
            down = self.rng.uniform(0.2, 4.0)
            self.ev("kill", node=p.name, addr=p.addr, pid=p.p.pid, down_s=round(down, 2))
            p.signal(signal.SIGKILL)
            p.wait_exit(10)
            time.sleep(down)
            pid = p.start()
            self.ev("restart", node=p.name, pid=pid)
        elif kind == "term":
            p = self.pick()
            down = self.rng.uniform(0.2, 4.0)
            self.ev("sigterm-stop", node=p.name, addr=p.addr, pid=p.p.pid, down_s=round(down, 2))
            p.signal(signal.SIGTERM)
            rc = p.wait_exit(25)
            if rc is None:
                self.ev("sigterm-did-not-exit", node=p.name)
                self.anomalies.append({"type": "sigterm-hang", "node": p.name, "t": time.monotonic()})
                p.signal(signal.SIGKILL)
                p.wait_exit(10)
            else:
                self.ev("exited", node=p.name, rc=rc)
            time.sleep(down)
            pid = p.start()
            self.ev("restart", node=p.name, pid=pid)
        elif kind == "pause":
            p = self.pick()
            dur = self.rng.uniform(1.0, 5.0)
            self.ev("pause", node=p.name, addr=p.addr, pid=p.p.pid, dur_s=round(dur, 2))
            p.signal(signal.SIGSTOP)
            wait_stopped(p.p.pid)
            time.sleep(dur)
            p.signal(signal.SIGCONT)
            self.ev("resume", node=p.name)
        elif kind == "leave_join":
            p = self.pick()
            self.ev("leave", node=p.name, addr=p.addr, pid=p.p.pid)
            try:
                st, body = http_req(p.addr, "POST", "/admin/leave", timeout=3)
                self.ev("leave-answer", status=st)
            except Exception as e:
                self.ev("leave-request-error", err=str(e))
            rc = p.wait_exit(30)
            if rc is None:
                self.ev("leave-did-not-exit", node=p.name)
                self.anomalies.append({"type": "leave-hang", "node": p.name, "t": time.monotonic()})
                p.signal(signal.SIGKILL)
                p.wait_exit(10)
            else:
                self.ev("left", node=p.name, rc=rc)
            with self.c.lock:
                del self.c.nodes[p.slot]
            if not self.settle(n - 1):
                return
            time.sleep(self.rng.uniform(0, 2))
            slot = self.c.add_node()
            q = self.c.nodes[slot]
            self.ev("join", node=q.name, addr=q.addr, pid=q.p.pid)
            if self.rng.random() < 0.35:
                # Kill the joiner mid-join, restart it on the same data directory.
                time.sleep(self.rng.uniform(0.05, 1.0))
                self.ev("kill-joiner", node=q.name, pid=q.p.pid)
                q.signal(signal.SIGKILL)
                q.wait_exit(10)
                time.sleep(self.rng.uniform(0.2, 2.0))
                pid = q.start()
                self.ev("restart-joiner", node=q.name, pid=pid)
        elif kind == "seed_pause":
            dur = self.rng.uniform(1.0, 5.0)
            self.ev("seed-pause", pid=self.c.seed.p.pid, dur_s=round(dur, 2))
            self.c.seed.signal(signal.SIGSTOP)
            wait_stopped(self.c.seed.p.pid)
            time.sleep(dur)
            self.c.seed.signal(signal.SIGCONT)
            self.ev("seed-resume")
        elif kind == "skew":
            # A node restarted with its wall clock off (libfaketime; its monotonic clock left
            # alone), for the rest of the run or until the next skew of it: within the cluster's
            # --max-clock-offset (500 ms) it coordinates writes with that clock, and a write it
            # stamps below an acknowledged one must be stamped above it; past the bound it must
            # refuse to coordinate writes. Sometimes the clock is set right again.
            p = self.pick()
            if p.env and self.rng.random() < 0.3:
                p.env = {}
                offset = None
            else:
                size = self.rng.uniform(0.05, 0.45) if self.rng.random() < 0.6 else self.rng.uniform(1.0, 3.0)
                offset = f"{self.rng.choice('+-')}{size:.3f}s"
                p.env = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                         "FAKETIME_NO_CACHE": "1"}
            self.ev("skew", node=p.name, addr=p.addr, pid=p.p.pid, offset=offset)
            p.signal(signal.SIGKILL)
            p.wait_exit(10)
            pid = p.start()
            self.ev("restart-skewed", node=p.name, pid=pid, offset=offset)
        elif kind == "majority_pause":
            # More than half the nodes paused past the TTL: beyond what N=3, W=2 keep available,
            # not beyond what they keep correct. The seed hears from too few to tell this from
            # its own isolation, so it must expire none: no read may say "not found" through the
            # nodes left, nor return a value older than an acknowledged write.
            with self.c.lock:
                procs = list(self.c.nodes.values())
            paused = self.rng.sample(procs, len(procs) // 2 + 1)
            dur = self.rng.uniform(1.2, 2.5) * self.c.ttl_s
            self.ev("majority-pause", nodes=[p.name for p in paused], dur_s=round(dur, 2))
            for p in paused:
                p.signal(signal.SIGSTOP)
            for p in paused:
                wait_stopped(p.p.pid)
            time.sleep(dur)
            for p in paused:
                p.signal(signal.SIGCONT)
            self.ev("majority-resume")
        elif kind in ("leave_kill", "leave_pause"):
            p = self.pick()
            self.ev("leave", node=p.name, addr=p.addr, pid=p.p.pid, variant=kind)
            try:
                st, body = http_req(p.addr, "POST", "/admin/leave", timeout=3)
                self.ev("leave-answer", status=st)
            except Exception as e:
                self.ev("leave-request-error", err=str(e))
            time.sleep(self.rng.uniform(0.0, 0.03))
            if kind == "leave_pause":
                dur = self.rng.uniform(1.0, 4.0)
                self.ev("pause-leaver", node=p.name, dur_s=round(dur, 2), still_running=p.running())
                p.signal(signal.SIGSTOP)
                if p.running():
                    wait_stopped(p.p.pid)
                time.sleep(dur)
                p.signal(signal.SIGCONT)
                self.ev("resume-leaver", node=p.name)
                rc = p.wait_exit(30)
                self.ev("left" if rc is not None else "leave-did-not-exit", node=p.name, rc=rc)
                if rc is None:
                    self.anomalies.append({"type": "leave-hang", "node": p.name, "t": time.monotonic()})
                    p.signal(signal.SIGKILL)
                    p.wait_exit(10)
                with self.c.lock:
                    del self.c.nodes[p.slot]
                if not self.settle(n - 1):
                    return
                slot = self.c.add_node()
                self.ev("join", node=self.c.nodes[slot].name, addr=self.c.nodes[slot].addr)
            else:
                self.ev("kill-leaver", node=p.name, still_running=p.running())
                p.signal(signal.SIGKILL)
                p.wait_exit(10)
                # Whether the seed had recorded the leave when the node died (read after the kill:
                # nothing can change it back meanwhile but the node itself).
                view = http_json(self.c.seed_addr, "/nodes") or {}
                recorded = [m.get("state") for m in view.get("nodes", []) if m.get("addr") == p.addr] == ["leaving"]
                # Mostly back within the TTL; sometimes after the seed expired it.
                ttl = self.c.ttl_s
                down = self.rng.uniform(0.2, 0.9 * ttl) if self.rng.random() < 0.7 else self.rng.uniform(1.2 * ttl, 2 * ttl)
                self.ev("leaver-down", node=p.name, down_s=round(down, 2))
                time.sleep(down)
                pid = p.start()
                self.ev("restart-leaver", node=p.name, pid=pid)
                # Started again, a node the seed still lists as leaving finishes its leave and
                # exits (one whose leave was done refuses to start); one killed before the seed
                # heard of its leave comes back as a member. One whose leave the seed had recorded
                # must not come back as a member: its leave would be dropped without a word.
                rc = p.wait_exit(5.0)
                if rc is None and recorded:
                    rc = p.wait_exit(30)
                    if rc is None:
                        self.anomalies.append({"type": "recorded-leave-dropped", "node": p.name,
                                               "health": http_json(p.addr, "/health"), "t": time.monotonic()})
                        p.signal(signal.SIGKILL)
                        p.wait_exit(10)
                        rc = -9
                view = http_json(self.c.seed_addr, "/nodes") or {}
                states = [m.get("state") for m in view.get("nodes", []) if m.get("addr") == p.addr]
                if rc is None and states == ["leaving"]:
                    rc = p.wait_exit(30)
                    if rc is None:
                        self.ev("LEAVING-FOR-GOOD", node=p.name, health=http_json(p.addr, "/health"))
                        self.anomalies.append({"type": "restarted-leaver-stuck-leaving", "node": p.name,
                                               "t": time.monotonic()})
                        p.signal(signal.SIGKILL)
                        p.wait_exit(10)
                        rc = -9
                if rc is not None:
                    # It refused to start (its directory records a finished leave) or finished its leave: join a new node.
                    self.ev("leaver-refused-restart", node=p.name, rc=rc)
                    with self.c.lock:
                        del self.c.nodes[p.slot]
                    if not self.settle(n - 1):
                        return
                    slot = self.c.add_node()
                    self.ev("join", node=self.c.nodes[slot].name, addr=self.c.nodes[slot].addr)
        elif kind == "partition":
            # The nodes split in two, each side still reached by the clients. The seed is reached
            # by both sides, by the larger side only, or by the smaller side only. Requests that
            # need a replica across the cut time out; none may answer wrong. A side the seed cannot
            # hear for its TTL is expired by it if it is the smaller one (and must then serve no
            # request with its old view), kept if it is the larger (see majority_pause).
            with self.c.lock:
                procs = list(self.c.nodes.values())
            small = self.rng.sample(procs, self.rng.randint(1, len(procs) // 2))
            large = [p for p in procs if p not in small]
            seed_with = self.rng.choice(["both", "large", "small"])
            dur = self.rng.uniform(0.5, 2.5) * self.c.ttl_s
            self.ev("partition", small=[p.name for p in small], large=[p.name for p in large],
                    seed_with=seed_with, dur_s=round(dur, 2))
            net = self.c.partitions
            drops = [(a, port_of(b.addr)) for a in small for b in large]
            drops += [(b, port_of(a.addr)) for a in small for b in large]
            drops += [(p, port_of(self.c.seed_addr)) for p in {"both": [], "large": small, "small": large}[seed_with]]
            net.cut(drops)
            time.sleep(dur)
            net.heal()
            self.ev("healed")
        elif kind == "seed_cut":
            # Some nodes cut off from the seed alone, past its TTL or not, while they still reach
            # each other and the clients: a minority is expired while it keeps running.
            with self.c.lock:
                procs = list(self.c.nodes.values())
            cut = self.rng.sample(procs, self.rng.randint(1, len(procs) - 1))
            dur = self.rng.uniform(0.5, 2.5) * self.c.ttl_s
            self.ev("seed-cut", nodes=[p.name for p in cut], dur_s=round(dur, 2))
            self.c.partitions.cut([(p, port_of(self.c.seed_addr)) for p in cut])
            time.sleep(dur)
            self.c.partitions.heal()
            self.ev("healed")
        elif kind == "seed_restart":
            down = self.rng.uniform(0.2, 3.0)
            self.ev("seed-kill", pid=self.c.seed.p.pid, down_s=round(down, 2))
            self.c.seed.signal(signal.SIGKILL)
            self.c.seed.wait_exit(10)
            time.sleep(down)
            pid = self.c.start_seed()
            self.ev("seed-restart", pid=pid)
        self.settle(n)


def check(writes, reads, finals, keys):
    """Returns a list of anomaly dicts. finals: key -> list of (node, value or None, status)."""
    anomalies = []
    by_key = {k: [] for k in keys}
    by_val = {}
    for w in writes:
        by_key[w["key"]].append(w)
        by_val[(w["key"], w["value"])] = w

    def eff_end(w):
        return w["end"] if w["ok"] else INF

    # Per key: acked writes sorted by end, prefix max of start (with the write reaching it).
    idx = {}
    for k, ws in by_key.items():
        acked = sorted((w for w in ws if w["ok"]), key=lambda w: w["end"])
        ends, pm = [], []
        best = None
        for w in acked:
            if best is None or w["start"] > best["start"]:
                best = w
            ends.append(w["end"])
            pm.append(best)
        idx[k] = (ends, pm)

    import bisect

    def latest_completed_before(k, t):
        ends, pm = idx[k]
        i = bisect.bisect_left(ends, t)  # acked writes with end < t
        return pm[i - 1] if i > 0 else None

    def judge(k, value, start, end, what, extra):
        a = latest_completed_before(k, start)
        if value is None:
            if a is not None:
                anomalies.append({"type": f"{what}-not-found", "key": k, "read": extra,
                                  "acked_before": a})
            return
        w = by_val.get((k, value))
        if w is None:
            anomalies.append({"type": f"{what}-unknown-value", "key": k, "value": value, "read": extra})
            return
        if w["start"] > end:
            anomalies.append({"type": f"{what}-from-future", "key": k, "write": w, "read": extra})
        if a is not None and eff_end(w) < a["start"]:
            anomalies.append({"type": f"{what}-stale", "key": k, "got_write": w, "newer_acked": a,
                              "read": extra})
        if not w["ok"] and w["status"] == -1:
            anomalies.append({"type": f"{what}-refused-write-visible", "key": k, "write": w, "read": extra})

    for r in reads:
        if r["ok"]:
            judge(r["key"], r["value"], r["start"], r["end"], "read", r)
    for k, lst in finals.items():
        vals = set()
        for node, v, st in lst:
            if st not in (200, 404):
                anomalies.append({"type": "final-read-failed", "key": k, "node": node, "status": st, "value": v})
                continue
            vals.add(v)
            judge(k, v, INF, INF, "final", {"node": node, "status": st})
        if len(vals) > 1:
            anomalies.append({"type": "final-divergent", "key": k, "values": sorted(map(str, vals))})
    return anomalies


def grep_logs(logdir):
    out = {}
    for f in sorted(os.listdir(logdir)):
        with open(os.path.join(logdir, f), errors="replace") as fh:
            lines = fh.readlines()
        out[f] = {
            "panic": [l.rstrip() for l in lines if "panic" in l.lower()][:20],
            "ERROR": [l.rstrip() for l in lines if " ERROR " in l][:20],
            "n_ERROR": sum(1 for l in lines if " ERROR " in l),
            "n_WARN": sum(1 for l in lines if " WARN " in l),
        }
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--duration", type=float, default=240)
    ap.add_argument("--node-ttl", default="2s")
    ap.add_argument("--fsync", default="always")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--keys", type=int, default=50)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--max-faults", type=int, default=200)
    ap.add_argument("--check-only", default=None)
    ap.add_argument("--gap", type=float, default=2.5, help="max pause between faults (s)")
    ap.add_argument("--extra", action="store_true", help="also seed pauses, kills and pauses during a leave, "
                    "majority pauses, skewed clocks and network partitions (these need root, iptables and cgroup v2)")
    ap.add_argument("--only", default=None, help="these faults only, comma-separated (kill, pause, term, "
                    "leave_join, seed_restart; with --extra also seed_pause, leave_kill, leave_pause, majority_pause, skew, "
                    "partition, seed_cut)")
    ap.add_argument("--seed-record", action="store_true", help="the seed keeps its record of the membership "
                    "(--data-dir), so its restarts restore it")
    ap.add_argument("--think-ms", type=float, default=3)
    ap.add_argument("--dkv", default=os.environ.get("DKV_BIN", "target/release/dkv"), help="the dkv binary (default $DKV_BIN, else target/release/dkv)")
    ap.add_argument("--root", default=None, help="where the run's logs, data and history go (default: a new directory under /tmp)")
    a = ap.parse_args()
    global THINK, DKV
    THINK = a.think_ms / 1000
    DKV = os.path.abspath(a.dkv)

    if a.check_only:
        with open(os.path.join(a.check_only, "history.json")) as f:
            h = json.load(f)
        finals = {k: [tuple(x) for x in v] for k, v in h["finals"].items()}
        an = check(h["writes"], h["reads"], finals, h["keys"])
        print(json.dumps(an, indent=1, default=str)[:20000])
        print("anomalies:", len(an))
        sys.exit(1 if an else 0)
    basic = {"kill", "pause", "term", "leave_join", "seed_restart"}
    extra = {"seed_pause", "leave_kill", "leave_pause", "majority_pause", "skew", "partition", "seed_cut"}
    only = set((a.only or "").split(",")) - {""}
    if only - basic - extra:
        sys.exit(f"nemesis: no such fault {', '.join(sorted(only - basic - extra))}: "
                 f"--only takes {', '.join(sorted(basic | extra))}")
    if only & extra and not a.extra:
        sys.exit(f"nemesis: {', '.join(sorted(only & extra))} run only with --extra")
    if a.extra and not os.path.exists(LIBFAKETIME) and "skew" in (a.only or "skew"):
        sys.exit(f"nemesis: the skew fault of --extra needs libfaketime ({LIBFAKETIME}): apt-get install faketime")
    partitions = None
    if a.extra and (not only or only & {"partition", "seed_cut"}):
        partitions = Partitions()
        missing = partitions.available()
        if missing:
            if only & {"partition", "seed_cut"}:
                sys.exit(f"nemesis: the partition faults need root, iptables and cgroup v2: {missing}")
            log(f"nemesis: NO PARTITION FAULTS in this run: {missing}")
            partitions = None
    if not os.access(DKV, os.X_OK):
        sys.exit(f"nemesis: {DKV} is not an executable dkv binary: build it (cargo build --release -p dkv) or pass --dkv")

    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    log(f"RANDOM SEED {seed}  (the same faults again: scripts/nemesis.py --seed {seed} --duration {a.duration} "
        f"--node-ttl {a.node_ttl} --fsync {a.fsync} --gap {a.gap}{' --extra' if a.extra else ''}"
        f"{' --only ' + a.only if a.only else ''}{' --seed-record' if a.seed_record else ''})")
    rng = random.Random(seed)
    random.seed(seed ^ 0x5EED)
    root = a.root or f"/tmp/dkv-nemesis-{seed}"
    if os.path.exists(root) and os.listdir(root):
        raise SystemExit(f"nemesis: {root} exists and is not empty: pass another --root")
    os.makedirs(root, exist_ok=True)
    if partitions:
        partitions.open()

        def terminated(signum, frame):
            raise SystemExit(f"nemesis: signal {signum}")
        signal.signal(signal.SIGTERM, terminated)  # so `finally` removes the rules
    c = Cluster(root, a.node_ttl, a.fsync, partitions, a.seed_record)
    keys = [f"k{i}" for i in range(a.keys)]
    writes, reads, events, anomalies = [], [], [], []
    stop = threading.Event()
    threads = []
    result = {}
    try:
        c.start_seed(first=True)
        for _ in range(a.nodes):
            c.add_node()
        ok, why = c.wait_normal(a.nodes, timeout=30)
        if not ok:
            raise RuntimeError(f"cluster did not start: {why}")
        log("cluster up", c.seed_addr, c.member_addrs())
        t_begin = time.monotonic()
        hard_deadline = t_begin + a.duration + 120
        wlists = [[] for _ in range(a.writers)]
        rlists = [[] for _ in range(a.readers)]
        for i in range(a.writers):
            threads.append(threading.Thread(target=writer, args=(i, c, keys, stop, wlists[i],
                                                                 random.Random(seed * 100 + i), hard_deadline)))
        for i in range(a.readers):
            threads.append(threading.Thread(target=reader, args=(i, c, keys, stop, rlists[i],
                                                                 random.Random(seed * 100 + 50 + i), hard_deadline)))
        for t in threads:
            t.daemon = True
            t.start()
        nem = Nemesis(c, rng, events, anomalies, extra=a.extra, only=a.only and a.only.split(","))
        time.sleep(3)
        nfault = 0
        while time.monotonic() - t_begin < a.duration and nfault < a.max_faults:
            nem.run_one()
            nfault += 1
            time.sleep(rng.uniform(0.0, a.gap))
        log("faults done", nem.counts)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(timeout=20)
        for l in wlists:
            writes.extend(l)
        for l in rlists:
            reads.extend(l)
        log(f"load stopped: writes {len(writes)} (acked {sum(w['ok'] for w in writes)}), reads {len(reads)}")

        # Settle: all normal, no hints pending, N copies of every key.
        nn = len(c.nodes)
        ok, why = c.wait_normal(nn, timeout=60)
        if not ok:
            anomalies.append({"type": "final-not-normal", "why": str(why)})
        written_keys = {w["key"] for w in writes if w["ok"]}
        want = N * len(written_keys)
        deadline = time.monotonic() + 90
        stats = None
        while time.monotonic() < deadline:
            stats = {addr: http_json(addr, "/stats") for addr in c.member_addrs()}
            if all(s is not None for s in stats.values()):
                total = sum(s["keys"] for s in stats.values())
                hints = sum(s["hints_pending"] for s in stats.values())
                if total == want and hints == 0:
                    break
            time.sleep(0.5)
        per_node = {addr: (s or {}).get("keys") for addr, s in stats.items()}
        total = sum(v or 0 for v in per_node.values())
        hints = {addr: (s or {}).get("hints_pending") for addr, s in stats.items()}
        log("copies per node", per_node, "total", total, "want", want, "hints", hints)
        if total != want:
            anomalies.append({"type": "copies-not-converged", "per_node": per_node, "total": total, "want": want})
        if any(h for h in hints.values()):
            anomalies.append({"type": "hints-pending", "hints": hints})
        # Final reads: r=all and default quorum through every node; plus /local on every node.
        finals = {}
        locals_ = {}
        for k in keys:
            lst = []
            for addr in c.member_addrs():
                for q in ("&r=all", ""):
                    try:
                        st, b = http_req(addr, "GET", f"/get?key={k}{q}", timeout=6)
                        v = b.decode() if st == 200 else None
                    except Exception as e:
                        st, v = -2, str(e)
                    lst.append((addr + q, v, st))
            finals[k] = lst
            locals_[k] = {addr: http_json(addr, f"/local?key={k}") for addr in c.member_addrs()}
        an = check(writes, reads, finals, keys)
        anomalies.extend(an)
        # Per-key copy count from /local.
        for k in written_keys:
            holders = [addr for addr, l in locals_[k].items() if l and l.get("state") == "value"]
            if len(holders) != min(N, len(c.nodes)):
                anomalies.append({"type": "copies-of-key", "key": k, "holders": holders, "local": locals_[k]})
        result = {
            "seed": seed, "fault_counts": nem.counts,
            "writes": len(writes), "acked": sum(w["ok"] for w in writes),
            "write_fail_by_status": {},
            "reads": len(reads), "reads_ok": sum(r["ok"] for r in reads),
            "reads_not_found": sum(1 for r in reads if r["ok"] and r["value"] is None),
            "copies": per_node, "anomalies": len(anomalies),
        }
        for w in writes:
            if not w["ok"]:
                s = str(w["status"])
                result["write_fail_by_status"][s] = result["write_fail_by_status"].get(s, 0) + 1
        with open(os.path.join(root, "history.json"), "w") as f:
            json.dump({"seed": seed, "keys": keys, "writes": writes, "reads": reads, "events": events,
                       "finals": finals, "locals": locals_, "t_begin": t_begin}, f)
    finally:
        stop.set()
        c.kill_all()
        if partitions:
            partitions.close()
        try:
            result["logs"] = grep_logs(c.logdir)
        except Exception as e:
            log("grep logs failed", e)
        with open(os.path.join(root, "anomalies.json"), "w") as f:
            json.dump(anomalies, f, indent=1, default=str)
        with open(os.path.join(root, "events.json"), "w") as f:
            json.dump(events, f, indent=1)
        with open(os.path.join(root, "summary.json"), "w") as f:
            json.dump(result, f, indent=1, default=str)
    log("SUMMARY", json.dumps({k: v for k, v in result.items() if k != "logs"}, default=str))
    for f, g in result.get("logs", {}).items():
        if g["panic"] or g["n_ERROR"]:
            log("LOG", f, "panics:", len(g["panic"]), "ERROR lines:", g["n_ERROR"])
            for l in (g["panic"] + g["ERROR"])[:6]:
                print("   ", l[:300])
    for x in anomalies[:30]:
        print("ANOMALY", json.dumps(x, default=str)[:1500])
    log(f"{len(anomalies)} anomalies; run dir {root}")
    sys.exit(1 if anomalies else 0)


if __name__ == "__main__":
    main()
