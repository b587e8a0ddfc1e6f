//! A real cluster of `dkv` processes on 127.0.0.1 for scenario tests: a seed and nodes started
//! from the built binary with 100 ms heartbeats, killed by PID when the test ends. Waiting is
//! always polling with a deadline, never a fixed sleep.

#![allow(dead_code)]

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dkv::client::Client;
use serde_json::Value;
use tokio::time::Instant;

pub const HEARTBEAT: &str = "100ms";
pub const NODE_TTL: &str = "1s";
/// The default replication factor N; a key lives on min(N, nodes) nodes.
pub const N: u64 = 3;

pub fn copies(nodes: u64) -> u64 {
    N.min(nodes)
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// `n` consecutive free ports, below the kernel's ephemeral range so no client socket takes them.
pub fn free_port_run(n: u16) -> u16 {
    for _ in 0..1000 {
        let base = 20_000 + rand::random::<u16>() % 10_000;
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no run of {n} free ports found");
}

pub fn dkv() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dkv"));
    c.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).stdin(Stdio::null());
    c
}

/// Poll `check` until it returns `Some`, or panic with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub struct Proc {
    pub child: Child,
    pub addr: String,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a child this test started.
        unsafe { libc::kill(self.pid(), sig) };
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let status = eventually(timeout, &format!("{} to exit", self.addr), || {
            let s = self.child.try_wait().ok().flatten();
            async move { s }
        })
        .await;
        status.code()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Cluster {
    pub seed: Proc,
    pub nodes: Vec<Proc>,
    /// Extra flags given to every node started.
    pub node_flags: Vec<String>,
}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, &[]).await
    }

    pub async fn start_with(n: usize, node_flags: &[&str]) -> Cluster {
        Self::start_full(n, node_flags, NODE_TTL).await
    }

    /// A cluster whose seed expires silent nodes after `node_ttl`.
    pub async fn start_full(n: usize, node_flags: &[&str], node_ttl: &str) -> Cluster {
        let seed_addr = format!("127.0.0.1:{}", free_port());
        let seed = spawn_seed_with_ttl(&seed_addr, node_ttl);
        let mut c = Cluster { seed, nodes: Vec::new(), node_flags: node_flags.iter().map(|s| s.to_string()).collect() };
        c.wait_seed().await;
        for _ in 0..n {
            c.add_node();
        }
        c.wait_normal(n).await;
        c
    }

    pub fn seed_client(&self) -> Client {
        Client::new(&self.seed.addr)
    }

    pub async fn wait_seed(&self) {
        let client = self.seed_client();
        eventually(Duration::from_secs(10), "the seed to answer /health", || {
            let client = client.clone();
            async move { client.json("/health").await.ok() }
        })
        .await;
    }

    /// Start one more node; returns its index. Does not wait for it.
    pub fn add_node(&mut self) -> usize {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = dkv();
        cmd.args(["node", "--listen", &addr, "--advertise", &addr, "--seed", &self.seed.addr]);
        let defaults = [
            ("--heartbeat-interval", HEARTBEAT),
            ("--request-timeout", "2s"),
            ("--leave-timeout", "20s"),
            ("--anti-entropy-interval", "2s"),
        ];
        for (flag, default) in defaults {
            if !self.node_flags.iter().any(|f| f == flag) {
                cmd.args([flag, default]);
            }
        }
        cmd.args(&self.node_flags);
        let child = cmd.spawn().expect("spawn dkv node");
        self.nodes.push(Proc { child, addr });
        self.nodes.len() - 1
    }

    pub fn client(&self, i: usize) -> Client {
        Client::new(&self.nodes[i].addr)
    }

    /// Indices of nodes still running.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_running()).collect()
    }

    /// The seed's current view.
    pub async fn seed_view(&self) -> Option<Value> {
        self.seed_client().json("/nodes").await.ok()
    }

    /// Wait until the seed lists exactly `n` members, all `normal`, and every running node has
    /// adopted that epoch and reports itself healthy.
    pub async fn wait_normal(&mut self, n: usize) -> Value {
        let live: Vec<String> = self.live().into_iter().map(|i| self.nodes[i].addr.clone()).collect();
        let seed = self.seed_client();
        eventually(Duration::from_secs(30), &format!("{n} normal members"), || {
            let seed = seed.clone();
            let live = live.clone();
            async move {
                let view = seed.json("/nodes").await.ok()?;
                let nodes = view["nodes"].as_array()?;
                if nodes.len() != n || nodes.iter().any(|m| m["state"] != "normal") {
                    return None;
                }
                for addr in &live {
                    let h = Client::new(addr).json("/health").await.ok()?;
                    if h["epoch"] != view["epoch"] || h["status"] != "normal" {
                        return None;
                    }
                }
                Some(view)
            }
        })
        .await
    }

    /// Sum of `keys` over running nodes' `/stats`.
    pub async fn total_keys(&mut self) -> u64 {
        let mut total = 0;
        for i in self.live() {
            total += self.client(i).json("/stats").await.map(|s| s["keys"].as_u64().unwrap_or(0)).unwrap_or(0);
        }
        total
    }

    /// Wait until the `keys` of `nodes` add up to `n` (moved keys dropped by their old owners).
    pub async fn wait_total_keys(&self, nodes: &[usize], n: u64) {
        eventually(Duration::from_secs(20), &format!("{n} keys stored exactly once"), || async {
            let mut t = 0;
            for &i in nodes {
                t += self.client(i).json("/stats").await.ok()?["keys"].as_u64()?;
            }
            (t == n).then_some(())
        })
        .await;
    }

    pub async fn keys_on(&self, i: usize) -> u64 {
        self.client(i).json("/stats").await.expect("stats")["keys"].as_u64().expect("keys")
    }

    /// What node `i` itself stores for `key` (its own copy, not a coordinated read), through the
    /// internal read endpoint.
    pub async fn local_entry(&self, i: usize, key: &[u8]) -> Option<dkv_storage::Entry> {
        use dkv_node::wire::{decode, encode, ReadRequest, ReadResponse};
        let client = self.client(i);
        let epoch = client.json("/health").await.expect("health")["epoch"].as_u64().expect("epoch");
        let req = encode(&ReadRequest { epoch, key: bytes::Bytes::copy_from_slice(key) });
        let (status, body) =
            client.raw(http::Method::POST, "/internal/read", Some(req.into())).await.expect("internal read");
        assert!(status.is_success(), "internal read: {status} {body:?}");
        decode::<ReadResponse>(&body).expect("read response").entry
    }

    pub fn restart_seed(&mut self) {
        let addr = self.seed.addr.clone();
        self.seed = spawn_seed(&addr);
    }
}

pub fn spawn_seed(addr: &str) -> Proc {
    spawn_seed_with_ttl(addr, NODE_TTL)
}

pub fn spawn_seed_with_ttl(addr: &str, ttl: &str) -> Proc {
    let child = dkv().args(["seed", "--listen", addr, "--node-ttl", ttl]).spawn().expect("spawn dkv seed");
    Proc { child, addr: addr.to_string() }
}

/// `count` keys `prefix0..` with values derived from the key.
pub fn dataset(prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count).map(|i| (format!("{prefix}{i}"), format!("value-of-{prefix}{i}-{}", "x".repeat(i % 50)))).collect()
}

/// Write all pairs, spreading them over nodes `via`.
pub async fn write_all(c: &Cluster, via: &[usize], data: &[(String, String)]) {
    for (i, (k, v)) in data.iter().enumerate() {
        let node = via[i % via.len()];
        c.client(node)
            .put(k.as_bytes(), v.clone().into_bytes())
            .await
            .unwrap_or_else(|e| panic!("put {k} via node {node}: {e}"));
    }
}

/// Check every pair reads back exactly, through rotating nodes; returns the keys that did not.
pub async fn missing(c: &Cluster, via: &[usize], data: &[(String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (i, (k, v)) in data.iter().enumerate() {
        let node = via[(i + 1) % via.len()];
        match c.client(node).get(k.as_bytes()).await {
            Ok(Some(got)) if got == v.as_bytes() => {}
            other => bad.push(format!("{k} via node {node}: {other:?}")),
        }
    }
    bad
}
