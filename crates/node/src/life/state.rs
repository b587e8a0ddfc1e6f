//! A node's shared state: who it is, what it stores, the membership it knows, and where it is in
//! its life. [`Node`] is a cheap handle over it that every task and handler holds; the task that
//! starts and stops the services is `server.rs`.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use dkv_membership::{NodeId, Topology};
use dkv_storage::{Engine, Hlc};
use tokio::sync::{watch, Mutex};

use crate::config::NodeConfig;
use crate::life::clock::Offsets;
use crate::life::durability::{Durability, Fsync};
use crate::life::fence::Fence;
use crate::life::local::Local;
use crate::life::stats::Counters;
use crate::replication::hints::Hints;
use crate::replication::latency::Latencies;
use crate::replication::settled::SettledViews;
use crate::transport::peer::Peers;

/// How a node is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Hand all data to the remaining members, then exit.
    Leave,
    /// Exit without handing data off (the whole cluster is going down).
    Now,
    /// Exit without handing data off, with an error: the join gave up (it had left the
    /// membership already; everything it held is held by the old owners too).
    JoinFailed,
    /// Exit without handing data off, with an error: the store takes no more writes
    /// (`life/store_watch.rs`).
    StoreFailed,
}

/// This node's own view of where it is in its life; set locally *before* the seed hears of it,
/// so e.g. a node that decided to leave refuses hand-offs from that instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Life {
    Joining = 0,
    Normal = 1,
    Leaving = 2,
    Left = 3,
}

impl Life {
    pub fn name(self) -> &'static str {
        match self {
            Life::Joining => "joining",
            Life::Normal => "normal",
            Life::Leaving => "leaving",
            Life::Left => "left",
        }
    }
}

pub struct Inner {
    pub config: NodeConfig,
    pub me: NodeId,
    pub addr: String,
    pub engine: Arc<dyn Engine>,
    /// When a write counts as stored (`--fsync`).
    pub durability: Arc<Durability>,
    /// The data directory, for a node that has one.
    pub local: Option<Local>,
    pub hlc: Hlc,
    pub peers: Peers,
    pub stats: Counters,
    pub metrics: crate::life::metrics::Metrics,
    /// Joins, leaves, rebalances and repairs in progress, for the heartbeat's report.
    pub moves: crate::life::load::Moves,
    /// `--move-rate`: what joins, rebalances and anti-entropy move, together.
    pub move_rate: crate::replication::pace::MoveRate,
    /// Scan pages of the local store served at once (see `replication/scan.rs`).
    pub scans: tokio::sync::Semaphore,
    /// When this node was last a settled member, and whether it is emptying a stale store (see
    /// `life/absence.rs`).
    pub absence: crate::life::absence::Absence,
    pub hints: Hints,
    /// Client writes and reads queued for each replica, sent together (see `batch.rs`): reads
    /// of whole entries, and of heads only (see `shape.rs`).
    pub write_batches: crate::replication::batch::Batches<crate::replication::batch::Writes>,
    pub read_batches: crate::replication::batch::Batches<crate::replication::batch::Reads>,
    pub head_batches:
        crate::replication::batch::Batches<crate::replication::batch::Reads<crate::transport::wire::Head>>,
    /// Work a request starts that may outlive it: the rest of a quorum's replica calls, read
    /// repairs, view refreshes. Shutdown waits for it (bounded), so none is cut off unseen.
    pub tasks: tokio_util::task::TaskTracker,
    /// Client connections, buffered bytes and time (see `front/limits.rs`).
    pub guard: Arc<crate::front::limits::Guard>,
    /// Client passwords and the count of refused attempts (see `front/auth.rs`).
    pub auth: Arc<crate::front::auth::Auth>,
    /// How long each peer usually takes, for hedged reads and forwards.
    pub latencies: Latencies,
    /// This node's clock against the other members' (see `clock.rs`).
    pub offsets: Offsets,
    /// Set while the clock is off by more than `--max-clock-offset`: why no write is coordinated.
    clock_refusal: std::sync::RwLock<Option<String>>,
    /// By how much, in ms (0 while within the bound), for [`Node::cluster_wall_ms`].
    clock_ahead_ms: std::sync::atomic::AtomicI64,
    /// This node's clock minus the cluster's as last measured, within the bound or not (0 until
    /// measured), for [`Node::cluster_clock_ms`].
    measured_ahead_ms: std::sync::atomic::AtomicI64,
    /// Whether this node may coordinate, by its contact with the seed (see `lease.rs`).
    pub lease: crate::life::lease::Lease,
    /// Keeps the event loop awake between requests (`--busy-poll`, see `busy_poll.rs`).
    pub busy_poll: crate::life::busy_poll::BusyPoll,
    /// Asks `clock::clock_loop` to read peers' clocks (see `clock::after_heartbeat`).
    pub clock_probe: tokio::sync::Notify,
    /// Woken when a value with a deadline is stored (see `expiry::expiry_loop`).
    pub expiring_stored: tokio::sync::Notify,
    pub(crate) topo: watch::Sender<Arc<Topology>>,
    /// Serialises refreshes from the seed so a burst of stale-epoch answers causes one fetch.
    pub(crate) refresh_lock: Mutex<()>,
    /// The highest epoch a peer's notice announced while a fetch for notices waits (0: none
    /// waits); see `refresh_noticed`.
    pub(crate) noticed: std::sync::atomic::AtomicU64,
    /// When it last asked its peers for a newer view, the seed not answering (`peer_views.rs`).
    pub(crate) peer_views: crate::life::peer_views::PeerViews,
    /// Writes and hand-offs enter it; a data move drains it once, after adopting a new view, to
    /// wait until every write planned under an older view has landed (see `fence.rs`).
    pub(crate) fence: Fence,
    /// The last anti-entropy digests, while the store and the view stay as they were.
    pub(crate) digests: crate::replication::antientropy::DigestCache,
    /// The pairs of this node and a peer found equal by anti-entropy, and when each was compared.
    pub(crate) pairs: crate::replication::pairs::Pairs,
    life: AtomicU8,
    /// The membership epoch at which this node last finished an anti-entropy round with every
    /// peer (0: never). See [`Node::settled`].
    settled_epoch: AtomicU64,
    /// The views adopted since that round (or since the join's end), for the keys whose answers
    /// are complete meanwhile (see [`Node::settled_for`]).
    settled_views: SettledViews,
    stop: watch::Sender<Option<Stop>>,
}

/// A cheap handle to a node's shared state.
#[derive(Clone)]
pub struct Node(pub Arc<Inner>);

impl std::ops::Deref for Node {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Node {
    /// The state of a node that registered as `me` with the view in `topo`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: NodeConfig,
        me: NodeId,
        addr: String,
        engine: Arc<dyn Engine>,
        local: Option<Local>,
        peers: Peers,
        hints: Hints,
        topo: Arc<Topology>,
        life: Life,
        stop: watch::Sender<Option<Stop>>,
    ) -> Node {
        Node(Arc::new(Inner {
            me,
            addr,
            durability: Durability::start(engine.clone(), config.fsync),
            engine,
            local,
            hlc: Hlc::default(),
            peers,
            stats: Counters::default(),
            metrics: crate::life::metrics::Metrics::default(),
            moves: Default::default(),
            move_rate: crate::replication::pace::MoveRate::new(config.move_rate, config.tombstone_grace),
            scans: tokio::sync::Semaphore::new(crate::replication::scan::SCANS_AT_ONCE),
            absence: Default::default(),
            hints,
            write_batches: Default::default(),
            read_batches: Default::default(),
            head_batches: Default::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            guard: Arc::new(crate::front::limits::Guard::new(config.limits.clone())),
            auth: Arc::new(crate::front::auth::Auth::new(config.client_auth.clone())),
            latencies: Latencies::new(config.hedge_after, config.request_timeout),
            offsets: Offsets::new(config.heartbeat_interval * 3),
            clock_refusal: std::sync::RwLock::new(None),
            clock_ahead_ms: std::sync::atomic::AtomicI64::new(0),
            measured_ahead_ms: std::sync::atomic::AtomicI64::new(0),
            lease: crate::life::lease::Lease::new(config.heartbeat_interval),
            busy_poll: crate::life::busy_poll::BusyPoll::new(config.busy_poll),
            clock_probe: tokio::sync::Notify::new(),
            expiring_stored: tokio::sync::Notify::new(),
            settled_views: SettledViews::new(topo.clone()),
            topo: watch::channel(topo).0,
            refresh_lock: Mutex::new(()),
            noticed: Default::default(),
            peer_views: Default::default(),
            fence: Fence::default(),
            digests: Default::default(),
            pairs: Default::default(),
            life: AtomicU8::new(life as u8),
            settled_epoch: AtomicU64::new(0),
            stop,
            config,
        }))
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.topo.borrow().clone()
    }

    /// What `f` reads from the current topology, without a reference to it: cheaper than
    /// [`Node::topology`] on the hot paths (no reference count touched). `f` runs under the
    /// view's read lock, so it must be quick and must not change the view.
    pub fn with_topology<R>(&self, f: impl FnOnce(&Topology) -> R) -> R {
        f(&self.topo.borrow())
    }

    /// The epoch of the current view.
    pub fn epoch(&self) -> u64 {
        self.with_topology(Topology::epoch)
    }

    pub fn life(&self) -> Life {
        match self.life.load(Ordering::Acquire) {
            0 => Life::Joining,
            1 => Life::Normal,
            2 => Life::Leaving,
            _ => Life::Left,
        }
    }

    /// Whether this node holds every key it replicates under the current view: it is serving,
    /// and it finished an anti-entropy round with every peer since the view last changed. Only
    /// then does its "not found" decide a read (see `coordinator.rs`).
    pub fn settled(&self) -> bool {
        self.life() == Life::Normal && self.settled_epoch.load(Ordering::Acquire) == self.epoch()
    }

    /// Why this node coordinates no writes now (its clock is off), if it does not.
    pub fn clock_refusal(&self) -> Option<String> {
        self.clock_refusal.read().expect("clock refusal lock").clone()
    }

    /// The cluster's wall clock by this node's reckoning, in ms since the Unix epoch: its own,
    /// less its measured offset while that is past `--max-clock-offset`. Every deadline is judged
    /// by it: tombstones' grace periods and values' TTLs. By its own clock, a node a year ahead
    /// dropped every delete it received as long past its grace, kept the value, and anti-entropy
    /// brought the value back once the others purged; and every value with a TTL read as absent
    /// through it. (Read on every read of a value with a TTL: an atomic, not the lock.)
    pub fn cluster_wall_ms(&self) -> u64 {
        self.cluster_ms_of(self.hlc.wall_ms())
    }

    /// What this node's wall clock reading `wall_ms` is on the cluster's clock (see
    /// [`Node::cluster_wall_ms`]).
    pub fn cluster_ms_of(&self, wall_ms: u64) -> u64 {
        let ahead = self.clock_ahead_ms.load(Ordering::Relaxed);
        wall_ms.saturating_add_signed(ahead.saturating_neg())
    }

    /// The cluster's clock as this node last measured it, in ms: its wall clock less its measured
    /// offset, whether within the bound or not. Versions are bounded by it, not by the wall
    /// clock (see [`Node::max_clock_offset_ms`]).
    pub fn cluster_clock_ms(&self) -> u64 {
        let ahead = self.measured_ahead_ms.load(Ordering::Relaxed);
        self.hlc.wall_ms().saturating_add_signed(ahead.saturating_neg())
    }

    /// This node's clock was measured `ahead_ms` ahead of the cluster's (behind, if negative).
    pub fn set_measured_offset(&self, ahead_ms: i64) {
        self.measured_ahead_ms.store(ahead_ms, Ordering::Relaxed);
    }

    /// `--max-clock-offset` in milliseconds: how far ahead of the cluster's clock, as this node
    /// measured it ([`Node::cluster_clock_ms`]), a version may be stamped for its clock to follow
    /// it (or, for a client write, to be applied here). Of the cluster's clock, not this node's:
    /// every node coordinates within the bound of the cluster's, so two within it on either side
    /// (−400 and +450 ms) are up to twice the bound apart, and judged by their own wall clocks
    /// they refused each other's writes (no hint kept); and a node judged off, right to refuse to
    /// coordinate, refused every correct write as a replica too (found by reading, 2026-12-06).
    pub fn max_clock_offset_ms(&self) -> u64 {
        self.config.max_clock_offset.as_millis() as u64
    }

    pub fn set_clock_off(&self, off: Option<crate::life::clock::Off>) {
        let mut why = self.clock_refusal.write().expect("clock refusal lock");
        self.clock_ahead_ms.store(off.as_ref().map_or(0, |off| off.offset_ms), Ordering::Relaxed);
        *why = off.map(|off| off.why);
    }

    /// Whether this node's answer for the key `hash` is complete: it is [`settled`](Self::settled),
    /// or, while a view change is not settled yet, it held the key in the view from which it is
    /// complete (its last round's, its join's end, its start as a new cluster's first member)
    /// and in every view since (see `replication/settled.rs`). Only a complete answer counts
    /// towards a read's R, and only a complete acknowledgement towards a write's W. A node
    /// joining is complete for nothing yet; one leaving still holds its ranges, on the read ring,
    /// until it has left.
    pub fn settled_for(&self, hash: u64) -> bool {
        self.settled_for_all(&[hash])
    }

    /// [`settled_for`](Self::settled_for) every one of `hashes` (a batch of reads answered with
    /// one flag): the node's state read once, the views locked once.
    pub fn settled_for_all(&self, hashes: &[u64]) -> bool {
        self.settled()
            || (matches!(self.life(), Life::Normal | Life::Leaving)
                && self.settled_views.complete_for_all(self.me, hashes))
    }

    /// Run `read` of the keys `hashes` and say whether what it read is complete: complete before
    /// the read and still after it. Asked only after, a round that ended in between (the key
    /// copied in just after the read found it absent) would vouch for an answer read before it.
    pub fn read_complete<T>(&self, hashes: &[u64], read: impl FnOnce() -> T) -> (T, bool) {
        let before = self.settled_for_all(hashes);
        let out = read();
        (out, before && self.settled_for_all(hashes))
    }

    /// An anti-entropy round with every peer ended under `topo`. The first time under a view,
    /// a node that syncs every write before acknowledging it (`--fsync always`) records that view
    /// in its data directory: killed and started again under it, it is settled at once (see
    /// `life/local.rs`).
    pub fn mark_settled(&self, topo: &Arc<Topology>) {
        self.settled_views.settled_under(topo);
        let before = self.settled_epoch.swap(topo.epoch(), Ordering::AcqRel);
        if before != topo.epoch() && self.local.is_some() && self.config.fsync == Fsync::Always {
            let (node, at) = (self.clone(), crate::life::local::SettledAt::of(topo));
            // A write and an fsync, off the runtime; one that lands after a later view's only
            // names a view the node no longer holds, which a restart does not match.
            tokio::task::spawn_blocking(move || {
                if let Some(local) = &node.local {
                    local.save_settled(at);
                }
            });
        }
    }

    /// This node holds every acknowledged write of its ranges in the current view: it finished
    /// its join, or it is the first member of a new cluster (see `replication/settled.rs`).
    pub fn mark_complete(&self) {
        self.settled_views.complete_now();
    }

    /// A join begins to copy this node's ranges, under the current view.
    pub fn join_began(&self) {
        self.settled_views.join_began();
    }

    /// The join copied every range: answers are complete for the keys this node replicated in
    /// the view the copies began under and in every view since (see `replication/settled.rs`).
    pub fn joined(&self) {
        self.settled_views.joined();
    }

    /// This node was sent back to joining: none of its answers is complete until a round.
    pub fn forget_complete(&self) {
        self.settled_views.forget();
    }

    /// `topo` was installed (called in the order views are).
    pub(crate) fn record_adopted(&self, topo: Arc<Topology>) {
        self.settled_views.adopted(topo);
    }

    pub fn set_life(&self, life: Life) {
        self.life.store(life as u8, Ordering::Release);
    }

    /// `from` becomes `to`; returns false, changing nothing, if the node is no longer `from`
    /// (for a join's end or start, a leave that began meanwhile: the leave wins).
    pub fn change_life(&self, from: Life, to: Life) -> bool {
        self.life.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Why this node cannot leave, if it cannot: no other `normal` member would take its keys.
    /// The last member's leave never ended, and since it is recorded in the data directory, every
    /// restart began it again and exited (found by trying, 2026-12-06).
    pub fn cannot_leave(&self) -> Option<String> {
        let alone = self.with_topology(|t| {
            !t.view.nodes.iter().any(|m| m.id != self.me && m.state == dkv_membership::NodeState::Normal)
        });
        alone.then(|| {
            "this node is the cluster's last normal member: no member could take its keys; add a node first and \
             leave once it is normal, or stop this one without a leave (POST /admin/stop; with --data-dir its keys \
             stay there)"
                .to_string()
        })
    }

    /// Ask the node to stop (from an admin endpoint).
    pub fn request_stop(&self, how: Stop) {
        self.stop.send_if_modified(|s| {
            // A stop-now overrides a leave in progress; a leave never downgrades a stop-now.
            let next = match (*s, how) {
                (Some(Stop::Now), _) => Stop::Now,
                (Some(Stop::JoinFailed), _) => Stop::JoinFailed,
                (Some(Stop::StoreFailed), _) | (_, Stop::StoreFailed) => Stop::StoreFailed,
                (_, h) => h,
            };
            let changed = *s != Some(next);
            *s = Some(next);
            changed
        });
    }

    /// After a leave was taken back (`movement::leave`): serve again, and wait for the next stop
    /// (true), unless a stop-now came meanwhile, or a signal (`signalled`, set under this same
    /// lock when it came): the node then stops without a leave (false).
    pub fn serve_again(&self, signalled: &std::sync::atomic::AtomicBool) -> bool {
        let mut again = false;
        self.stop.send_if_modified(|s| {
            again = *s == Some(Stop::Leave) && !signalled.load(Ordering::SeqCst);
            if again {
                *s = None;
            }
            again
        });
        again
    }

    /// Wait until every write that started before now has finished; new writes go on meanwhile.
    pub async fn drain_writes(&self) {
        self.fence.drain().await;
    }
}
