//! `dkv up`: a whole local cluster as child processes of one command.
//!
//! The children run in their own process group, so the terminal's Ctrl-C reaches only `dkv up`,
//! which then stops the cluster as a whole: every node is asked to stop *without* handing data to
//! the others (`POST /admin/stop`) — stopping a cluster is not N leaves — and then the seed.
//! If `dkv up` itself dies, the kernel kills the children (parent-death signal).
//!
//! It reports the cluster up only once it has seen it: every port it will use is checked free
//! before anything starts (and no two of them the same), the seed answers as the seed, and each
//! node answers as a node with the id the seed registered for its address. Only then does it
//! print its summary (URLs, pids, the dashboard, where the logs are), as the last thing on the
//! terminal: the children's logs go to one file each in a log directory (`--log-dir`), not to the
//! terminal, unless `--verbose` asks for them there. A child that exits, during start-up or
//! later, is reported with its exit status and its log file (the last lines of it during
//! start-up), and reaped at once: `dkv up` never leaves a zombie behind.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

use clap::ValueEnum;

use crate::cli::{FsyncPolicy, UpArgs};
use crate::client::{Client, Server};
use crate::errln;

/// Print to stdout, ignoring a closed pipe (whoever reads us may be gone by shutdown, and the
/// cluster keeps running without them).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Settings of one process each that `dkv up` gives its children itself, or leaves out on
/// purpose: inherited from its environment, `DKV_RESP_LISTEN` made every node bind one port,
/// `DKV_DATA_DIR` gave them one directory, and `DKV_FSYNC=always` without `--data-dir` stopped
/// every node at start (found by trying, 2026-12-06). The rest of the environment's `DKV_*`
/// settings (the replication factor, the cluster secret, passwords, limits) reach every child.
const PER_PROCESS: &[&str] = &[
    "DKV_LISTEN",
    "DKV_RESP_LISTEN",
    "DKV_ADVERTISE",
    "DKV_SEED",
    "DKV_DATA_DIR",
    "DKV_FSYNC",
    "DKV_REJOIN",
    "DKV_TLS_CERT",
    "DKV_TLS_KEY",
    "DKV_TLS_PEER_CA",
    "DKV_TLS_CLIENT_CA",
];

/// Settings the seed also reads, where they mean something else for it: `DKV_MAX_CONNECTIONS=2`
/// for the nodes let the seed take two connections, and the third node never registered (found
/// by a hunt, 2026-12-07). The seed keeps its own default: it takes a heartbeat of every member.
const NODES_ONLY: &[&str] = &["DKV_MAX_CONNECTIONS"];

/// Start `dkv ARGS` as a child of the cluster; its stdout and stderr go to `log` (truncated), or
/// to ours without one.
fn spawn(args: &[String], log: Option<&Path>) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).process_group(0).kill_on_drop(true);
    for var in PER_PROCESS {
        cmd.env_remove(var);
    }
    if args.first().is_some_and(|a| a == "seed") {
        for var in NODES_ONLY {
            cmd.env_remove(var);
        }
    }
    if let Some(path) = log {
        let file = std::fs::File::create(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("creating its log {}: {e}", path.display())))?;
        cmd.stdout(file.try_clone()?).stderr(file);
    }
    // SAFETY: prctl is async-signal-safe and only affects the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

/// The last `n` lines of a log file, indented, for an error message (empty if unreadable).
fn tail(path: &Path, n: usize) -> String {
    let Ok(text) = std::fs::read(path) else { return String::new() };
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("\n    {l}")).collect()
}

/// One child process of the cluster.
struct Proc {
    /// "the seed", "node 2".
    name: String,
    url: String,
    child: Child,
    pid: u32,
    /// Where its output goes (none with `--verbose`).
    log: Option<PathBuf>,
    /// Set once it has exited (and been reaped).
    exited: Option<ExitStatus>,
}

impl Proc {
    fn start(name: String, url: String, args: &[String], log: Option<PathBuf>) -> Result<Proc, String> {
        let child = spawn(args, log.as_deref()).map_err(|e| format!("starting {name}: {e}"))?;
        let pid = child.id().unwrap_or(0);
        Ok(Proc { name, url, child, pid, log, exited: None })
    }

    /// Its exit status if it has exited since the last look; reaps it.
    fn check_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return None;
        }
        let status = self.child.try_wait().ok().flatten()?;
        self.exited = Some(status);
        Some(status)
    }

    /// "node 1 (http://127.0.0.1:8081, pid 4242) exited (signal: 9 (SIGKILL)); its log: …", with
    /// `when` (" during start-up") after "exited".
    fn exit_report(&self, status: ExitStatus, when: &str) -> String {
        let log = match &self.log {
            Some(path) => format!("; its log: {}", path.display()),
            None => String::new(),
        };
        format!("{} ({}, pid {}) exited{when} ({status}){log}", self.name, self.url, self.pid)
    }
}

/// The ports `dkv up` will listen on, each with who uses it and the flag that sets it; refused
/// when they leave the port range or two of them are the same.
fn plan_ports(args: &UpArgs) -> Result<Vec<(u16, String)>, String> {
    let mut ports = vec![(args.seed_port, "the seed (--seed-port)".to_string())];
    for i in 0..args.nodes {
        let port = args.base_port.checked_add(i).ok_or("--base-port + --nodes exceeds the port range")?;
        ports.push((port, format!("node {i} (--base-port + {i})")));
        if let Some(base) = args.resp_base_port {
            let port = base.checked_add(i).ok_or("--resp-base-port + --nodes exceeds the port range")?;
            ports.push((port, format!("node {i}'s RESP (--resp-base-port + {i})")));
        }
    }
    for (i, (port, who)) in ports.iter().enumerate() {
        if let Some((_, other)) = ports[..i].iter().find(|(p, _)| p == port) {
            return Err(format!(
                "port {port} would be used by both {other} and {who}: choose ports that do not overlap"
            ));
        }
    }
    Ok(ports)
}

/// Refuse to start when another process already listens on one of the ports: a node would fail
/// to bind, and whatever listens there would answer in its place.
fn check_free(ports: &[(u16, String)]) -> Result<(), String> {
    for (port, who) in ports {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", *port)) {
            return Err(format!(
                "port {port}, for {who}, is not free on 127.0.0.1 ({e}): another process listens there; stop it or choose other ports"
            ));
        }
    }
    Ok(())
}

/// Whether a child serves as what it should.
enum Serving {
    Yes,
    NotYet,
    /// Something else answers at its address.
    Wrong(String),
}

/// The seed must answer `/health` as the seed; a node must answer `/health` as a node whose id
/// the seed (`seed`) registered for its address.
async fn serving(url: &str, seed: Option<&Client>, ca: Option<&Path>) -> Serving {
    let Ok(client) = Client::new(url).with_cacert(ca) else { return Serving::NotYet };
    let Ok(answer) = client.send(Method::GET, "/health", None).await else { return Serving::NotYet };
    let (wanted, what) = if seed.is_some() { (Server::Node, "node") } else { (Server::Seed, "seed") };
    if answer.server != wanted {
        return Serving::Wrong(format!("{url} answers, but not as the {what} dkv up started"));
    }
    let Some(seed) = seed else {
        return if answer.status == StatusCode::OK { Serving::Yes } else { Serving::NotYet };
    };
    let registered = async {
        let id = serde_json::from_slice::<serde_json::Value>(&answer.body).ok()?["id"].clone();
        let view = seed.json("/nodes").await.ok()?;
        let addr = url.split_once("://").map_or(url, |(_, addr)| addr);
        view["nodes"].as_array()?.iter().find(|m| m["addr"] == addr && m["id"] == id).map(|_| ())
    };
    match answer.status == StatusCode::OK && registered.await.is_some() {
        true => Serving::Yes,
        false => Serving::NotYet,
    }
}

/// Wait until every process in `procs` serves as what it should; an exit or a wrong answer is
/// an error.
async fn wait_serving(
    procs: &mut [Proc],
    seed: Option<&Client>,
    ca: Option<&Path>,
    deadline: Instant,
) -> Result<(), String> {
    let mut waiting: Vec<usize> = (0..procs.len()).collect();
    while !waiting.is_empty() {
        for p in procs.iter_mut() {
            if let Some(status) = p.check_exit() {
                let last = p.log.as_deref().map(|log| tail(log, 10)).unwrap_or_default();
                let report = p.exit_report(status, " during start-up");
                return Err(match last.is_empty() {
                    true => report,
                    false => format!("{report}, which ends with:{last}"),
                });
            }
        }
        let mut still = Vec::new();
        for &i in &waiting {
            match serving(&procs[i].url, seed, ca).await {
                Serving::Yes => {}
                Serving::NotYet => still.push(i),
                Serving::Wrong(why) => return Err(why),
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            if Instant::now() > deadline {
                let names: Vec<&str> = waiting.iter().map(|&i| procs[i].name.as_str()).collect();
                let logs: Vec<String> =
                    waiting.iter().filter_map(|&i| Some(procs[i].log.as_ref()?.display().to_string())).collect();
                let see = if logs.is_empty() { String::new() } else { format!(" (see {})", logs.join(", ")) };
                return Err(format!("{} did not start serving in time{see}", names.join(", ")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

pub async fn run(args: UpArgs) -> i32 {
    if let Some(why) = fsync_without_data(&args) {
        errln!("dkv up: {why}");
        return 2;
    }
    match run_inner(args).await {
        Ok(()) => 0,
        Err(e) => {
            errln!("dkv up: {e}");
            1
        }
    }
}

/// Why `--fsync` cannot be taken: `always` without `--data-dir`, where nodes keep their keys in
/// memory. `periodic`, the default, is taken as it is: clap refused it too, and `DKV_FSYNC` set for
/// the nodes of another cluster refused a `dkv up` that named neither, in clap's words only
/// (found by a hunt, 2026-12-07).
fn fsync_without_data(args: &UpArgs) -> Option<String> {
    if args.fsync != Some(FsyncPolicy::Always) || args.data_dir.is_some() {
        return None;
    }
    let from_env = std::env::var_os("DKV_FSYNC").is_some() && !std::env::args().any(|a| a.starts_with("--fsync"));
    Some(format!(
        "--fsync always needs --data-dir: without one the nodes keep their keys in memory, with nothing to fsync{}",
        if from_env { " (it came from DKV_FSYNC in the environment)" } else { "" }
    ))
}

/// Where the children's logs go: `--log-dir`, else `DATA_DIR/logs`, else a directory of the
/// temporary directory named after the seed port (two clusters never share a seed port).
fn log_dir(args: &UpArgs) -> PathBuf {
    match (&args.log_dir, &args.data_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(data)) => data.join("logs"),
        (None, None) => std::env::temp_dir().join(format!("dkv-up-{}", args.seed_port)),
    }
}

async fn run_inner(args: UpArgs) -> Result<(), String> {
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    // Each node would only log it, in its own file; here both timings are known.
    if let Some(why) = dkv_node::life::lease::interval_too_long(args.heartbeat_interval, args.node_ttl) {
        return Err(why);
    }
    check_free(&plan_ports(&args)?)?;
    // Said of --data-dir itself: the log directory under it failed first, and the error blamed
    // --log-dir (found by a hunt, 2026-12-07).
    if let Some(data) = args.data_dir.as_ref().filter(|d| d.exists() && !d.is_dir()) {
        return Err(format!(
            "--data-dir {} is a file, not a directory: give a directory (it is made if missing)",
            data.display()
        ));
    }
    let logs = match args.verbose {
        true => None,
        false => {
            let dir = log_dir(&args);
            std::fs::create_dir_all(&dir).map_err(|e| {
                format!("creating the log directory {}: {e}; choose another with --log-dir", dir.display())
            })?;
            Some(dir)
        }
    };
    let log = |name: &str| logs.as_ref().map(|dir| dir.join(format!("{name}.log")));
    let tls = args.tls.as_deref().map(Certificates::in_dir).transpose()?;
    let ca = tls.as_ref().map(|t| t.ca.as_path());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let seed_addr = format!("127.0.0.1:{}", args.seed_port);
    let hb = humantime::format_duration(args.heartbeat_interval).to_string();
    let ttl = humantime::format_duration(args.node_ttl).to_string();
    let mut seed_args = vec!["seed".into(), "--listen".into(), seed_addr.clone(), "--node-ttl".into(), ttl];
    seed_args.extend(tls.iter().flat_map(|t| t.flags("seed")));
    match &args.data_dir {
        // The seed's record of the membership, beside the nodes' data (see `record.rs` in the
        // seed crate): a cluster started again finds its members however slowly they come back.
        Some(dir) => seed_args.extend(["--data-dir".into(), dir.join("seed").display().to_string()]),
        // Nodes without data: every `dkv up` starts a new cluster, whose first node need not wait
        // a TTL for members to come back.
        None => seed_args.push("--new-cluster".into()),
    }
    let seed = Proc::start("the seed".into(), format!("{scheme}://{seed_addr}"), &seed_args, log("seed"))?;
    let mut seed = [seed];
    let deadline = Instant::now() + Duration::from_secs(30);
    if let Err(e) = wait_serving(&mut seed, None, ca, deadline).await {
        stop_all(&mut [], &mut seed[0], ca).await;
        return Err(e);
    }
    let [mut seed] = seed;

    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let addr = format!("127.0.0.1:{}", args.base_port + i);
        let mut argv: Vec<String> = vec![
            "node".into(),
            "--listen".into(),
            addr.clone(),
            "--advertise".into(),
            addr.clone(),
            "--seed".into(),
            format!("{scheme}://{seed_addr}"),
            "--heartbeat-interval".into(),
            hb.clone(),
        ];
        argv.extend(tls.iter().flat_map(|t| t.flags("node")));
        if let Some(base) = args.resp_base_port {
            argv.extend(["--resp-listen".into(), format!("127.0.0.1:{}", base + i)]);
        }
        if let Some(dir) = &args.data_dir {
            let fsync = args.fsync.unwrap_or(FsyncPolicy::Periodic);
            let fsync = fsync.to_possible_value().expect("no skipped variants").get_name().to_string();
            argv.extend(["--data-dir".into(), dir.join(format!("node-{i}")).display().to_string()]);
            argv.extend(["--fsync".into(), fsync]);
            // `dkv up --nodes N` asks for N nodes: one that left (`dkv leave`) comes back as new.
            argv.push("--rejoin".into());
        }
        match Proc::start(format!("node {i}"), format!("{scheme}://{addr}"), &argv, log(&format!("node-{i}"))) {
            Ok(p) => nodes.push(p),
            Err(e) => {
                stop_all(&mut nodes, &mut seed, ca).await;
                return Err(e);
            }
        }
    }
    let seed_client = match Client::new(&seed.url).with_cacert(ca) {
        Ok(client) => client,
        Err(e) => {
            stop_all(&mut nodes, &mut seed, ca).await;
            return Err(e.to_string());
        }
    };
    if let Err(e) = wait_serving(&mut nodes, Some(&seed_client), ca, deadline).await {
        stop_all(&mut nodes, &mut seed, ca).await;
        return Err(e);
    }

    // Listen for Ctrl-C before saying that it stops the cluster: one pressed at once is heard.
    let signals = match Signals::listen() {
        Ok(signals) => signals,
        Err(e) => {
            stop_all(&mut nodes, &mut seed, ca).await;
            return Err(format!("listening for signals: {e}"));
        }
    };
    summary(&args, &seed, &nodes, logs.as_deref());
    let result = watch(signals, &mut nodes, &mut seed).await;
    stop_all(&mut nodes, &mut seed, ca).await;
    result
}

/// The certificate files of `--tls DIR`, as `scripts/make-certs.sh` names them.
struct Certificates {
    dir: PathBuf,
    ca: PathBuf,
}

impl Certificates {
    /// The files of `dir`, each checked to be there before anything starts.
    fn in_dir(dir: &Path) -> Result<Certificates, String> {
        for name in ["ca.pem", "seed.pem", "seed.key", "node.pem", "node.key"] {
            if !dir.join(name).is_file() {
                return Err(format!(
                    "--tls {}: no {name} there; scripts/make-certs.sh {} makes a set",
                    dir.display(),
                    dir.display()
                ));
            }
        }
        Ok(Certificates { dir: dir.to_path_buf(), ca: dir.join("ca.pem") })
    }

    /// The TLS flags of the seed (`who`: "seed") or of a node ("node").
    fn flags(&self, who: &str) -> [String; 6] {
        let file = |name: String| self.dir.join(name).display().to_string();
        [
            "--tls-cert".into(),
            file(format!("{who}.pem")),
            "--tls-key".into(),
            file(format!("{who}.key")),
            "--tls-peer-ca".into(),
            file("ca.pem".into()),
        ]
    }
}

/// What a user needs once the cluster is up: printed last, nothing is written to the terminal
/// after it but the report of a child that exits.
fn summary(args: &UpArgs, seed: &Proc, nodes: &[Proc], logs: Option<&Path>) {
    let count = match nodes.len() {
        1 => "1 node".to_string(),
        n => format!("{n} nodes"),
    };
    say!("dkv cluster is up: seed {}, {count}", seed.url);
    say!("  seed       {}  (pid {})", seed.url, seed.pid);
    // Over TLS, redis-cli needs to be told so, and the CA; with a client password (the nodes
    // take it from the environment), how to give it, without printing it (the lines as printed
    // were refused: found by a hunt, 2026-12-07).
    let (bearer, redis_auth) = password_hint();
    let tls =
        args.tls.as_ref().map(|dir| format!("--tls --cacert {} ", dir.join("ca.pem").display())).unwrap_or_default();
    let tls = format!("{tls}{redis_auth}");
    for (i, p) in nodes.iter().enumerate() {
        match args.resp_base_port {
            Some(base) => {
                say!("  node {i:<4}  {}  (pid {}, RESP: redis-cli {tls}-p {})", p.url, p.pid, base + i as u16)
            }
            None => say!("  node {i:<4}  {}  (pid {})", p.url, p.pid),
        }
    }
    say!("  dashboard  {}/", seed.url);
    let node_logs = match nodes.len() {
        1 => "node-0.log".to_string(),
        n => format!("node-0.log … node-{}.log", n - 1),
    };
    match logs {
        Some(dir) => say!("  logs       {}/  (seed.log, {node_logs}; --verbose shows them here)", dir.display()),
        None => say!("  logs       on this terminal (--verbose)"),
    }
    let (a, b) = (&nodes[0].url, &nodes[nodes.len().min(2) - 1].url);
    let ca = args.tls.as_ref().map(|dir| format!("--cacert {} ", dir.join("ca.pem").display())).unwrap_or_default();
    let ca = format!("{ca}{bearer}");
    say!("try:\n  curl {ca}-X PUT -d 'John Doe' '{a}/put?key=user_123'\n  curl {ca}'{b}/get?key=user_123'");
    say!("Ctrl-C stops the whole cluster.");
}

/// How the summary's curl and redis-cli lines give the client password the nodes read from the
/// environment (`DKV_CLIENT_PASSWORD` or `DKV_CLIENT_PASSWORD_FILE`), as shell that reads it
/// there: the password itself is not printed. Empty without one.
fn password_hint() -> (String, String) {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let from = match (var("DKV_CLIENT_PASSWORD"), var("DKV_CLIENT_PASSWORD_FILE")) {
        (Some(_), _) => "$DKV_CLIENT_PASSWORD".to_string(),
        // As the node reads the file (`password_file`): its first line, without `\r` or a byte
        // order mark; the path quoted for the shell.
        (None, Some(file)) => format!(
            "$(head -n1 '{}' | tr -d '\\r' | sed '1s/^\\xEF\\xBB\\xBF//')",
            file.to_string_lossy().replace('\'', "'\\''")
        ),
        (None, None) => return (String::new(), String::new()),
    };
    (format!("-H \"Authorization: Bearer {from}\" "), format!("-a \"{from}\" --no-auth-warning "))
}

/// The signals `dkv up` answers. Each is a stream made once, before the summary: a signal that
/// arrives while nothing awaits it is kept for the next `recv`, where a `ctrl_c()` future made
/// anew at each turn of the loop would miss one that fell between two turns (and, before the
/// first, leave SIGINT's default action to kill `dkv up` without stopping its children).
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    /// The terminal went away (its window closed, the SSH session dropped): a stop as Ctrl-C's.
    /// Its default action ended `dkv up` at once, and the kernel then killed every child, so
    /// durable nodes stopped as if they had crashed (found by trying, 2026-12-06).
    hangup: Signal,
    /// A child's exit is seen at once, not at the next poll.
    child: Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            child: signal(SignalKind::child())?,
        })
    }
}

/// Until Ctrl-C, SIGTERM or SIGHUP, report each child that exits (and reap it). Ends with an error once
/// every child has exited, as there is nothing left to run.
async fn watch(mut signals: Signals, nodes: &mut [Proc], seed: &mut Proc) -> Result<(), String> {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = signals.interrupt.recv() => break,
            _ = signals.terminate.recv() => break,
            _ = signals.hangup.recv() => break,
            _ = signals.child.recv() => {}
            _ = tick.tick() => {}
        }
        if let Some(status) = seed.check_exit() {
            errln!(
                "dkv up: {}: the nodes keep serving with the membership they know, but none can join or leave",
                seed.exit_report(status, "")
            );
        }
        for p in nodes.iter_mut() {
            if let Some(status) = p.check_exit() {
                errln!("dkv up: {}; the other processes keep running", p.exit_report(status, ""));
            }
        }
        if seed.exited.is_some() && nodes.iter().all(|p| p.exited.is_some()) {
            return Err("every process of the cluster has exited".into());
        }
    }
    say!("stopping the cluster");
    Ok(())
}

/// Stop every child still running and reap all of them: nodes first (`POST /admin/stop`, over
/// TLS trusting `ca` with `--tls`, with the cluster secret the children got from the environment,
/// then SIGKILL after 10 s), then the seed (SIGTERM, then SIGKILL after 5 s). Without the secret
/// each node refused the stop (`403`), and was killed 10 s later (found by trying, 2026-12-06).
async fn stop_all(nodes: &mut [Proc], seed: &mut Proc, ca: Option<&Path>) {
    let secret = std::env::var("DKV_CLUSTER_SECRET").ok();
    for p in nodes.iter_mut().filter(|p| p.exited.is_none()) {
        if let Ok(client) = Client::new(&p.url).with_cacert(ca).map(|c| c.with_secret(secret.clone())) {
            let _ = client.raw(Method::POST, "/admin/stop", None).await;
        }
    }
    for p in nodes.iter_mut().filter(|p| p.exited.is_none()) {
        match tokio::time::timeout(Duration::from_secs(10), p.child.wait()).await {
            Ok(status) => p.exited = status.ok(),
            Err(_) => {
                errln!("dkv up: {} ({}, pid {}) did not stop in time; killing it", p.name, p.url, p.pid);
                let _ = p.child.kill().await;
            }
        }
    }
    if seed.exited.is_some() {
        return;
    }
    if let Some(pid) = seed.child.id() {
        // SAFETY: plain kill(2) on our own child's pid, not yet reaped (so not reused).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(5), seed.child.wait()).await {
        Ok(status) => seed.exited = status.ok(),
        Err(_) => {
            let _ = seed.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(flags: &str) -> UpArgs {
        let cli = crate::cli::Cli::parse_from(format!("dkv up {flags}").split_whitespace());
        match cli.command {
            crate::cli::Command::Up(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overlapping_ports_are_refused_before_anything_starts() {
        let e = plan_ports(&args("--nodes 2 --seed-port 9000 --base-port 9000")).unwrap_err();
        assert!(e.contains("port 9000") && e.contains("the seed") && e.contains("node 0"), "{e}");
        let e = plan_ports(&args("--nodes 3 --seed-port 8082 --base-port 8080")).unwrap_err();
        assert!(e.contains("node 2"), "{e}");
        let e = plan_ports(&args("--nodes 3 --resp-base-port 8081")).unwrap_err();
        assert!(e.contains("RESP"), "{e}");
        assert!(plan_ports(&args("--nodes 1000 --base-port 65000")).is_err());
        let ports = plan_ports(&args("--nodes 3")).unwrap();
        assert_eq!(ports.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [9000, 8080, 8081, 8082]);
    }

    #[test]
    fn a_port_in_use_is_refused() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = check_free(&[(port, "node 1 (--base-port + 1)".into())]).unwrap_err();
        assert!(e.contains(&port.to_string()) && e.contains("node 1") && e.contains("not free"), "{e}");
        drop(taken);
        assert!(check_free(&[(port, "node 1".into())]).is_ok());
    }
}
