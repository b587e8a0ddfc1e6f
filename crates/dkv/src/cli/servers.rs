//! The flags of the long-running commands: `dkv seed`, `dkv node` and `dkv up`, with the checks
//! that refuse a combination that would start a broken node.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::parse::{
    at_least_10ms, busy_poll_window, byte_size, duration, host_port, idle_timeout, key_size, move_rate, node_ttl,
    positive_size, SecretParser,
};

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
            calls_peers: false,
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
            calls_peers: true,
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
            (None, Some(path)) => {
                password_file(path).map(Some).map_err(|e| format!("{flag}-file {}: {e}", path.display()))
            }
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
        // A member's secret is not a client's password: a client that has it could speak the
        // node-to-node protocol and call /admin/* (taken until 2026-12-07: found by a hunt).
        if self.cluster_secret.is_some() && [&full, &readonly].into_iter().any(|p| *p == self.cluster_secret) {
            return Err(
                "a client password is the same as --cluster-secret, which lets whoever has it act as a member \
                 (the node-to-node protocol, /admin/*): give clients a password of their own"
                    .into(),
            );
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

/// The password in the first line of a file: its line end (`\n` or `\r\n`) and a UTF-8 byte
/// order mark, which editors on Windows write, are not part of it (with the mark, the password
/// clients were given got 401: found by a hunt, 2026-12-07). Read up to 64 KiB, so a path on a
/// device that never ends fails rather than fills memory.
fn password_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    file.take(64 << 10).read_to_string(&mut text).map_err(|e| e.to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(text.lines().next().unwrap_or("").to_string())
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
    /// Passed to every node; always needs --data-dir [default: periodic].
    #[arg(long, env = "DKV_FSYNC", value_enum)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_gives_its_first_line_without_a_byte_order_mark() {
        let path = std::env::temp_dir().join(format!("dkv-pw-file-{}", std::process::id()));
        for (text, want) in [("pw\n", "pw"), ("pw\r\nmore\n", "pw"), ("\u{feff}pw\r\n", "pw"), ("", "")] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(password_file(&path).as_deref(), Ok(want), "{text:?}");
        }
        assert!(password_file(std::path::Path::new("/dev/zero")).is_ok_and(|p| p.len() <= 64 << 10), "bounded");
        std::fs::remove_file(&path).unwrap();
    }
}
