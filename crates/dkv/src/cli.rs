//! Command line: every flag also reads a `DKV_*` environment variable, durations are written like
//! `200ms`, `5s`, `1m`, sizes like `8KiB`, `16MiB` or a plain number of bytes.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "dkv", version, about = "dkv: a distributed key-value store", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
pub enum Command {
    /// Run the membership service.
    Seed(SeedArgs),
    /// Run a storage node.
    Node(NodeArgs),
    /// Start a seed and N nodes on 127.0.0.1 as child processes; Ctrl-C stops them all.
    Up(UpArgs),
    /// Read a key; prints its value.
    Get(GetArgs),
    /// Write a key.
    Put(PutArgs),
    /// Delete a key.
    Del(DelArgs),
    /// Show how long a key has left before it expires.
    Ttl(KeyArgs),
    /// Show the members: state, key copies, hints, requests, p99 and data moving (--watch: live).
    Status(StatusArgs),
    /// List every key of the cluster, one per line (non-UTF-8 bytes and control characters
    /// escaped as \xNN, or \n, \r, \t; a backslash as \\).
    Scan(ScanArgs),
    /// Show which nodes hold a key, and the version each one has.
    Where(WhereArgs),
    /// Load a node or the whole cluster over HTTP or RESP and report throughput and latency.
    Bench(BenchArgs),
    /// Make a node leave the cluster for good: it hands its keys to the others and exits.
    Leave(LeaveArgs),
    /// Take members that are gone for good out of the membership, at the seed: the seed expires
    /// none while two or more are silent at once, so this is how a cluster that lost several of
    /// its nodes shrinks. A live member is refused (make it leave instead) unless --force.
    Remove(RemoveArgs),
    /// Exit 0 if a health URL answers 200 (container health checks; the image has no curl).
    Health(HealthArgs),
}

/// A `--watch` interval: a duration of at least 100 ms, so a refresh never runs back to back.
fn at_least_100ms(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s} is shorter than 100ms"));
    }
    Ok(d)
}

pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}: write durations like 200ms, 5s or 1m"))
}

/// A duration a process waits between steps or for an answer: at least 10 ms. `0s` made a
/// heartbeat loop spin on a core, every peer call fail at once ("no connection within 0 ms"), or a
/// leave end before it began (found by trying, 2026-12-06).
fn at_least_10ms(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(10) {
        return Err(format!("{s} is shorter than 10ms: give a duration like 100ms, 5s or 1m"));
    }
    Ok(d)
}

/// A count that must be at least one (`--limit 0` listed no member and said nothing of it).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("0 lists nothing: give at least 1, or --all".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// A RESP `--idle-timeout`: 0 (never), or at least a second, as Redis's `timeout` counts in
/// seconds. `1ms` was taken, and closed every client between two commands (found by trying,
/// 2026-12-06).
fn idle_timeout(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() || d >= Duration::from_secs(1) => Ok(d),
        _ => Err(format!("{s} is shorter than a second: give 0s (never) or a duration like 300s or 10m")),
    }
}

/// A seed's `--node-ttl`: at least 100 ms, the shortest heartbeat interval worth running under it.
fn node_ttl(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s} is shorter than 100ms: a node must heartbeat several times within it (default 15s)"));
    }
    Ok(d)
}

/// A key's `--ttl`: whole milliseconds, the node's unit, and at least one (`500us` became `0ms`
/// on the wire, and the node's refusal quoted a value the user never typed).
pub fn key_ttl(s: &str) -> Result<Duration, String> {
    let ttl = duration(s)?;
    if ttl < Duration::from_millis(1) || ttl.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!("{s}: a TTL is whole milliseconds, at least 1ms"));
    }
    // A node reads a `ttl=` part of days in at most 8 digits (`front/query.rs`); the client sends
    // days and the rest in parts (`client::ttl_param`).
    if ttl.as_millis() >= u128::from(MAX_TTL_DAYS + 1) * 86_400_000 {
        return Err(format!("{s} is longer than the longest TTL a node takes, {MAX_TTL_DAYS}d (about 273 000 years)"));
    }
    Ok(ttl)
}

/// The most days a node takes in a TTL.
pub const MAX_TTL_DAYS: u64 = 99_999_999;

/// A `--busy-poll` window: a duration of at most a second (a longer one keeps a core busy long
/// after the requests stopped, for no request's gain).
pub fn busy_poll_window(s: &str) -> Result<Duration, String> {
    let window = duration(s)?;
    if window > Duration::from_secs(1) {
        return Err(format!("{s} is longer than 1s: a busy-poll window is microseconds to milliseconds, e.g. 50us"));
    }
    Ok(window)
}

/// A cluster secret: printable ASCII, since it travels in an HTTP header (`x-dkv-secret`). One
/// with a control character (a trailing newline from `echo` into a file) was dropped from every
/// call to the seed, which then refused them all with a 403 that did not say why.
fn cluster_secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an empty cluster secret: give a non-empty one, or none".into());
    }
    if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "the cluster secret holds {c:?}: it must be printable ASCII (it travels in an HTTP header); \
             a trailing newline from `echo` into a file is the usual cause"
        ));
    }
    if s.trim() != s {
        // HTTP trims a header's value: the seed read another secret than the one given.
        return Err("the cluster secret begins or ends with a space: HTTP drops those from the header it travels in; \
                    give one without"
            .into());
    }
    Ok(s.to_string())
}

/// [`cluster_secret`] as clap's parser, whose error leaves the value out: clap's own says
/// `invalid value '<value>'`, and a secret refused at start went whole into the logs.
#[derive(Clone)]
struct SecretParser;

impl clap::builder::TypedValueParser for SecretParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refused = |why: String| {
            let text = format!("--cluster-secret (DKV_CLUSTER_SECRET) refused, its value not shown: {why}\n");
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, text).with_cmd(cmd)
        };
        let s = value.to_str().ok_or_else(|| refused("it is not UTF-8: it must be printable ASCII".into()))?;
        cluster_secret(s).map_err(refused)
    }
}

pub fn byte_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("{s:?} is not a size: write e.g. 8192, 8KiB or 16MiB"))?;
    // Units in any case, each a power of two (`1kB` was refused where `1KB` was taken, found by
    // trying, 2026-12-06): 8k, 8kb, 8KB and 8KiB are all 8 192 bytes.
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" | "kb" => 1 << 10,
        "mib" | "m" | "mb" => 1 << 20,
        "gib" | "g" | "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size unit {:?}: use B, K (KB, KiB), M (MB, MiB) or G (GB, GiB), each a power of two",
                unit.trim()
            ))
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s} is too large"))
}

/// A size that must hold at least a byte (`--max-value-size 0` refused every value but the empty one).
fn positive_size(s: &str) -> Result<usize, String> {
    match byte_size(s)? {
        0 => Err(format!("{s}: give at least 1 byte")),
        n => Ok(n),
    }
}

/// A `--move-rate`: 0 (no limit) or at least 64 KiB/s. `1` (a byte a second, for `1MiB`) let a join
/// copy its first batch and then stay at 100% for days, joining.
fn move_rate(s: &str) -> Result<usize, String> {
    // A rate may say so: `50MiB/s` (refused as an unknown unit, found by trying, 2026-12-06).
    let per_second = match s.len().checked_sub(2).filter(|&i| s.is_char_boundary(i)) {
        Some(i) if s[i..].eq_ignore_ascii_case("/s") => &s[..i],
        _ => s,
    };
    match byte_size(per_second)? {
        n @ 1..65_536 => Err(format!("{s} is {n} bytes a second: give 0 (no limit) or at least 64KiB, e.g. 50MiB")),
        n => Ok(n),
    }
}

/// A `host:port` other processes dial: a port from 1 to 65535, a host without spaces or slashes.
pub fn host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} has no port: give host:port, e.g. 10.0.0.5:9000"));
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{s:?}: the port is a number from 1 to 65535"));
    }
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(format!("{s:?}: give the host as a name or an address, e.g. 10.0.0.5:9000"));
    }
    Ok(())
}

/// A client's `--node`: `http://` or `https://` with a host and, if given, a port from 1 to
/// 65535, or a bare `host:port` (taken as `http://`). Anything else was dialed as it came: an
/// `ftp://` URL over HTTP, port 99999 as a refused connection (found by trying, 2026-12-06).
pub fn node_url(s: &str) -> Result<String, String> {
    server_url(s, "node", "e.g. http://127.0.0.1:8080")
}

/// `dkv remove --seed`: as [`node_url`], for the seed (it took `ftp://` as `http://`, and a bare
/// host as port 80, until 2026-12-06).
fn seed_url(s: &str) -> Result<String, String> {
    server_url(s, "seed", "e.g. 127.0.0.1:9000 or https://seed:9000")
}

/// A server's URL (`http://` or `https://` with a host, and a port from 1 to 65535 if one is
/// given) or a bare `host:port`: what `what` is told in an error that shows `example`.
///
/// A path may follow the host and port (a proxy's prefix), but no query or fragment: the
/// commands append their own path and query to it as text, so `--node
/// 'http://h:8080/delete?key=important#'` made `dkv del user_1` delete `important`, and exit 0
/// (found by a hunt, 2026-12-07).
fn server_url(s: &str, what: &str, example: &str) -> Result<String, String> {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, s),
    };
    if let Some(scheme) = scheme.filter(|s| *s != "http" && *s != "https") {
        return Err(format!("{s:?}: a {what} speaks http:// or https://, not {scheme}://: {example}"));
    }
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if let Some(at) = tail.find(['?', '#']) {
        return Err(format!(
            "{s:?}: a {what}'s URL takes no query or fragment ({:?}): the commands add their own; {example}",
            &tail[at..]
        ));
    }
    if authority.contains('@') {
        return Err(format!("{s:?}: a user or password does not go in the {what}'s URL: {example}"));
    }
    if scheme.is_none() {
        host_port(authority).map_err(|e| format!("{e} (or a URL, {example})"))?;
        return Ok(s.to_string());
    }
    let host = match authority.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((host, port)) if !port.contains(']') => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("{s:?}: the port is a number from 1 to 65535"));
            }
            host
        }
        _ => authority,
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{s:?}: give the {what}'s host, {example}"));
    }
    Ok(s.to_string())
}

/// A `--max-key-size`: a size no engine refuses.
fn key_size(s: &str) -> Result<usize, String> {
    let n = positive_size(s)?;
    if n > dkv_storage::MAX_KEY_BYTES {
        return Err(format!("{s} is over the largest key dkv stores, {} KiB", dkv_storage::MAX_KEY_BYTES >> 10));
    }
    Ok(n)
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// Address to listen on.
    #[arg(long, env = "DKV_LISTEN", default_value = "0.0.0.0:9000")]
    pub listen: SocketAddr,
    /// A node that has not heart-beaten for this long is removed from the membership.
    #[arg(long, env = "DKV_NODE_TTL", default_value = "15s", value_parser = node_ttl)]
    pub node_ttl: Duration,
    /// Require this secret from nodes on register/heartbeat/ready/leave.
    #[arg(long, env = "DKV_CLUSTER_SECRET", hide_env_values = true, value_parser = SecretParser)]
    pub cluster_secret: Option<String>,
    /// Name of the cluster; nodes started for another cluster are refused.
    #[arg(long, env = "DKV_CLUSTER_NAME", default_value = "dkv")]
    pub cluster_name: String,
    /// Connections open at once (each member keeps one for its heartbeats, and HTTP clients
    /// come and go); more are refused until some close.
    #[arg(long, env = "DKV_MAX_CONNECTIONS", default_value_t = dkv_seed::SeedConfig::MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// How long an HTTP connection's read or write may wait without moving a byte: a client
    /// that sent part of a request, or keeps a connection idle, is closed after it.
    #[arg(long, env = "DKV_READ_TIMEOUT", default_value = "30s", value_parser = at_least_10ms)]
    pub read_timeout: Duration,
    /// The seed's certificate chain (PEM), signed by the cluster CA: its port then speaks only
    /// TLS, and members call it with `--seed https://HOST:PORT`. SIGHUP reloads it.
    #[arg(long, env = "DKV_TLS_CERT", requires_all = ["tls_key", "tls_peer_ca"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "DKV_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The cluster CA (PEM): membership changes and heartbeat lines need a member's
    /// certificate it signed.
    #[arg(long, env = "DKV_TLS_PEER_CA", requires = "tls_cert")]
    pub tls_peer_ca: Option<std::path::PathBuf>,
    /// Keep a record of the membership here, written before every answer that changes it: a
    /// restarted seed then knows its members however late they come back (without it, only
    /// those back within one TTL).
    #[arg(long, env = "DKV_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// This seed starts a new cluster: the first new node is its first member at once. Without
    /// it, a seed without --data-dir cannot tell a new cluster from a restart under a live one,
    /// and new nodes wait up to one --node-ttl for members to come back first. Never give it to a
    /// seed that replaces a running cluster's. (A --data-dir without a record starts a new
    /// cluster anyway.)
    #[arg(long, env = "DKV_NEW_CLUSTER", value_parser = clap::builder::BoolishValueParser::new())]
    pub new_cluster: bool,
}

impl SeedArgs {
    /// The TLS files, when the seed speaks TLS.
    pub fn tls_files(&self) -> Option<dkv_node::config::TlsFiles> {
        let (Some(cert), Some(key), Some(peer_ca)) = (&self.tls_cert, &self.tls_key, &self.tls_peer_ca) else {
            return None;
        };
        Some(dkv_node::config::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            peer_ca: peer_ca.clone(),
            client_ca: None,
        })
    }
}

/// `--fsync`: when a write on a node with a data directory counts as stored.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Acknowledge after fsync; concurrent writes share one fsync (group commit).
    Always,
    /// Acknowledge once in the log; fsync every --fsync-interval.
    Periodic,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Address to listen on.
    #[arg(long, env = "DKV_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// host:port other nodes use to reach this one [default: the listen address if specific,
    /// else this host's address toward the seed with the listen port].
    #[arg(long, env = "DKV_ADVERTISE")]
    pub advertise: Option<String>,
    /// host:port of the seed; `https://host:port` for a seed started with --tls-cert (the node
    /// then shows it --tls-cert and checks its certificate against --tls-peer-ca).
    #[arg(long, env = "DKV_SEED", default_value = "127.0.0.1:9000")]
    pub seed: String,
    /// How often to heartbeat the seed.
    #[arg(long, env = "DKV_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = at_least_10ms)]
    pub heartbeat_interval: Duration,
    /// Longest a graceful leave (SIGTERM) may take before the node exits anyway.
    #[arg(long, env = "DKV_LEAVE_TIMEOUT", default_value = "30s", value_parser = at_least_10ms)]
    pub leave_timeout: Duration,
    /// Longest a join may go without pulling anything from its holders before the node gives up:
    /// it leaves the membership (writes to its ranges stop waiting for it) and exits with an error.
    #[arg(long, env = "DKV_JOIN_TIMEOUT", default_value = "30s", value_parser = at_least_10ms)]
    pub join_timeout: Duration,
    /// Timeout of one request to a peer or the seed.
    #[arg(long, env = "DKV_REQUEST_TIMEOUT", default_value = "5s", value_parser = at_least_10ms)]
    pub request_timeout: Duration,
    /// Shortest wait for a replica before a read or a forward also asks the next one (a hedged
    /// request); above it the wait follows the replica's observed latency.
    #[arg(long, env = "DKV_HEDGE_AFTER", default_value = "20ms", value_parser = duration)]
    pub hedge_after: Duration,
    /// Largest clock offset from the other members at which a node still coordinates writes;
    /// replicas also refuse client writes whose version is further ahead of their clock.
    #[arg(long, env = "DKV_MAX_CLOCK_OFFSET", default_value = "500ms", value_parser = duration)]
    pub max_clock_offset: Duration,
    /// Largest key accepted.
    #[arg(long, env = "DKV_MAX_KEY_SIZE", default_value = "8KiB", value_parser = key_size)]
    pub max_key_size: usize,
    /// Largest value accepted.
    #[arg(long, env = "DKV_MAX_VALUE_SIZE", default_value = "16MiB", value_parser = positive_size)]
    pub max_value_size: usize,
    /// Copies of each key (N), capped at the number of nodes.
    #[arg(long, env = "DKV_REPLICATION", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub replication: u16,
    /// Replica acknowledgements a write waits for (W); a request may say `w=` [default: 2, or
    /// N when --replication is 1]. Over --replication is refused.
    #[arg(long, env = "DKV_WRITE_QUORUM", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub write_quorum: Option<u16>,
    /// Replica answers a read waits for (R); a request may say `r=` [default: 2, or N when
    /// --replication is 1]. Over --replication is refused.
    #[arg(long, env = "DKV_READ_QUORUM", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub read_quorum: Option<u16>,
    /// Most hints (writes kept for a replica that missed them) held at once.
    #[arg(long, env = "DKV_MAX_HINTS", default_value_t = 100_000)]
    pub max_hints: usize,
    /// Most bytes of hints held at once; past it the oldest hint is dropped.
    #[arg(long, env = "DKV_MAX_HINT_BYTES", default_value = "256MiB", value_parser = byte_size)]
    pub max_hint_bytes: usize,
    /// Oldest hint kept before it is dropped (anti-entropy repairs what it carried).
    #[arg(long, env = "DKV_HINT_MAX_AGE", default_value = "3h", value_parser = duration)]
    pub hint_max_age: Duration,
    /// How long a delete's tombstone is kept before it is purged everywhere.
    #[arg(long, env = "DKV_TOMBSTONE_GRACE", default_value = "24h", value_parser = duration)]
    pub tombstone_grace: Duration,
    /// Time between anti-entropy rounds (one also runs after every membership change); 0s turns
    /// anti-entropy off.
    #[arg(long, env = "DKV_ANTI_ENTROPY_INTERVAL", default_value = "60s", value_parser = duration)]
    pub anti_entropy_interval: Duration,
    /// Bytes per second a join copies and a rebalance hands off (e.g. 50MiB); 0: no limit.
    /// Leaves room for client requests while data moves. A leave is not paced (it must end
    /// within --leave-timeout).
    #[arg(long, env = "DKV_MOVE_RATE", default_value = "0", value_parser = move_rate)]
    pub move_rate: usize,
    /// Secret shared by the seed and the nodes; required on internal and admin endpoints.
    #[arg(long, env = "DKV_CLUSTER_SECRET", hide_env_values = true, value_parser = SecretParser)]
    pub cluster_secret: Option<String>,
    /// Virtual nodes (ring tokens) for this node when it first joins.
    #[arg(long, env = "DKV_VNODES", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub vnodes: u16,
    /// Keep the node's identity and data here, so it restarts as itself [default: in memory].
    #[arg(long, env = "DKV_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// When a write counts as stored, with --data-dir.
    #[arg(long, env = "DKV_FSYNC", value_enum, default_value = "periodic")]
    pub fsync: FsyncPolicy,
    /// Time between fsyncs with --fsync periodic (what a machine crash can lose at most).
    #[arg(long, env = "DKV_FSYNC_INTERVAL", default_value = "1s", value_parser = at_least_10ms)]
    pub fsync_interval: Duration,
    /// With --data-dir, make SIGTERM a leave (hand keys off, forget the identity) instead of a
    /// stop; for containers that are scaled down rather than restarted.
    #[arg(long, env = "DKV_LEAVE_ON_STOP", value_parser = clap::builder::BoolishValueParser::new())]
    pub leave_on_stop: bool,
    /// Start even though the data directory records that this node left the cluster (`dkv
    /// leave`): empty it and join as a new node. Without it such a node refuses to start.
    #[arg(long, env = "DKV_REJOIN", value_parser = clap::builder::BoolishValueParser::new())]
    pub rejoin: bool,
    /// Name of the cluster; a data directory or seed of another cluster is refused.
    #[arg(long, env = "DKV_CLUSTER_NAME", default_value = "dkv")]
    pub cluster_name: String,
    /// Also serve the Redis protocol (RESP2) on this address, e.g. 0.0.0.0:6379.
    #[arg(long, env = "DKV_RESP_LISTEN")]
    pub resp_listen: Option<SocketAddr>,
    /// Clients served at once on each listener (HTTP, RESP); more are refused with an error.
    /// Peers' connections are not counted.
    #[arg(long, env = "DKV_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// How long a request that has begun may take to arrive whole (HTTP headers and body, a
    /// RESP command); an idle HTTP/1.1 connection is closed after this long too.
    #[arg(long, env = "DKV_READ_TIMEOUT", default_value = "30s", value_parser = at_least_10ms)]
    pub read_timeout: Duration,
    /// How long a RESP connection may send nothing before it is closed; 0s: forever.
    #[arg(long, env = "DKV_IDLE_TIMEOUT", default_value = "300s", value_parser = idle_timeout)]
    pub idle_timeout: Duration,
    /// After each request (a client's or a peer's), keep polling the sockets without sleeping for this long, so
    /// the next request finds the node awake: lower latency and less CPU for the clients, at
    /// the price of a core kept busy while requests come. For nodes with cores of their own;
    /// 0s (the default): never. Example: 50us.
    #[arg(long, env = "DKV_BUSY_POLL", default_value = "0s", value_parser = busy_poll_window)]
    pub busy_poll: Duration,
    /// Largest unparsed input one RESP connection may hold (at least one largest value).
    #[arg(long, env = "DKV_MAX_QUERY_BUFFER", default_value = "64MiB", value_parser = byte_size)]
    pub max_query_buffer: usize,
    /// Key operations the RESP pipelines of all connections together run at once (each runs up
    /// to 128 of its own); a connection that finds the node at the bound runs one command at a
    /// time until it is under it again.
    #[arg(long, env = "DKV_MAX_PIPELINED", default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pipelined: u32,
    /// Largest total of client data held before it is stored (RESP input buffers, HTTP bodies
    /// being read); a client that would go over it is refused.
    #[arg(long, env = "DKV_MAX_CLIENT_MEMORY", default_value = "1GiB", value_parser = byte_size)]
    pub max_client_memory: usize,
    /// `KEYS` walks every key: refuse it on a cluster of more keys than this (use SCAN).
    #[arg(long, env = "DKV_KEYS_LIMIT", default_value_t = 10_000)]
    pub keys_limit: usize,
    /// Clients must give this password to read or write keys (RESP `AUTH`, HTTP Bearer or Basic)
    /// [default: no password]. Not the cluster secret.
    #[arg(long, env = "DKV_CLIENT_PASSWORD", hide_env_values = true)]
    pub client_password: Option<String>,
    /// Read --client-password from this file (its first line).
    #[arg(long, env = "DKV_CLIENT_PASSWORD_FILE", conflicts_with = "client_password")]
    pub client_password_file: Option<std::path::PathBuf>,
    /// A second password that may read but not write (needs --client-password).
    #[arg(long, env = "DKV_CLIENT_READONLY_PASSWORD", hide_env_values = true)]
    pub client_readonly_password: Option<String>,
    /// Read --client-readonly-password from this file (its first line).
    #[arg(long, env = "DKV_CLIENT_READONLY_PASSWORD_FILE", conflicts_with = "client_readonly_password")]
    pub client_readonly_password_file: Option<std::path::PathBuf>,
    /// This node's certificate chain (PEM): both ports then speak only TLS, to clients and
    /// peers; it is also the client certificate this node shows its peers. SIGHUP reloads it.
    #[arg(long, env = "DKV_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "DKV_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The cluster CA (PEM): peers must present certificates it signed, both ways. Required
    /// with --tls-cert; it is what tells a member from a client, so give the members a CA of
    /// their own, not the clients' (--tls-client-ca).
    #[arg(long, env = "DKV_TLS_PEER_CA", requires = "tls_cert")]
    pub tls_peer_ca: Option<std::path::PathBuf>,
    /// Clients must present a certificate this CA (PEM) signed [default: clients need none].
    #[arg(long, env = "DKV_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
}

impl NodeArgs {
    /// The seed's `host:port`, and whether it is called over TLS (`https://`).
    pub fn seed_address(&self) -> Result<(String, bool), String> {
        let (addr, tls) = match self.seed.split_once("://") {
            None => (self.seed.as_str(), false),
            Some(("http", addr)) => (addr, false),
            Some(("https", addr)) => (addr, true),
            Some((scheme, _)) => {
                return Err(format!("--seed {}: the scheme is http:// or https://, not {scheme}://", self.seed))
            }
        };
        let addr = addr.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            return Err(format!("--seed {}: give the seed as host:port or https://host:port", self.seed));
        }
        host_port(addr).map_err(|e| format!("--seed {e}"))?;
        if tls && self.tls_cert.is_none() {
            return Err(format!(
                "--seed {}: a seed over TLS needs --tls-cert, --tls-key and --tls-peer-ca: the node shows the seed its \
                 certificate, and checks the seed's against the cluster CA",
                self.seed
            ));
        }
        Ok((addr.to_string(), tls))
    }

    /// The TLS files, when the node speaks TLS.
    pub fn tls_files(&self) -> Result<Option<dkv_node::config::TlsFiles>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        // Not --tls-client-ca in its place: every client certificate that CA signed would then
        // pass for a member's (until 2026-12-06 it did, when --tls-peer-ca was left out).
        let peer_ca = self.tls_peer_ca.clone().ok_or(
            "--tls-cert needs --tls-peer-ca: the CA that signs the members' certificates, which peers must present",
        )?;
        Ok(Some(dkv_node::config::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            peer_ca,
            client_ca: self.tls_client_ca.clone(),
        }))
    }
}

impl NodeArgs {
    /// Flags that must agree with each other, checked before the node starts.
    pub fn check(&self) -> Result<(), String> {
        self.check_lifetimes()?;
        let needs_dir = [
            (self.fsync == FsyncPolicy::Always, "--fsync always: a write is fsynced to the node's data directory"),
            (self.rejoin, "--rejoin: it empties a data directory that records a leave"),
            (self.leave_on_stop, "--leave-on-stop: without a data directory SIGTERM is a leave already"),
        ];
        if let (None, Some((_, why))) = (&self.data_dir, needs_dir.iter().find(|(given, _)| *given)) {
            return Err(format!("{why}; give --data-dir (without it the node keeps its keys in memory only)"));
        }
        let n = self.replication;
        for (flag, q) in [("--write-quorum", self.write_quorum), ("--read-quorum", self.read_quorum)] {
            if let Some(q) = q.filter(|&q| q > n) {
                return Err(format!("{flag} {q} is over --replication {n}: a key has {n} replicas to answer"));
            }
        }
        let largest = self.max_value_size.saturating_add(self.max_key_size);
        for (flag, bound) in
            [("--max-client-memory", self.max_client_memory), ("--max-query-buffer", self.max_query_buffer)]
        {
            if bound < largest {
                return Err(format!(
                    "{flag} {bound} is under --max-value-size {} with --max-key-size {}: a write of the largest \
                     value would be refused every time; give a larger {flag} or a smaller --max-value-size",
                    self.max_value_size, self.max_key_size
                ));
            }
        }
        if let Some(advertise) = &self.advertise {
            host_port(advertise).map_err(|e| format!("--advertise {e}"))?;
        }
        Ok(())
    }

    /// W and R: as given (no more than N, [`NodeArgs::check`]), or 2, or N when N is 1.
    pub fn quorums(&self) -> (usize, usize) {
        let default = 2.min(self.replication);
        (self.write_quorum.unwrap_or(default).into(), self.read_quorum.unwrap_or(default).into())
    }

    /// Settings that are allowed but may not do what was meant: one line each, logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut said = Vec::new();
        let (w, r) = self.quorums();
        let n = usize::from(self.replication);
        if r + w <= n {
            said.push(format!(
                "--read-quorum {r} + --write-quorum {w} is not more than --replication {n}: a read may miss a write \
                 that was acknowledged (no replica it asks need hold it); give R + W > N where reads must see \
                 every acknowledged write"
            ));
        }
        // Anti-entropy is the last repair of a replica that missed a delete whose hint was not
        // delivered (dropped by age or by --max-hints), and tombstones are purged by time alone
        // without it: the old value comes back (found by a hunt, 2026-12-07).
        if self.anti_entropy_interval.is_zero() {
            said.push(
                "--anti-entropy-interval 0s turns anti-entropy off: a replica that missed a write or a delete whose \
                 hint was dropped is never repaired, so a deleted key can come back once its tombstone is purged, and \
                 keys stay short of N copies after a node is lost; turn it off only for tests"
                    .to_string(),
            );
        }
        let fsync_set = self.fsync != FsyncPolicy::Periodic || self.fsync_interval != Duration::from_secs(1);
        if self.data_dir.is_none() && fsync_set {
            said.push(
                "--fsync and --fsync-interval do nothing without --data-dir: this node keeps its keys in memory only"
                    .to_string(),
            );
        }
        said
    }

    /// Lifetimes that must nest: a hint outliving the tombstone grace could be delivered after the
    /// replica purged the delete it should lose to, and bring the deleted value back.
    fn check_lifetimes(&self) -> Result<(), String> {
        if self.max_hints > 0 && self.hint_max_age >= self.tombstone_grace {
            return Err(format!(
                "--hint-max-age {:?} is not shorter than --tombstone-grace {:?}: a hint delivered after its key's \
                 tombstone was purged would bring a deleted value back; give a shorter --hint-max-age (or \
                 --max-hints 0) or a longer --tombstone-grace",
                self.hint_max_age, self.tombstone_grace
            ));
        }
        Ok(())
    }

    /// The client passwords, read from their files where given, checked for what would lock
    /// clients out or mean nothing.
    pub fn client_auth(&self) -> Result<dkv_node::config::ClientAuth, String> {
        let read = |value: &Option<String>, file: &Option<std::path::PathBuf>, flag: &str| match (value, file) {
            (Some(v), _) => Ok(Some(v.clone())),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| Some(s.lines().next().unwrap_or("").to_string()))
                .map_err(|e| format!("{flag}-file {}: {e}", path.display())),
            (None, None) => Ok(None),
        };
        let full = read(&self.client_password, &self.client_password_file, "--client-password")?;
        let readonly =
            read(&self.client_readonly_password, &self.client_readonly_password_file, "--client-readonly-password")?;
        if full.as_deref() == Some("") || readonly.as_deref() == Some("") {
            return Err("a client password is empty: give a non-empty one, or none".into());
        }
        if readonly.is_some() && full.is_none() {
            return Err(
                "--client-readonly-password needs --client-password: without it clients need no password at all".into(),
            );
        }
        if readonly.is_some() && readonly == full {
            return Err("--client-readonly-password is the same as --client-password: give it a different one".into());
        }
        if full.is_some() && self.cluster_secret.is_none() {
            return Err("--client-password needs --cluster-secret: without it anyone who reaches the node's port can \
                 speak the node-to-node protocol or call /admin/*, with no password; give every member the same \
                 --cluster-secret"
                .into());
        }
        use dkv_node::config::{ClientAuth, Password};
        Ok(ClientAuth { password: full.map(Password::new), readonly_password: readonly.map(Password::new) })
    }
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, env = "DKV_NODES", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub nodes: u16,
    /// Port of the seed on 127.0.0.1.
    #[arg(long, env = "DKV_SEED_PORT", default_value_t = 9000, value_parser = clap::value_parser!(u16).range(1..))]
    pub seed_port: u16,
    /// Node i (from 0) listens on 127.0.0.1:BASE_PORT+i.
    #[arg(long, env = "DKV_BASE_PORT", default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1..))]
    pub base_port: u16,
    /// Passed to every node.
    #[arg(long, env = "DKV_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = at_least_10ms)]
    pub heartbeat_interval: Duration,
    /// Passed to the seed.
    #[arg(long, env = "DKV_NODE_TTL", default_value = "15s", value_parser = node_ttl)]
    pub node_ttl: Duration,
    /// Keep each node's data in DIR/node-I and the seed's record of the membership in DIR/seed,
    /// so the cluster comes back with its data and members next time.
    #[arg(long, env = "DKV_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Passed to every node; needs --data-dir [default: periodic].
    #[arg(long, env = "DKV_FSYNC", value_enum, requires = "data_dir")]
    pub fsync: Option<FsyncPolicy>,
    /// Node i (from 0) also serves the Redis protocol on 127.0.0.1:RESP_BASE_PORT+i.
    #[arg(long, env = "DKV_RESP_BASE_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub resp_base_port: Option<u16>,
    /// Where the seed and the nodes write their logs (seed.log, node-I.log, replaced at each
    /// start) [default: DATA_DIR/logs with --data-dir, else $TMPDIR/dkv-up-SEED_PORT].
    #[arg(long, env = "DKV_LOG_DIR", conflicts_with = "verbose")]
    pub log_dir: Option<std::path::PathBuf>,
    /// Show the seed's and the nodes' logs on this terminal instead of writing them to files.
    #[arg(long, short)]
    pub verbose: bool,
    /// TLS everywhere (clients, between nodes, to the seed) with the certificates in DIR, as
    /// scripts/make-certs.sh writes them: ca.pem, seed.pem, seed.key, node.pem, node.key.
    #[arg(long, env = "DKV_UP_TLS", value_name = "DIR")]
    pub tls: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Resp,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The node to load (its HTTP address; with --all-nodes, where to find the members).
    #[arg(long, env = "DKV_NODE", default_value = "http://127.0.0.1:8080", value_parser = node_url)]
    pub node: String,
    /// Spread the connections over every member of the cluster.
    #[arg(long)]
    pub all_nodes: bool,
    /// HTTP (`/put`, `/get`) or RESP (`SET`, `GET`).
    #[arg(long, value_enum, default_value = "http")]
    pub protocol: Protocol,
    /// The RESP port of --node, with --protocol resp [default: the one its /stats reports; other
    /// members' always come from their /stats].
    #[arg(long)]
    pub resp_port: Option<u16>,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// How long to run.
    #[arg(long, short = 'd', default_value = "10s", value_parser = at_least_10ms)]
    pub duration: Duration,
    /// Stop after this many requests instead (if it comes before --duration).
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Keys are PREFIX0..PREFIX{KEYS-1} (see --prefix), picked uniformly.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// What every key the bench reads and writes starts with, so its keys stay apart from the
    /// application's (and `dkv scan --prefix dkv-bench:` finds them).
    #[arg(long, default_value = "dkv-bench:key")]
    pub prefix: String,
    /// Bytes per value written (e.g. 100, 4KiB).
    #[arg(long, default_value = "100", value_parser = byte_size)]
    pub value_size: usize,
    /// Share of reads, 0 to 1 (the rest are writes).
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Write key0..key{KEYS-1} once each, in order, then stop (to fill a cluster); implies
    /// --read-ratio 0.
    #[arg(long)]
    pub load: bool,
    /// The nodes' client password, sent with every HTTP request or once per RESP connection.
    #[arg(long, env = "DKV_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    // With an https:// --node, both ports are loaded over TLS.
    #[command(flatten)]
    pub tls: ClientTls,
}

#[derive(Args, Debug)]
pub struct LeaveArgs {
    /// The node that leaves.
    #[arg(long, env = "DKV_NODE", default_value = "http://127.0.0.1:8080", value_parser = node_url)]
    pub node: String,
    /// The cluster's secret, if it has one.
    #[arg(long, env = "DKV_CLUSTER_SECRET", hide_env_values = true, value_parser = SecretParser)]
    pub cluster_secret: Option<String>,
    #[command(flatten)]
    pub tls: ClientTls,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The members to remove, each by its id or its address (host:port), as `dkv status` and
    /// the seed's `GET /nodes` list them.
    #[arg(required = true, value_name = "ID|ADDR", value_parser = member)]
    pub members: Vec<Member>,
    /// The seed: host:port, or https://host:port for a seed that speaks TLS (give --cacert, and
    /// a member's certificate with --client-cert and --client-key).
    #[arg(long, env = "DKV_SEED", default_value = "127.0.0.1:9000", value_parser = seed_url)]
    pub seed: String,
    /// Remove a member even if the seed heard from it within half its TTL.
    #[arg(long)]
    pub force: bool,
    /// The cluster's secret, if it has one.
    #[arg(long, env = "DKV_CLUSTER_SECRET", hide_env_values = true, value_parser = SecretParser)]
    pub cluster_secret: Option<String>,
    #[command(flatten)]
    pub tls: ClientTls,
}

/// A member named on the command line: by its id, or by its address (which has a `:`, and an
/// id never does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    Id(dkv_membership::NodeId),
    Addr(String),
}

fn member(s: &str) -> Result<Member, String> {
    if s.contains(':') {
        return Ok(Member::Addr(s.to_string()));
    }
    s.parse()
        .map(Member::Id)
        .map_err(|_| format!("{s:?} is neither a member id (up to 16 hex digits) nor an address (host:port)"))
}

/// How the client commands talk to `https://` nodes.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientTls {
    /// The CA certificate (PEM) that signed the nodes' certificates, for https:// nodes.
    #[arg(long, env = "DKV_CACERT")]
    pub cacert: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to show nodes started with --tls-client-ca.
    #[arg(long, env = "DKV_CLIENT_CERT", requires_all = ["client_key", "cacert"])]
    pub client_cert: Option<std::path::PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, env = "DKV_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Any node of the cluster.
    #[arg(long, env = "DKV_NODE", default_value = "http://127.0.0.1:8080", value_parser = node_url)]
    pub node: String,
    /// The node's client password (its --client-password or --client-readonly-password).
    #[arg(long, env = "DKV_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The largest value to send or read (the nodes' --max-value-size, from the same variable):
    /// `dkv put KEY -` reads standard input up to it, and answers are read up to it.
    #[arg(long, env = "DKV_MAX_VALUE_SIZE", default_value = "16MiB", value_parser = positive_size)]
    pub max_value_size: usize,
    #[command(flatten)]
    pub tls: ClientTls,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(flatten)]
    pub key: KeyName,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A key on the command line: as typed, or with `--escaped` as `dkv scan` prints keys, so a key
/// that is not UTF-8 can be named (it could not: found by trying, 2026-12-06).
#[derive(Args, Debug)]
pub struct KeyName {
    /// The key.
    pub key: String,
    /// KEY is written as dkv scan prints keys: \xNN for a byte, \\ for a backslash, \n, \r, \t.
    #[arg(long)]
    pub escaped: bool,
}

impl KeyName {
    /// The key's bytes, or why `--escaped` could not read it.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match self.escaped {
            true => crate::keys::unescape(&self.key),
            false => Ok(self.key.clone().into_bytes()),
        }
    }
}

/// `r=` / `w=`: a number of replicas from 1, or `one`, `quorum`, `all` (checked here so a typo
/// is an error before anything is sent).
pub fn level(s: &str) -> Result<String, String> {
    match s {
        "one" | "quorum" | "all" => Ok(s.to_string()),
        n if n.parse::<u16>().is_ok_and(|n| n >= 1) => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not a level: give a number of replicas from 1, or one, quorum or all")),
    }
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub key: KeyName,
    /// Replica answers the read waits for: a number, one, quorum or all [default: the node's
    /// --read-quorum].
    #[arg(long = "r", value_name = "R", value_parser = level)]
    pub r: Option<String>,
    /// Print {"key": …, "found": …, "value": …} instead of the bare value (key and value as
    /// {"utf8": …} or, for other bytes, {"percent": …}).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct DelArgs {
    #[command(flatten)]
    pub key: KeyName,
    /// Replica acknowledgements the delete waits for: a number, one, quorum or all [default:
    /// the node's --write-quorum].
    #[arg(long = "w", value_name = "W", value_parser = level)]
    pub w: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print the members and totals as JSON (with --watch, one document per line).
    #[arg(long)]
    pub json: bool,
    /// Members listed, the busiest first (the others are counted by state) [default: 30 in the
    /// table; every member with --json].
    #[arg(long, value_parser = at_least_one)]
    pub limit: Option<usize>,
    /// List every member.
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
    /// Draw the table again every --interval until Ctrl-C (or --count times).
    #[arg(long)]
    pub watch: bool,
    /// Time between two tables with --watch.
    #[arg(long, default_value = "2s", value_parser = at_least_100ms, requires = "watch")]
    pub interval: Duration,
    /// Stop after this many tables with --watch.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), requires = "watch")]
    pub count: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Only keys that start with this.
    #[arg(long)]
    pub prefix: Option<String>,
    /// PREFIX is written as dkv scan prints keys: \xNN for a byte, \\ for a backslash, \n, \r, \t
    /// (--match keeps its own escapes).
    #[arg(long, requires = "prefix")]
    pub escaped: bool,
    /// Only keys that match this Redis glob pattern (*, ?, [abc], [^a], [a-z], \ to escape).
    // The text is also `--help`'s, where brackets show as they are: `[abc]` is not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long = "match", value_name = "GLOB")]
    pub pattern: Option<String>,
    /// Entries each page looks at (1 to 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub count: u16,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct WhereArgs {
    #[command(flatten)]
    pub key: KeyName,
    /// Print the replicas and their copies as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    pub key: KeyName,
    /// The value; `-` reads it from standard input.
    pub value: String,
    /// Expire the key this long after the write, e.g. 10s, 10m or 1h 30m [default: never].
    #[arg(long, value_parser = key_ttl)]
    pub ttl: Option<Duration>,
    /// Replica acknowledgements the write waits for: a number, one, quorum or all [default:
    /// the node's --write-quorum].
    #[arg(long = "w", value_name = "W", value_parser = level)]
    pub w: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    #[arg(long, env = "DKV_HEALTH_URL", default_value = "http://127.0.0.1:8080/health")]
    pub url: String,
    /// Also pass for a node that is leaving (its /health answers 503 with status "leaving"): an
    /// orchestrator that replaces unhealthy tasks would otherwise kill a leave half way.
    #[arg(long, env = "DKV_HEALTH_LEAVING_OK", value_parser = clap::builder::BoolishValueParser::new())]
    pub leaving_ok: bool,
    #[command(flatten)]
    pub tls: ClientTls,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_ttl_is_whole_milliseconds() {
        assert_eq!(key_ttl("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(key_ttl("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(key_ttl("500us").unwrap_err().contains("at least 1ms"));
        assert!(key_ttl("0s").is_err());
        assert!(key_ttl("1500us").is_err(), "not whole milliseconds");
    }

    #[test]
    fn a_cluster_secret_is_printable_ascii() {
        assert_eq!(cluster_secret("s3cret pass~"), Ok("s3cret pass~".to_string()));
        assert!(cluster_secret("s3cret\n").unwrap_err().contains("trailing newline"));
        assert!(cluster_secret("sécret").unwrap_err().contains("printable ASCII"));
        assert!(cluster_secret("").unwrap_err().contains("empty"));
        let parsed = Cli::try_parse_from(["dkv", "seed", "--cluster-secret", "a\tb"]);
        assert!(parsed.is_err(), "refused at start");
    }

    #[test]
    fn sizes_and_durations_parse_or_explain() {
        assert_eq!(byte_size("8KiB"), Ok(8192));
        assert_eq!(byte_size("16MiB"), Ok(16 << 20));
        assert_eq!(byte_size("100"), Ok(100));
        for same in ["8k", "8K", "8kb", "8kB", "8KB", "8KiB", "8kib"] {
            assert_eq!(byte_size(same), Ok(8192), "{same}");
        }
        assert_eq!(byte_size("1gb"), Ok(1 << 30));
        assert!(byte_size("8XB").unwrap_err().contains("unit"));
        assert!(byte_size("big").is_err());
        assert_eq!(key_size("32KiB"), Ok(32 << 10));
        assert!(key_size("33KiB").unwrap_err().contains("largest key"));
        assert_eq!(duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert!(duration("5").is_err());
        assert_eq!(busy_poll_window("50us"), Ok(Duration::from_micros(50)));
        assert_eq!(busy_poll_window("1s"), Ok(Duration::from_secs(1)));
        assert!(busy_poll_window("2s").unwrap_err().contains("longer than 1s"));
        assert!(busy_poll_window("fast").is_err());
        assert_eq!(move_rate("50MiB/s"), Ok(50 << 20));
        assert_eq!(move_rate("50mib/S"), Ok(50 << 20));
        assert_eq!(move_rate("10MB"), Ok(10 << 20));
        assert!(move_rate("10Mbit/s").unwrap_err().contains("K (KB, KiB)"));
        assert_eq!(idle_timeout("0s"), Ok(Duration::ZERO));
        assert_eq!(idle_timeout("300s"), Ok(Duration::from_secs(300)));
        assert!(idle_timeout("300ms").unwrap_err().contains("shorter than a second"));
    }

    #[test]
    fn levels_are_checked_before_anything_is_sent() {
        for ok in ["one", "quorum", "all", "1", "3"] {
            assert_eq!(level(ok).as_deref(), Ok(ok));
        }
        for bad in ["0", "-1", "most", "", "ALL"] {
            assert!(level(bad).unwrap_err().contains("not a level"), "{bad}");
        }
        let cli = Cli::try_parse_from(["dkv", "get", "k", "--r", "all", "--json"]).unwrap();
        assert!(matches!(cli.command, Command::Get(GetArgs { r: Some(ref r), json: true, .. }) if r == "all"));
        let cli = Cli::try_parse_from(["dkv", "put", "k", "v", "--w", "1"]).unwrap();
        assert!(matches!(cli.command, Command::Put(PutArgs { w: Some(ref w), .. }) if w == "1"));
        assert!(Cli::try_parse_from(["dkv", "del", "k", "--w", "some"]).is_err());
        assert!(Cli::try_parse_from(["dkv", "scan", "--count", "0"]).is_err());
    }

    /// Found by trying flags one by one (2026-12-06): each of these started a node that then
    /// spun, refused every request, lost what it was told to keep, or dialled nowhere forever.
    #[test]
    fn flags_that_would_start_a_broken_node_are_refused() {
        let node = |extra: &[&str]| {
            let cli = Cli::try_parse_from([&["dkv", "node"], extra].concat()).map_err(|e| e.to_string())?;
            let Command::Node(a) = cli.command else { unreachable!("a node") };
            a.check().and_then(|()| a.seed_address().map(drop))
        };
        assert_eq!(node(&[]), Ok(()));
        for (flags, says) in [
            (&["--heartbeat-interval", "0s"][..], "shorter than 10ms"),
            (&["--request-timeout", "1ns"], "shorter than 10ms"),
            (&["--leave-timeout", "0s"], "shorter than 10ms"),
            (&["--read-timeout", "0s"], "shorter than 10ms"),
            (&["--max-key-size", "0"], "at least 1 byte"),
            (&["--max-value-size", "0"], "at least 1 byte"),
            (&["--move-rate", "1"], "at least 64KiB"),
            (&["--fsync", "always"], "give --data-dir"),
            (&["--rejoin"], "give --data-dir"),
            (&["--write-quorum", "5"], "over --replication 3"),
            (&["--replication", "1", "--read-quorum", "2"], "over --replication 1"),
            (&["--max-client-memory", "1MiB"], "--max-client-memory"),
            (&["--max-value-size", "2GiB"], "--max-client-memory"),
            (&["--max-query-buffer", "1MiB"], "--max-query-buffer"),
            (&["--seed", "127.0.0.1"], "no port"),
            (&["--seed", "127.0.0.1:99999"], "1 to 65535"),
            (&["--seed", " :9000"], "give the host"),
            (&["--advertise", "http://127.0.0.1:8080"], "give the host"),
        ] {
            let refused = node(flags).expect_err(&format!("{flags:?} refused"));
            assert!(refused.contains(says), "{flags:?}: {refused}");
        }
        assert_eq!(node(&["--move-rate", "0"]), Ok(()), "no limit");
        let warnings = |extra: &[&str]| {
            let cli = Cli::try_parse_from([&["dkv", "node"], extra].concat()).expect("parsed");
            let Command::Node(a) = cli.command else { unreachable!("a node") };
            a.warnings().join("\n")
        };
        assert_eq!(warnings(&[]), "", "the defaults warn of nothing");
        assert!(warnings(&["--anti-entropy-interval", "0s"]).contains("a deleted key can come back"));
        let said = warnings(&["--anti-entropy-interval", "0s"]);
        assert!(!said.contains("  "), "one line of text: {said}");
        assert_eq!(node(&["--replication", "1"]), Ok(()), "the default quorums follow N down");
        let tls = |extra: &[&str]| {
            let base = ["dkv", "node", "--tls-cert", "c.pem", "--tls-key", "k.pem"];
            let cli = Cli::try_parse_from([&base[..], extra].concat()).expect("parsed");
            let Command::Node(a) = cli.command else { unreachable!("a node") };
            a.tls_files().map(|f| f.map(|f| f.peer_ca))
        };
        let refused = tls(&["--tls-client-ca", "clients.pem"]).expect_err("no peer CA");
        assert!(refused.contains("needs --tls-peer-ca"), "the clients' CA is not the members': {refused}");
        assert_eq!(tls(&["--tls-peer-ca", "ca.pem"]), Ok(Some("ca.pem".into())));
        assert_eq!(node(&["--replication", "1", "--write-quorum", "1", "--read-quorum", "1"]), Ok(()));
        assert!(Cli::try_parse_from(["dkv", "seed", "--node-ttl", "0s"]).is_err());
        for (url, says) in [
            ("ftp://127.0.0.1:1", "not ftp://"),
            ("http://127.0.0.1:99999", "1 to 65535"),
            ("http://127.0.0.1:0/", "1 to 65535"),
            ("127.0.0.1", "no port"),
            ("http://:8080", "host"),
            ("", "no port"),
            ("http://127.0.0.1:8080/delete?key=important#", "no query or fragment (\"?key=important#\")"),
            ("http://127.0.0.1:8080/get?key=x", "no query or fragment"),
            ("http://127.0.0.1:8080#", "no query or fragment"),
            ("http://127.0.0.1:8080?x", "no query or fragment"),
            ("127.0.0.1:8080/put?key=a", "no query or fragment"),
            ("http://u:p@127.0.0.1:8080", "a user or password"),
        ] {
            assert!(node_url(url).is_err_and(|e| e.contains(says)), "{url:?}: {:?}", node_url(url));
        }
        for url in [
            "http://127.0.0.1:8080",
            "https://node-1",
            "http://[::1]:8080/",
            "http://[::1]",
            "10.0.0.5:8080",
            "h:1/",
            "http://h:1/dkv",
        ] {
            assert_eq!(node_url(url), Ok(url.to_string()));
        }
        assert!(Cli::try_parse_from(["dkv", "get", "k", "--node", "ftp://h:1"]).is_err());
        assert!(seed_url("ftp://h:1").is_err_and(|e| e.contains("a seed speaks")));
        assert!(seed_url("seed").is_err_and(|e| e.contains("no port")), "a bare host is not port 80");
        assert!(Cli::try_parse_from(["dkv", "remove", "1", "--seed", "https://seed:9000"]).is_ok());
        assert!(Cli::try_parse_from(["dkv", "up", "--seed-port", "0"]).is_err());
        assert!(cluster_secret(" s3cret ").unwrap_err().contains("space"));
        assert!(key_ttl("300000y").unwrap_err().contains("longest TTL"));
        assert!(key_ttl("99999999d 23h").is_ok() && key_ttl("100000000d").is_err(), "as far as a node takes");
        let param = |ms: u64| crate::client::ttl_param(Duration::from_millis(ms));
        assert_eq!(
            (param(1500), param(5_400_000), param(86_400_001)),
            ("1s+500ms".into(), "1h+30m".into(), "1d+1ms".into())
        );
        assert_eq!(param(MAX_TTL_DAYS * 86_400_000), "99999999d");
        assert_eq!(key_ttl("1000y").map(|d| d.as_secs() / 31_557_600), Ok(1000));
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
