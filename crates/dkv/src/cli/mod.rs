//! Command line: every flag also reads a `DKV_*` environment variable, durations are written like
//! `200ms`, `5s`, `1m`, sizes like `8KiB`, `16MiB` or a plain number of bytes.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod parse;
mod servers;

use parse::{at_least_100ms, at_least_10ms, at_least_one, byte_size, positive_size, seed_url, SecretParser};
pub use parse::{key_ttl, node_url, MAX_TTL_DAYS};
pub use servers::{FsyncPolicy, NodeArgs, SeedArgs, UpArgs};

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
    use super::parse::*;
    use super::*;

    #[test]
    fn a_key_ttl_is_read_as_a_node_reads_ttl() {
        assert_eq!(key_ttl("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(key_ttl("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(key_ttl("1d2h"), Ok(Duration::from_secs(93_600)));
        assert!(key_ttl("0s").unwrap_err().contains("no zero parts"));
        assert!(key_ttl("500us").unwrap_err().contains("units are ms, s, m, h and d"));
        // Forms humantime took and a node refuses (found by a hunt, 2026-12-07).
        for other in ["1.5s", "1min", "10sec", "1y", "1month", "10"] {
            assert!(key_ttl(other).unwrap_err().contains("(units ms, s, m, h, d)"), "{other}");
        }
        // What `dkv ttl` prints reads back.
        let shown = crate::client::ttl_text(90_061_001, " ");
        assert_eq!(shown, "1d 1h 1m 1s 1ms");
        assert_eq!(key_ttl(&shown), Ok(Duration::from_millis(90_061_001)));
        assert_eq!(crate::client::ttl_text(0, " "), "0ms");
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
        assert!(byte_size("1.5KiB").unwrap_err().contains("a size is a whole number"));
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
        // As far as a node takes: parts of at most 8 digits, 64 characters in all.
        assert!(key_ttl("99999999d 48h").is_ok() && key_ttl("100000000d").is_err());
        assert!(key_ttl("99999999d 99999999d 99999999d").is_ok());
        let param = |ms: u64| crate::client::ttl_param(Duration::from_millis(ms));
        assert_eq!(
            (param(1500), param(5_400_000), param(86_400_001)),
            ("1s+500ms".into(), "1h+30m".into(), "1d+1ms".into())
        );
        assert_eq!(param(MAX_TTL_DAYS * 86_400_000), "99999999d");
        assert_eq!(param((MAX_TTL_DAYS + 2) * 86_400_000 + 1), "99999999d+2d+1ms", "days in parts a node reads");
        let shown = crate::client::ttl_text(3 * MAX_TTL_DAYS * 86_400_000 + 5, " ");
        assert_eq!(key_ttl(&shown).map(|d| d.as_millis()), Ok(3 * u128::from(MAX_TTL_DAYS) * 86_400_000 + 5));
        assert_eq!(key_ttl("365250d").map(|d| d.as_secs() / 31_557_600), Ok(1000));
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
