//! A real cluster of `dkv` processes on 127.0.0.1 for scenario tests: a seed and nodes started
//! from the built binary with 100 ms heartbeats, killed by PID when the test ends. Waiting is
//! always polling with a deadline, never a fixed sleep.

#![allow(dead_code)]

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dkv::client::Client;
use serde_json::Value;
use tokio::time::Instant;

mod tools;
#[allow(unused_imports)] // not every test runs an outside tool
pub use tools::*;

pub const HEARTBEAT: &str = "100ms";
pub const NODE_TTL: &str = "1s";
/// The default replication factor N; a key lives on min(N, nodes) nodes.
pub const N: u64 = 3;

pub fn copies(nodes: u64) -> u64 {
    N.min(nodes)
}

/// A port free now, below the kernel's ephemeral range (32768 and up here), so no client socket
/// of another test takes it between now and the moment a node binds it, and never one that this
/// or another test process of the run was given (see [`claim`]).
pub fn free_port() -> u16 {
    free_port_run(1)
}

/// `n` consecutive free ports, chosen as [`free_port`] chooses one.
pub fn free_port_run(n: u16) -> u16 {
    static CLAIMED: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    for _ in 0..1000 {
        let base = 20_000 + rand::random::<u16>() % 12_000;
        let claims: Option<Vec<_>> = (base..base + n).map(claim).collect();
        let Some(claims) = claims else { continue };
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            CLAIMED.lock().unwrap_or_else(|e| e.into_inner()).extend(claims);
            return base;
        }
    }
    panic!("no run of {n} free ports found");
}

/// A lock on `port` for as long as this process runs, or `None` if a test process holds it.
/// Nextest runs each test in a process of its own, so without it two tests running at once could
/// both find a port free and both be given it, in the moment before either binds it: a lock
/// file per port (`flock`, released by the kernel when the process ends) keeps them apart.
fn claim(port: u16) -> Option<std::fs::File> {
    let dir = std::env::temp_dir().join("dkv-test-ports");
    std::fs::create_dir_all(&dir).expect("a directory for the ports' lock files");
    let file = std::fs::File::create(dir.join(port.to_string())).expect("a port's lock file");
    file.try_lock().ok()?;
    Some(file)
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
    /// The arguments it was started with, to start it again (see [`Cluster::restart_node`]).
    pub args: Vec<String>,
    /// Its Redis-protocol address, when it serves one.
    pub resp: Option<String>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a child this test started.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Stop the process (SIGSTOP) and wait until every one of its threads has stopped. kill(2)
    /// returns before that: the stop takes effect in each thread as it next runs, so on a loaded
    /// machine a thread of a node "paused" this way went on to apply a write a few milliseconds
    /// later.
    pub async fn pause(&self) {
        self.signal(libc::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.pid());
        eventually(Duration::from_secs(10), "every thread of the process to stop", || async {
            let threads = std::fs::read_dir(&tasks).ok()?;
            let stopped = |t: std::fs::DirEntry| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // The state follows the command name, which is in parentheses and may hold spaces.
                stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
            };
            threads.flatten().all(stopped).then_some(())
        })
        .await;
    }

    /// Let a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
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
    /// With durable nodes: node `i` keeps its data in `data_root/node-i` (removed at drop).
    pub data_root: Option<std::path::PathBuf>,
    /// Every node also serves RESP on a port of its own.
    pub with_resp: bool,
    /// The nodes speak TLS: the CA file clients trust (see [`Cluster::start_tls`]).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Node `i` writes its log to `log_dir/node-i.log` instead of the test's stderr.
    pub log_dir: Option<std::path::PathBuf>,
    /// The nodes started while it is set write their log to a pipe whose reader is gone.
    pub stderr_closed: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
        if let Some(root) = &self.data_root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// A fresh directory under the system temp dir for one test's data.
pub fn temp_root(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("dkv-test-{name}-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&p).expect("create a temp dir");
    p
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
        Self::launch(n, node_flags, node_ttl, None, false).await
    }

    /// A cluster of nodes that each keep their data in a directory of their own.
    pub async fn start_durable(n: usize, node_flags: &[&str], node_ttl: &str) -> Cluster {
        Self::launch(n, node_flags, node_ttl, Some(temp_root("durable")), false).await
    }

    /// A cluster whose nodes also serve the Redis protocol (see [`Proc::resp`]).
    pub async fn start_resp(n: usize, node_flags: &[&str]) -> Cluster {
        Self::launch(n, node_flags, NODE_TTL, None, true).await
    }

    async fn launch(
        n: usize,
        node_flags: &[&str],
        node_ttl: &str,
        data_root: Option<std::path::PathBuf>,
        with_resp: bool,
    ) -> Cluster {
        let seed_addr = format!("127.0.0.1:{}", free_port());
        let seed = spawn_seed_with_ttl(&seed_addr, node_ttl);
        let node_flags = node_flags.iter().map(|s| s.to_string()).collect();
        let mut c = Cluster {
            seed,
            nodes: Vec::new(),
            node_flags,
            data_root,
            with_resp,
            tls_ca: None,
            log_dir: None,
            stderr_closed: false,
        };
        c.wait_seed().await;
        for _ in 0..n {
            c.add_node();
        }
        c.wait_normal(n).await;
        c
    }

    /// A cluster whose nodes speak TLS (their flags name the certificates) and serve RESP,
    /// reached by clients that trust `ca`; each node logs to `log_dir/node-i.log`.
    pub async fn start_tls(n: usize, node_flags: &[&str], ca: &std::path::Path, log_dir: &std::path::Path) -> Cluster {
        let mut c = Self::launch_tls(n, node_flags, ca, log_dir).await;
        c.wait_normal(n).await;
        c
    }

    /// [`Cluster::start_tls`] without waiting for the nodes (whose `/health` a client without a
    /// certificate cannot read when they require client certificates).
    pub async fn launch_tls(n: usize, node_flags: &[&str], ca: &std::path::Path, log_dir: &std::path::Path) -> Cluster {
        Self::launch_tls_seed(n, node_flags, &[], ca, log_dir).await
    }

    /// [`Cluster::launch_tls`] with `seed_flags` given to the seed. With `--tls-cert` among them
    /// the seed speaks TLS, logs to `log_dir/seed.log`, and its address is `https://…` (what the
    /// nodes' `--seed` and [`Cluster::seed_client`] then use).
    pub async fn launch_tls_seed(
        n: usize,
        node_flags: &[&str],
        seed_flags: &[&str],
        ca: &std::path::Path,
        log_dir: &std::path::Path,
    ) -> Cluster {
        let seed_addr = format!("127.0.0.1:{}", free_port());
        let seed = if seed_flags.contains(&"--tls-cert") {
            let mut args: Vec<String> =
                ["seed", "--listen", &seed_addr, "--node-ttl", NODE_TTL].map(String::from).to_vec();
            args.extend(seed_flags.iter().map(|s| s.to_string()));
            let log = std::fs::File::create(log_dir.join("seed.log")).expect("create the seed's log");
            let child = dkv().args(&args).arg("--new-cluster").stderr(log).spawn().expect("spawn dkv seed");
            Proc { child, addr: format!("https://{seed_addr}"), args, resp: None }
        } else {
            assert!(seed_flags.is_empty(), "seed flags without --tls-cert are not passed on");
            spawn_seed_with_ttl(&seed_addr, NODE_TTL)
        };
        let node_flags = node_flags.iter().map(|s| s.to_string()).collect();
        let mut c = Cluster {
            seed,
            nodes: Vec::new(),
            node_flags,
            data_root: None,
            with_resp: true,
            tls_ca: Some(ca.to_path_buf()),
            log_dir: Some(log_dir.to_path_buf()),
            stderr_closed: false,
        };
        c.wait_seed().await;
        for _ in 0..n {
            c.add_node();
        }
        c
    }

    /// A client for the node at `addr`: over TLS, trusting the cluster's CA, when it has one.
    pub fn node_client(&self, addr: &str) -> Client {
        match &self.tls_ca {
            None => Client::new(addr),
            Some(ca) => Client::new(&format!("https://{addr}")).with_cacert(Some(ca)).expect("the test CA loads"),
        }
    }

    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.data_root.as_ref().expect("a durable cluster").join(format!("node-{i}"))
    }

    /// SIGKILL node `i` and wait until it is gone.
    pub async fn kill_node(&mut self, i: usize) {
        self.nodes[i].signal(libc::SIGKILL);
        self.nodes[i].wait_exit(Duration::from_secs(10)).await;
    }

    /// Start node `i` again with the same arguments (same address, same data directory).
    pub fn restart_node(&mut self, i: usize) {
        let args = self.nodes[i].args.clone();
        let child = dkv().args(&args).spawn().expect("spawn dkv node");
        self.nodes[i].child = child;
    }

    /// A client for the seed: over TLS, trusting the cluster's CA, when its address is `https://`.
    pub fn seed_client(&self) -> Client {
        match (&self.tls_ca, self.seed.addr.starts_with("https://")) {
            (Some(ca), true) => Client::new(&self.seed.addr).with_cacert(Some(ca)).expect("the test CA loads"),
            _ => Client::new(&self.seed.addr),
        }
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
        self.add_node_with_env(&[])
    }

    /// [`Cluster::add_node`] with extra environment variables (for example libfaketime's).
    pub fn add_node_with_env(&mut self, env: &[(&str, &str)]) -> usize {
        let seed = self.seed.addr.clone();
        self.add_node_via(&seed, env)
    }

    /// [`Cluster::add_node`] reaching the seed at `seed` (a [`Link`] to it, say).
    pub fn add_node_via(&mut self, seed: &str, env: &[(&str, &str)]) -> usize {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> =
            ["node", "--listen", &addr, "--advertise", &addr, "--seed", seed].map(String::from).to_vec();
        let defaults = [
            ("--heartbeat-interval", HEARTBEAT),
            ("--request-timeout", "2s"),
            ("--leave-timeout", "20s"),
            ("--anti-entropy-interval", "2s"),
        ];
        for (flag, default) in defaults {
            if !self.node_flags.iter().any(|f| f == flag) {
                args.extend([flag.to_string(), default.to_string()]);
            }
        }
        args.extend(self.node_flags.iter().cloned());
        if self.data_root.is_some() {
            args.extend(["--data-dir".to_string(), self.data_dir(self.nodes.len()).display().to_string()]);
        }
        let resp = self.with_resp.then(|| format!("127.0.0.1:{}", free_port()));
        if let Some(r) = &resp {
            args.extend(["--resp-listen".to_string(), r.clone()]);
        }
        let mut cmd = dkv();
        cmd.args(&args).envs(env.iter().copied());
        if let Some(dir) = &self.log_dir {
            let log = std::fs::File::create(dir.join(format!("node-{}.log", self.nodes.len()))).expect("create a log");
            cmd.stderr(log);
        }
        if self.stderr_closed {
            cmd.stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn dkv node");
        // Every line the node logs from now on fails to be written (EPIPE).
        drop(child.stderr.take());
        self.nodes.push(Proc { child, addr, args, resp });
        self.nodes.len() - 1
    }

    pub fn client(&self, i: usize) -> Client {
        self.node_client(&self.nodes[i].addr)
    }

    /// Indices of nodes still running.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_running()).collect()
    }

    /// Wait until the seed keeps `n` members past its TTL in the view (`dkv_seed_expiry_withheld`).
    pub async fn wait_withheld(&self, n: usize) {
        let seed = self.seed_client();
        let gauge = format!("dkv_seed_expiry_withheld {n}");
        eventually(Duration::from_secs(15), &format!("the seed to withhold the expiry of {n} members"), || {
            let (seed, gauge) = (seed.clone(), gauge.clone());
            async move {
                let (_, metrics) = seed.raw(http::Method::GET, "/metrics", None).await.ok()?;
                String::from_utf8_lossy(&metrics).contains(&gauge).then_some(())
            }
        })
        .await;
    }

    /// The seed's current view.
    pub async fn seed_view(&self) -> Option<Value> {
        self.seed_client().json("/nodes").await.ok()
    }

    /// Once the seed lists `n` normal members: the ring as node 0 places keys (N=3), and each
    /// node's id by its index here, for tests that pick keys by where they live.
    pub async fn ring(&mut self, n: usize) -> (dkv_membership::Topology, Vec<dkv_membership::NodeId>) {
        let view: dkv_membership::View = serde_json::from_value(self.wait_normal(n).await).expect("a view");
        let ids: Vec<_> = (self.nodes.iter())
            .map(|p| view.nodes.iter().find(|m| m.addr == p.addr).map(|m| m.id))
            .collect::<Option<_>>()
            .expect("every node a member");
        (dkv_membership::Topology::new(view, ids[0], N as usize), ids)
    }

    /// Wait until the seed lists exactly `n` members, all `normal`, and every running node has
    /// adopted that epoch and reports itself healthy.
    pub async fn wait_normal(&mut self, n: usize) -> Value {
        let live: Vec<Client> = self.live().into_iter().map(|i| self.client(i)).collect();
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
                for client in &live {
                    let h = client.json("/health").await.ok()?;
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

    /// What node `i` itself stores for `key` (its own copy, not a coordinated read), through an
    /// internal read message.
    pub async fn local_entry(&self, i: usize, key: &[u8]) -> Option<dkv_storage::Entry> {
        use dkv_node::transport::wire::{Kind, ReadRequest, ReadResponse};
        let epoch = self.client(i).json("/health").await.expect("health")["epoch"].as_u64().expect("epoch");
        let req = ReadRequest { epoch, key: bytes::Bytes::copy_from_slice(key) };
        let answer: ReadResponse =
            internal_call(&self.nodes[i].addr, None, Kind::Read, &req).await.expect("internal read");
        answer.entry
    }

    /// Start the seed again with the arguments it had (after it was killed).
    /// Give the seed `flags` too, from its next start ([`Cluster::restart_seed`]) on.
    pub fn add_seed_flags(&mut self, flags: &[&str]) {
        self.seed.args.extend(flags.iter().map(|s| s.to_string()));
    }

    pub fn restart_seed(&mut self) {
        let args = self.seed.args.clone();
        let child = dkv().args(&args).spawn().expect("spawn dkv seed");
        self.seed.child = child;
    }
}

pub fn spawn_seed(addr: &str) -> Proc {
    spawn_seed_with_ttl(addr, NODE_TTL)
}

/// A seed that starts a new cluster (`--new-cluster`: its first node is its first member at once);
/// [`Cluster::restart_seed`] starts it again as a restart, without the flag.
pub fn spawn_seed_with_ttl(addr: &str, ttl: &str) -> Proc {
    let args: Vec<String> = ["seed", "--listen", addr, "--node-ttl", ttl].map(String::from).to_vec();
    let child = dkv().args(&args).arg("--new-cluster").spawn().expect("spawn dkv seed");
    Proc { child, addr: addr.to_string(), args, resp: None }
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

/// Writers through random live nodes: each key written once with a unique value. Returns the
/// acknowledged pairs and the keys whose write failed (they may or may not exist).
pub struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, String)>>>,
    failed: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    pub fn start(addrs: Arc<Mutex<Vec<String>>>, writers: usize, phase: usize) -> Writers {
        Self::start_with(addrs, writers, phase, "")
    }

    /// Like `start`, with `query` (e.g. `&w=all`) added to every PUT.
    pub fn start_with(addrs: Arc<Mutex<Vec<String>>>, writers: usize, phase: usize, query: &'static str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..writers)
            .map(|w| {
                let (stop, acked, failed, addrs) = (stop.clone(), acked.clone(), failed.clone(), addrs.clone());
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
                    for i in 0..20_000usize {
                        if stop.load(Ordering::Relaxed) || tokio::time::Instant::now() > deadline {
                            return;
                        }
                        let addr = {
                            let a = addrs.lock().unwrap();
                            a[rand::random::<u32>() as usize % a.len()].clone()
                        };
                        let (k, v) =
                            (format!("p{phase}w{w}-{i}"), format!("value {phase}/{w}/{i} {}", "z".repeat(i % 40)));
                        let pq = format!("/put?key={}{query}", dkv::client::encode_key(k.as_bytes()));
                        let body = Some(bytes::Bytes::from(v.clone().into_bytes()));
                        match Client::new(&addr).raw(http::Method::PUT, &pq, body).await {
                            Ok((status, _)) if status == http::StatusCode::NO_CONTENT => {
                                acked.lock().unwrap().push((k, v))
                            }
                            _ => failed.lock().unwrap().push(k),
                        }
                    }
                })
            })
            .collect();
        Writers { stop, acked, failed, tasks }
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub async fn wait_more(&self, more: usize) {
        let target = self.acked_count() + more;
        eventually(Duration::from_secs(60), &format!("{target} acknowledged writes"), || async {
            (self.acked_count() >= target).then_some(())
        })
        .await;
    }

    pub async fn finish(self) -> (Vec<(String, String)>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (self.acked.lock().unwrap().clone(), self.failed.lock().unwrap().clone())
    }
}

/// Send one node-to-node message to the node at `addr`, as a peer of cluster "dkv" would.
pub async fn internal_call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    addr: &str,
    secret: Option<&str>,
    kind: dkv_node::transport::wire::Kind,
    req: &Req,
) -> Result<Resp, dkv_transport::CallError> {
    let client = dkv_transport::Client::new(dkv_transport::ClientConfig {
        auth: dkv_transport::Auth { cluster: "dkv".into(), secret: secret.map(str::to_string) },
        connect_timeout: std::time::Duration::from_secs(5),
        max_frame: 64 << 20,
        max_in_flight: 16,
        wrap: None,
    });
    let body = client
        .call(addr, kind as u8, |b| dkv_transport::put_postcard(b, req), std::time::Duration::from_secs(10))
        .await?;
    postcard::from_bytes(&body)
        .map_err(|e| dkv_transport::CallError::Protocol { addr: addr.into(), reason: e.to_string() })
}

/// A TCP link to `target` that the test can cut: the way one node reaches the seed, so that the
/// node alone loses the seed while everything else goes on. Cut, it closes every connection it
/// carries and drops each new one at once; mended, it carries them again.
pub struct Link {
    pub addr: String,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    pub async fn start(target: &str) -> Link {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a link");
        let addr = listener.local_addr().expect("link address").to_string();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let target = target.to_string();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue;
                }
                let (target, mut watch) = (target.clone(), watch.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Link { addr, cut, task }
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn mend(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}
