//! The node's side of membership: registering, heart-beating, adopting views, and refreshing
//! early when a peer shows a newer epoch.
//!
//! A heartbeat says which view the node holds (its epoch and digest). While nothing changes the
//! seed answers "unchanged" with no view, and the node does nothing but note the seed's clock;
//! after a change it answers with the members that changed, which the node applies to its view
//! and checks against the seed's digest (a mismatch fetches the whole view). So an idle cluster's
//! heartbeats cost the same at any size, and a topology is rebuilt only when the view moves. A
//! refresh (a peer showed a newer epoch) is an early heartbeat.
//!
//! While the seed is unreachable nothing changes: the node keeps serving with the last view it
//! adopted. When the seed answers "unknown node" (it restarted, or expired us) the node registers
//! again with its own id, tokens, state and last view, which restores the membership without
//! moving any key.
//!
//! Views arrive from several tasks at once — heartbeats, refreshes asked for by peers, the
//! answers to ready and leave — and an answer can be overtaken by a newer one. So a view is
//! adopted only if it is newer than the one installed *at the moment of installing* (a
//! compare-and-swap on the watch channel, see [`choose`]); an older one never replaces a newer
//! one. The one exception is a seed that restarted: its epochs may start again below ours, and
//! once it has answered our re-registration its view replaces ours even if older — but only if
//! ours is still the one we re-registered with.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dkv_membership::api::{HeartbeatAnswer, IdRequest, LeaveRequest, RegisterRequest, RegisterResponse};
use dkv_membership::{NodeId, NodeState, Topology, View};
use dkv_storage::Identity;
use http::{Method, StatusCode};
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::error::{NodeError, PeerError};
use crate::life::clock::Source;
use crate::life::state::{Life, Node};
use crate::transport::peer::{status_is, Peers};
use crate::transport::wire::{Kind, RefreshRequest, Settings, SettingsRequest};

/// The settings this node must share with every member (see [`Settings`]).
pub fn settings(config: &NodeConfig) -> Settings {
    Settings { replicas: config.replicas as u64 }
}

/// Before registering: refuse a heartbeat interval the seed's TTL does not leave room for, and
/// ask a few of the seed's members what they run with, refusing to join a cluster whose members
/// run with another `--replication`.
///
/// - With an interval of half the TTL or more, the seed could expire this node before its lease
///   ran out (`life/lease.rs`): such a node used to start, log an error and flap between
///   `normal` and expired (found by reading, 2026-12-06); `dkv up` already refused it.
/// - Nodes that disagree on N pick different replicas for a key: a write through one was
///   acknowledged by replicas the other never reads, and read back as missing (found by trying,
///   2026-12-06: both were taken without a word).
///
/// The seed is waited for, as registering waits for it. Members that cannot be reached, or a
/// seed or members of a release before the question, leave it unchecked (the lease loop still
/// logs a TTL it learns later).
pub async fn check_settings(
    peers: &Peers,
    config: &NodeConfig,
    addr: &str,
    me: Option<NodeId>,
) -> Result<(), NodeError> {
    // The seed first: a node started before its seed was up registered unchecked, ran with an
    // interval the seed's TTL cannot take, and only logged it (found by a code-reading hunt,
    // 2026-12-07). Waited for as registering waits for it.
    let mut delay = Duration::from_millis(100);
    let ttl = loop {
        match peers.seed_ttl(&config.seed).await {
            Ok(ttl) => break ttl,
            Err(e) if e.status().is_none() => {
                // In the registration's words: to whoever reads the log, this is registering.
                tracing::warn!(seed = %config.seed, "registering with the seed failed: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(_) => break None, // it answered, not as a seed of this release: left unchecked
        }
    };
    if let Some(why) = ttl.and_then(|ttl| crate::life::lease::interval_too_long(config.heartbeat_interval, ttl)) {
        return Err(NodeError::BadRequest(why));
    }
    let Ok(view) = peers.seed_call::<(), View>(&config.seed, Method::GET, "/nodes", None).await else {
        return Ok(());
    };
    let mine = settings(config);
    let others = view.nodes.iter().filter(|m| m.addr != addr && Some(m.id) != me && m.state == NodeState::Normal);
    for m in others.take(3) {
        let within = config.request_timeout.min(Duration::from_secs(2));
        let Ok(theirs) = peers.call_within::<_, Settings>(&m.addr, Kind::Settings, &SettingsRequest {}, within).await
        else {
            continue;
        };
        if theirs.replicas != mine.replicas {
            return Err(NodeError::BadRequest(format!(
                "member {} at {} runs with --replication {}, this node with {}: give every node of the cluster the \
                 same --replication (nodes that disagree on N pick different replicas for a key, and do not find \
                 each other's copies)",
                m.id, m.addr, theirs.replicas, mine.replicas
            )));
        }
        return Ok(());
    }
    Ok(())
}

/// When a registration that the seed answered was sent: by the monotonic clock (the lease
/// counts from it) and by the wall clock (the in-service record, `life/absence.rs`: a VM
/// suspended meanwhile does not advance the monotonic one).
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub at: Instant,
    pub wall_ms: u64,
}

/// Register, retrying until the seed answers: as a new node, or — with an identity from the data
/// directory — as the node we were, with our tokens, our last state and the last view we knew
/// (which a seed that restarted too rebuilds the membership from). The state is `leaving` when
/// the node stopped during its leave, whatever that view says. A refusal that retrying cannot
/// fix (another cluster's seed, a malformed request) is an error.
pub async fn register_until_accepted(
    peers: &Peers,
    config: &NodeConfig,
    addr: &str,
    identity: Option<&Identity>,
    last_view: Option<&View>,
    leaving: bool,
) -> Result<(RegisterResponse, Sent), NodeError> {
    let mut req = RegisterRequest {
        addr: addr.to_string(),
        vnodes: Some(config.vnodes),
        cluster: Some(config.cluster_name.clone()),
        ..Default::default()
    };
    if let Some(me) = identity {
        let id = NodeId(me.id);
        req.id = Some(id);
        req.tokens = Some(me.tokens.clone());
        req.state = match leaving {
            true => Some(NodeState::Leaving),
            false => last_view.and_then(|v| v.nodes.iter().find(|m| m.id == id)).map(|m| m.state),
        };
        req.view = last_view.cloned();
        tracing::info!(%id, "registering under the identity kept in the data directory");
    }
    let mut delay = Duration::from_millis(100);
    loop {
        // The answer says the seed heard this node at some moment after this (the lease counts
        // from here: `life/lease.rs`).
        let sent = Sent { at: Instant::now(), wall_ms: crate::replication::hints::wall_ms() };
        match peers.seed_call(&config.seed, Method::POST, "/register", Some(&req)).await {
            Ok(resp) => return Ok((resp, sent)),
            Err(e)
                if !e.to_string().contains(dkv_membership::registry::IN_USE)
                    && (status_is(&e, StatusCode::CONFLICT) || status_is(&e, StatusCode::BAD_REQUEST)) =>
            {
                return Err(NodeError::BadRequest(format!("the seed {} refused this node: {e}", config.seed)));
            }
            Err(e) => {
                tracing::warn!(seed = %config.seed, "registering with the seed failed: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Whether to install `offered` over `current`: when it is newer, or of the same epoch but placing
/// keys differently (this node's own change, see [`Node::assume_leaving`]). With `replacing`
/// (the seed restarted and answered our re-registration), also when it is older, provided the
/// current view is still at epoch `replacing`, the one we re-registered with.
pub fn choose(current: &View, offered: &View, replacing: Option<u64>) -> bool {
    let differs = offered.epoch != current.epoch || !offered.same_placement(current);
    let newer = offered.epoch > current.epoch || (offered.epoch == current.epoch && differs);
    newer || (replacing == Some(current.epoch) && differs)
}

impl Node {
    /// Install `view` if it is newer than the current one (see [`choose`]). Returns whether
    /// placement changed.
    pub fn adopt(&self, view: View) -> bool {
        self.install(view, None)
    }

    /// Install the view a restarted seed answered our re-registration with, even if its epoch
    /// is lower than ours — unless a view newer than `replacing` (the epoch we re-registered
    /// with) was installed meanwhile.
    fn adopt_after_reregistering(&self, view: View, replacing: u64) -> bool {
        self.install(view, Some(replacing))
    }

    fn install(&self, mut view: View, replacing: Option<u64>) -> bool {
        loop {
            let current = self.topology();
            if !choose(&current.view, &view, replacing) {
                return false;
            }
            // Built outside the channel's lock: readers of the topology never wait for a ring.
            let next = Arc::new(current.next(view));
            let installed = self.topo.send_if_modified(|topo| {
                if !Arc::ptr_eq(topo, &current) {
                    return false; // another view came in since we looked: decide again
                }
                *topo = next.clone();
                self.record_adopted(next.clone());
                // Queued under the channel's lock, so views are saved in the order installed.
                if let Some(local) = &self.local {
                    local.save_view(&next.view);
                }
                true
            });
            if !installed {
                // Nothing else holds `next`: its view goes round again, not a copy of it (a copy
                // of a view of 200 members is 200 allocations, though the tokens are shared).
                view = Arc::try_unwrap(next).map_or_else(|shared| shared.view.clone(), |t| t.view);
                continue;
            }
            let moved = !next.view.same_placement(&current.view);
            if next.view.nodes.len() < current.view.nodes.len() || moved {
                self.forget_departed(&next.view);
            }
            if moved {
                tracing::info!(
                    epoch = next.epoch(),
                    members = next.view.nodes.len(),
                    changes = %what_changed(&current.view, &next.view),
                    "membership changed"
                );
            }
            return moved;
        }
    }

    /// Drop what this node keeps per peer (latencies, pair records, clock readings, lease
    /// reports) for the peers `view` no longer lists: each in-memory node that joins and leaves
    /// comes with a new id, and these tables kept every one for good (found by reading, in a
    /// soak hunt, 2026-12-07).
    fn forget_departed(&self, view: &View) {
        let member = |id: NodeId| view.member(id).is_some();
        self.latencies.retain(member);
        self.pairs.retain(member);
        self.offsets.retain(member);
        self.lease.retain(member);
    }

    /// Mark this node `leaving` in our own view only (the seed cannot be told).
    pub fn assume_leaving(&self) {
        let mut view = self.topology().view.clone();
        for m in view.nodes.iter_mut().filter(|m| m.id == self.me) {
            m.state = dkv_membership::NodeState::Leaving;
        }
        self.adopt(view);
    }

    /// A peer's notice that the membership changed to `epoch` (`notify_peers`): fetch the view a
    /// moment later, once for all the notices that come meanwhile. While a cluster starts, every
    /// join and every end of one sends a notice to every member, and each view taken in copies
    /// the rings; at 100 nodes started at once a node took in 78 views in 5 s. A request that
    /// carries a newer epoch than ours does not wait for this: it refreshes at once
    /// ([`Node::refresh_to`]).
    pub async fn refresh_noticed(&self, epoch: u64) {
        if self.epoch() >= epoch || self.noticed.fetch_max(epoch, Ordering::AcqRel) != 0 {
            return; // current already, or a fetch is waiting and will see this epoch too
        }
        tokio::time::sleep(self.config.heartbeat_interval / NOTICE_WAIT_PER_INTERVAL).await;
        let epoch = self.noticed.swap(0, Ordering::AcqRel);
        self.refresh_to(epoch).await;
    }

    /// Make sure our view is at least `epoch` (a peer showed it); one fetch for many callers.
    pub async fn refresh_to(&self, epoch: u64) {
        if self.epoch() >= epoch {
            return;
        }
        let _guard = self.refresh_lock.lock().await;
        if self.epoch() >= epoch {
            return;
        }
        self.refresh().await;
    }

    /// Learn the seed's view now (an early heartbeat); on failure keep the current one.
    pub async fn refresh(&self) {
        match self.beat().await {
            Ok(_) => {} // Behind: a restarted seed behind us; the heartbeat loop re-registers
            Err(e) if status_is(&e, StatusCode::NOT_FOUND) && self.is_leaving() => self.forgotten_while_leaving().await,
            Err(e) => {
                tracing::warn!("refreshing membership from the seed failed: {e}");
                // Only when the seed could not be reached: an error it answered is its word
                // (a 404 says it does not know this node, which re-registers).
                if e.status().is_none() {
                    self.views_from_peers().await;
                }
            }
        }
    }

    fn is_leaving(&self) -> bool {
        matches!(self.life(), Life::Leaving | Life::Left)
    }

    /// The seed no longer knows this leaving node: its leave is done, or the seed expired it
    /// (paused past the TTL, say) before the leave could finish. Either way it must not come
    /// back as a member: a leaving member still serves reads, and this one would serve them with
    /// the writes it missed while the cluster had replaced it. It takes the seed's view instead,
    /// in which it is absent, so what is left of its hand-off goes to the keys' current
    /// replicas, with the current epoch (an older one is refused as stale, and the leave would
    /// retry until its timeout).
    async fn forgotten_while_leaving(&self) {
        match self.fetch_view().await {
            Ok(view) => {
                if self.adopt(view) {
                    tracing::info!(epoch = self.epoch(), "the seed no longer lists this leaving node; took its view");
                }
            }
            Err(e) => tracing::warn!("the seed no longer lists this leaving node, and its view could not be read: {e}"),
        }
    }

    /// A heartbeat before the node serves, for the seed's clock ([`crate::life::clock::first_verdict`]):
    /// what it learns of the membership is taken as any heartbeat's; one the loop would act on
    /// (the seed behind, or not knowing this node) waits for the loop's first.
    pub(crate) async fn first_heartbeat(&self) -> Result<(), PeerError> {
        self.beat().await.map(|_| ())
    }

    /// One heartbeat, within the request timeout.
    async fn beat(&self) -> Result<Beat, PeerError> {
        let within = self.peers.timeout();
        self.beat_until(tokio::time::sleep(within), within).await
    }

    /// One heartbeat: report to the seed, read its clock, learn what changed. The call to the
    /// seed is given up when `until` resolves (`after` is how long that is).
    async fn beat_until(
        &self,
        until: impl std::future::Future<Output = ()>,
        after: Duration,
    ) -> Result<Beat, PeerError> {
        let topo = self.topology();
        let seed_clock = self.offsets.seed_reading(Instant::now());
        let req = IdRequest {
            keys: Some(self.engine.stats().keys),
            clock_offset_ms: Some(self.offsets.estimate(Instant::now()).offset_ms),
            seed_clock_offset_ms: seed_clock.map(|c| c.0),
            seed_clock_error_ms: seed_clock.map(|c| c.1),
            coordinating_writes: Some(self.clock_refusal().is_none()),
            epoch: Some(topo.epoch()),
            digest: Some(topo.digest()),
            load: Some(self.load_report()),
            ..IdRequest::id(self.me)
        };
        let sent = self.hlc.wall_ms();
        let sent_at = Instant::now();
        let answer = self.peers.seed_heartbeat(&self.config.seed, &req, until, after).await?;
        self.lease.heard(sent_at);
        if let Some(seed_ms) = answer.now_ms {
            self.offsets.record(Source::Seed, sent, self.hlc.wall_ms(), seed_ms, Instant::now());
        }
        if let Some(clock) = answer.clock {
            self.offsets.record_cluster(clock, Instant::now());
        }
        let beat = self.learn(&topo, answer).await;
        if beat.is_ok() && self.topology().my_state() == Some(NodeState::Normal) {
            // Still a member when the heartbeat was sent (the seed did not send it back).
            self.absence.heard_from_seed(self.cluster_ms_of(sent));
        }
        beat
    }

    /// Act on a heartbeat answer to a heartbeat sent holding `sent`.
    async fn learn(&self, sent: &Topology, answer: HeartbeatAnswer) -> Result<Beat, PeerError> {
        let view = match (answer.nodes, answer.changes) {
            (Some(nodes), _) => View { epoch: answer.epoch, nodes },
            (None, Some(changes)) => {
                let view = changes.apply(&sent.view, answer.epoch);
                if answer.digest.is_some_and(|d| d != sent.digest_of(&view)) {
                    // Not where the seed is: ask for the whole view.
                    tracing::warn!(
                        epoch = answer.epoch,
                        "membership changes did not add up to the seed's view; fetching it whole"
                    );
                    self.fetch_view().await?
                } else {
                    view
                }
            }
            (None, None) => return Ok(Beat::Current),
        };
        if view.epoch < self.epoch() {
            return Ok(Beat::Behind);
        }
        self.adopt(view);
        Ok(Beat::Current)
    }

    /// The seed's whole view.
    async fn fetch_view(&self) -> Result<View, PeerError> {
        self.peers.seed_call::<(), View>(&self.config.seed, Method::GET, "/nodes", None).await
    }

    /// The seed answered with a view older than ours. An answer can be overtaken by a newer one
    /// (a refresh that raced the heartbeat), so ask again: if the seed is still behind us, it
    /// restarted and lost the membership; register again to restore it.
    async fn seed_behind(&self) -> Result<(), PeerError> {
        let view = self.fetch_view().await?;
        if view.epoch >= self.epoch() {
            self.adopt(view);
            return Ok(());
        }
        self.reregister().await
    }

    /// Register again with our identity and last view (seed restarted or expired us).
    pub async fn reregister(&self) -> Result<(), PeerError> {
        let topo = self.topology();
        let me = topo.member(self.me);
        let req = RegisterRequest {
            addr: self.addr.clone(),
            id: Some(self.me),
            tokens: me.map(|m| m.tokens.to_vec()),
            state: Some(me.map_or(self.life_state(), |m| m.state)),
            vnodes: Some(self.config.vnodes),
            view: Some(topo.view.clone()),
            cluster: Some(self.config.cluster_name.clone()),
        };
        let sent_at = Instant::now();
        let resp: RegisterResponse =
            self.peers.seed_call(&self.config.seed, Method::POST, "/register", Some(&req)).await?;
        self.lease.heard(sent_at);
        tracing::info!(epoch = resp.epoch, "registered again with the seed under the same id");
        self.registered_again();
        self.adopt_after_reregistering(View { epoch: resp.epoch, nodes: resp.nodes }, topo.epoch());
        Ok(())
    }

    /// The seed took this node back under its id (it had expired it, or restarted). One that
    /// was joining was expired while it copied (paused, cut off): the writes of that time did
    /// not come here, also to ranges it had copied, and its join goes on from where it was. So
    /// its answers are complete for nothing until its first anti-entropy round brings them.
    fn registered_again(&self) {
        if self.life() == crate::life::state::Life::Joining {
            self.forget_complete();
            tracing::warn!(
                "this node was expired while joining: its answers count as complete only after its first anti-entropy round"
            );
        }
    }

    fn life_state(&self) -> dkv_membership::NodeState {
        use crate::life::state::Life;
        match self.life() {
            Life::Joining => dkv_membership::NodeState::Joining,
            Life::Normal => dkv_membership::NodeState::Normal,
            Life::Leaving | Life::Left => dkv_membership::NodeState::Leaving,
        }
    }

    pub async fn seed_ready(&self) -> Result<(), PeerError> {
        let view: View =
            self.peers.seed_call(&self.config.seed, Method::POST, "/ready", Some(&IdRequest::id(self.me))).await?;
        self.adopt(view);
        Ok(())
    }

    pub async fn seed_leave(&self, done: bool) -> Result<(), PeerError> {
        let req = LeaveRequest { id: self.me, done };
        match self.peers.seed_call::<_, View>(&self.config.seed, Method::POST, "/leave", Some(&req)).await {
            Ok(view) => {
                self.adopt(view);
                Ok(())
            }
            // The seed no longer lists this node: it expired it while the node was stopped
            // during its leave, and did not take it back (see `server.rs`). The leave goes on
            // by the seed's view, in which the node is absent.
            Err(e) if !done && status_is(&e, StatusCode::NOT_FOUND) => {
                self.forgotten_while_leaving().await;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Take this node's leave back at the seed: it is `normal` again (see `movement::leave`).
    pub async fn seed_withdraw_leave(&self) -> Result<(), PeerError> {
        let req = IdRequest::id(self.me);
        let view =
            self.peers.seed_call::<_, View>(&self.config.seed, Method::POST, "/leave/withdraw", Some(&req)).await?;
        self.adopt(view);
        Ok(())
    }

    /// Tell every other member that the membership changed, so they fetch it now instead of at
    /// their next heartbeat. Best effort, bounded by the request timeout.
    pub async fn notify_peers(&self) {
        let topo = self.topology();
        let epoch = topo.epoch();
        let req = RefreshRequest { epoch };
        let calls = topo.view.nodes.iter().filter(|m| m.id != self.me).map(|m| {
            let req = &req;
            async move {
                if let Err(e) = self.peers.call::<_, ()>(&m.addr, Kind::Refresh, req).await {
                    tracing::debug!("telling {} about epoch {epoch}: {e}", m.addr);
                }
            }
        });
        futures_util::future::join_all(calls).await;
    }
}

/// The members that came, went or changed state from `old` to `new`, for the log: at most
/// [`CHANGES_LOGGED`] of them, so a change in a large cluster logs a line, not the membership.
fn what_changed(old: &View, new: &View) -> String {
    let before: std::collections::HashMap<_, _> = old.nodes.iter().map(|m| (m.id, m)).collect();
    let after: std::collections::HashSet<_> = new.nodes.iter().map(|m| m.id).collect();
    let came_or_moved = new.nodes.iter().filter_map(|m| match before.get(&m.id) {
        None => Some(format!("+{}={}", m.addr, m.state)),
        Some(was) if was.state != m.state || was.addr != m.addr => Some(format!("{}={}", m.addr, m.state)),
        Some(_) => None,
    });
    let went = old.nodes.iter().filter(|m| !after.contains(&m.id)).map(|m| format!("-{}", m.addr));
    let all: Vec<String> = came_or_moved.chain(went).collect();
    let mut line = all[..all.len().min(CHANGES_LOGGED)].join(",");
    if all.len() > CHANGES_LOGGED {
        line.push_str(&format!(" and {} more", all.len() - CHANGES_LOGGED));
    }
    line
}

const CHANGES_LOGGED: usize = 8;

/// A peer's notice is acted on this fraction of a heartbeat interval later (100 ms at 1 s).
const NOTICE_WAIT_PER_INTERVAL: u32 = 10;

/// Ticks of `interval` that last at least `timeout`, and at least one.
fn ticks_within(timeout: Duration, interval: Duration) -> u32 {
    let ticks = timeout.as_nanos().div_ceil(interval.as_nanos().max(1));
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

/// What a heartbeat found.
#[derive(Debug, PartialEq, Eq)]
enum Beat {
    /// Our view is the seed's (it was, or it is now).
    Current,
    /// The seed's view is older than ours: it restarted, or the answer was overtaken.
    Behind,
}

/// Heartbeat the seed every interval and adopt what it says, until `stop`.
///
/// A heartbeat's deadline is counted in ticks of the timer that sends them: it is given up at the
/// first tick at least `--request-timeout` after it was sent (the next tick, at the default 5 s
/// interval). After a tick has passed during a heartbeat, answered or not, the next one leaves at
/// once, as it would if the timer had not been read. So waiting for the seed's answer arms no timer:
/// arming one wakes the runtime's driver to take the earlier deadline, about a tenth of an idle
/// node's CPU (`Line::call_until`).
pub async fn heartbeat_loop(node: Node, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    let interval = node.config.heartbeat_interval;
    let mut ticker = crate::life::ticker::Ticker::every(interval);
    let mut due = false;
    loop {
        // Given up within the request timeout, and within a quarter of the seed's TTL once
        // known: one heartbeat stuck on a connection that lost packets (a cut that healed, TCP
        // retransmitting at its backoff) held up every other for the whole timeout, which with
        // short TTLs was the whole TTL, and the seed expired a node whose network was fine.
        let within = node.lease.ttl().map_or(node.peers.timeout(), |ttl| node.peers.timeout().min(ttl / 4));
        let patience = ticks_within(within, interval);
        if !due {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = node.lease.beat_wanted() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        // Ticks that pass while the heartbeat waits: the next one leaves at once after any, as it
        // would if the timer had not been read.
        let mut passed = 0;
        let until = async {
            while passed < patience {
                ticker.tick().await;
                passed += 1;
            }
        };
        let beat = node.beat_until(until, interval.saturating_mul(patience)).await;
        due = passed > 0;
        crate::life::clock::after_heartbeat(&node);
        match beat {
            Ok(Beat::Behind) => {
                // The seed restarted and someone re-registered with an older view than ours, or
                // this answer was overtaken by a newer view.
                if let Err(e) = node.seed_behind().await {
                    tracing::warn!("re-registering failed: {e}");
                }
                failures = 0;
            }
            Ok(Beat::Current) => {
                if failures > 0 {
                    tracing::info!("seed reachable again after {failures} failed heartbeats");
                }
                failures = 0;
            }
            Err(e) if status_is(&e, StatusCode::NOT_FOUND) && node.is_leaving() => {
                // The seed dropped us (our leave is done, or it expired us during it): coming
                // back would make us a member again, one that is about to exit.
                tracing::debug!("the seed no longer knows this leaving node: {e}");
                node.forgotten_while_leaving().await;
            }
            Err(e) if status_is(&e, StatusCode::NOT_FOUND) => {
                if let Err(e) = node.reregister().await {
                    tracing::warn!("re-registering failed: {e}");
                }
            }
            Err(e) => {
                if failures.is_multiple_of(20) {
                    tracing::warn!(
                        "heartbeat failed ({} in a row), serving with the last known membership: {e}",
                        failures + 1
                    );
                }
                failures += 1;
            }
        }
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
