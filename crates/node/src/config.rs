//! Node configuration: a typed struct filled by the binary from flags and `DKV_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::front::auth::{ClientAuth, Password};
pub use crate::front::limits::ClientLimits;
pub use crate::life::durability::Fsync;
pub use crate::transport::tls::{Tls, TlsFiles};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// `host:port` other nodes use to reach this one. `None`: this host's address toward the seed
    /// plus the listen port (what a container needs: its own address on the cluster network).
    pub advertise: Option<String>,
    /// `host:port` of the seed.
    pub seed: String,
    /// Whether the seed is called over TLS, with `tls`'s certificates (`--seed https://`).
    pub seed_tls: bool,
    /// How often to heartbeat the seed (and learn the membership).
    pub heartbeat_interval: Duration,
    /// Longest a graceful leave may take before the node exits anyway, so stopping every node at
    /// once never hangs.
    pub leave_timeout: Duration,
    /// Longest a join may go without pulling anything before the node gives up, leaves the
    /// membership and exits with an error. While a node joins, every write to its future ranges
    /// needs its acknowledgement too, so a joiner its peers cannot reach (a firewall, another
    /// cluster secret) would otherwise fail those writes for as long as it kept trying.
    pub join_timeout: Duration,
    /// Timeout of one request to a peer or the seed.
    pub request_timeout: Duration,
    /// Shortest wait for a replica before a read or forward asks another one too; the wait
    /// follows each peer's observed latency above it (`replication/latency.rs`).
    pub hedge_after: Duration,
    /// Largest clock offset from the cluster at which this node still coordinates writes, and
    /// how far ahead of a replica's clock a client write's version may be (see `life/clock.rs`).
    pub max_clock_offset: Duration,
    /// Longest key accepted, in bytes.
    pub max_key_bytes: usize,
    /// Longest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Copies of each key (N), capped at the number of nodes.
    pub replicas: usize,
    /// Replica acknowledgements a write waits for (W), unless the request says `w=`.
    pub write_quorum: usize,
    /// Replica answers a read waits for (R), unless the request says `r=`.
    pub read_quorum: usize,
    /// Most hints (writes kept for a replica that missed them) held at once.
    pub max_hints: usize,
    /// Most bytes of hints (keys and values) held at once; past it the oldest hint is dropped.
    pub max_hint_bytes: usize,
    /// Oldest hint kept; a replica away longer is refilled by anti-entropy instead.
    pub hint_max_age: Duration,
    /// How long a delete's tombstone is kept before it is purged; longer than any hint, repair or
    /// anti-entropy window, so no replica can bring the deleted value back.
    pub tombstone_grace: Duration,
    /// Time between anti-entropy rounds (one also runs after every membership change); zero turns
    /// anti-entropy off, for tests that need a replica to stay stale.
    pub anti_entropy_interval: Duration,
    /// Bytes per second this node copies in a join or hands off in a rebalance (0: as fast as it
    /// can): so moving data leaves room for client requests. A leave is not paced: it must end
    /// within `leave_timeout`.
    pub move_rate: u64,
    /// When set, presented in the handshake of every node-to-node connection and sent to the
    /// seed, and required from peers and on `/admin/*` (DESIGN §9). Clients of the public API
    /// never need it.
    pub cluster_secret: Option<String>,
    /// Virtual nodes asked for at first registration.
    pub vnodes: usize,
    /// Where the node keeps its identity and data; `None`: in memory, a new node at every start.
    pub data_dir: Option<PathBuf>,
    /// A data directory records a leave (`dkv leave`): without this the node refuses to start
    /// (an orchestrator restarting a node that left must not bring it back as a new member);
    /// with it, the node empties the directory and joins as a new, empty node.
    pub rejoin: bool,
    /// When a write with a data directory counts as stored (see `durability.rs`).
    pub fsync: Fsync,
    /// Name of the cluster; a data directory or seed of another cluster is refused.
    pub cluster_name: String,
    /// Address of the Redis-protocol listener, if any.
    pub resp_listen: Option<SocketAddr>,
    /// What clients may hold: connections, buffered bytes, time (see `front/limits.rs`).
    pub limits: ClientLimits,
    /// `KEYS` walks every key: it is refused on a cluster of more keys than this
    /// (`--keys-limit`; see `front/resp/scan.rs`).
    pub keys_limit: usize,
    /// How long the event loop keeps polling without sleeping after a request
    /// (`--busy-poll`; zero, the default: never; see `life/busy_poll.rs`).
    pub busy_poll: Duration,
    /// Client passwords (`--client-password`, `--client-readonly-password`); none by default, and
    /// never the cluster secret (see `front/auth.rs`).
    pub client_auth: ClientAuth,
    /// The node's certificates when its ports speak TLS (`--tls-cert` …), loaded by the binary,
    /// which reloads them on SIGHUP (see `transport/tls.rs`); `None`: plain TCP.
    pub tls: Option<Arc<Tls>>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            advertise: None,
            seed: "127.0.0.1:9000".into(),
            seed_tls: false,
            heartbeat_interval: Duration::from_secs(5),
            leave_timeout: Duration::from_secs(30),
            join_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            hedge_after: Duration::from_millis(20),
            max_clock_offset: Duration::from_millis(500),
            max_key_bytes: 8 * 1024,
            max_value_bytes: 16 * 1024 * 1024,
            replicas: 3,
            write_quorum: 2,
            read_quorum: 2,
            max_hints: 100_000,
            max_hint_bytes: 256 << 20,
            hint_max_age: Duration::from_secs(3 * 3600),
            anti_entropy_interval: Duration::from_secs(60),
            move_rate: 0,
            tombstone_grace: Duration::from_secs(24 * 3600),
            vnodes: dkv_placement::DEFAULT_VNODES,
            cluster_secret: None,
            data_dir: None,
            rejoin: false,
            fsync: Fsync::Periodic(Duration::from_secs(1)),
            cluster_name: "dkv".into(),
            resp_listen: None,
            limits: ClientLimits::default(),
            keys_limit: 10_000,
            busy_poll: Duration::ZERO,
            client_auth: ClientAuth::default(),
            tls: None,
        }
    }
}
