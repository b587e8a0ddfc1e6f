//! Coordinating reads and writes of one key across its replicas (Dynamo-style, leaderless).
//!
//! A write gets a version from the coordinator's hybrid clock and goes, in parallel, to every node
//! in the key's write set: its N replicas on the read ring plus any node joining into (or taking
//! over) the range. The client is answered after W replica acknowledgements plus one from each such
//! pending node, so a range being moved never misses an acknowledged write. Replicas that did not
//! answer in time still get the write in the background, and one that fails leaves a hint with the
//! coordinator for later delivery.
//!
//! A read asks R of the key's replicas (itself first, when it is one) and answers with the highest
//! version among them. An answer counts towards R only if it is complete: its replica holds every
//! acknowledged write of the key. It does once a full anti-entropy round ran since the view last
//! changed; before that, if it held the key in the view it is complete from (its last such
//! round's, its join's end, or its start as a new cluster's first member) and in every view
//! since. A replica that gained the key through the change does not (the next node on the ring,
//! when the seed expires a member, copies the key only in its round): see `settled.rs`.
//! A complete "not found" is still weak in general: one that missed a write says "not found", and
//! R = 1 must still find an acknowledged write. It is strong when R + W > N (any R replicas
//! include one that acknowledged every acknowledged write). A tombstone, or a value expired by
//! this node's clock, is a "not found" too. R complete answers that are live values or strong
//! "not found"s decide; so do N − W + 1 complete answers of any kind, which share a replica with
//! every write quorum (R = 1 and W = 2 of 3: two complete "not found"s decide without the third
//! replica, which may be stalled); otherwise the read asks all replicas and decides once every
//! one has answered. A replica that takes much longer than it usually does (see `latency.rs`) gets
//! company: the read asks the next replica too, so a paused node costs a read a few
//! milliseconds, not the request timeout. Any answering replica that
//! returned an older version or nothing is repaired in the background.
//!
//! Versions come from hybrid clocks, so a coordinator whose wall clock lags can stamp a write
//! lower than an earlier, already acknowledged write of the same key stamped by a node whose clock
//! runs ahead. Under plain last-write-wins the later write would silently lose. So a replica that
//! holds a newer version than a client write answers "superseded" with that version instead of
//! applying it, and the coordinator stamps the write above it and sends it again; a write counts
//! as acknowledged only once W replicas applied the version it ends with. With W + W > N, any
//! write quorum shares a replica with the earlier write's, so a write that starts after another
//! was acknowledged always ends above it, whatever the clocks say. That needs each of the W to
//! have held the key all along: a replica that gained it through a view change may lack the
//! earlier write, so only complete replicas count towards W, as towards R (`votes.rs`).
//!
//! A value may carry an expiry deadline. Replicas answer what they store, expired or not, and the
//! coordinator judges the newest version by its own wall clock: an expired value reads as
//! absent, whatever the expiry sweep (`expiry.rs`) has done on each replica so far. Read repair
//! sends a stale replica the tombstone an expired value becomes, not its bytes.
//!
//! A replica that has seen a newer membership epoch refuses with "stale epoch"; the coordinator
//! then refreshes its view and re-plans, so a write never lands only on nodes that already handed
//! the range away.

use std::sync::Arc;

use bytes::Bytes;
use dkv_membership::{NodeId, Topology};
use dkv_placement::key_hash;
use dkv_storage::{Entry, Version};

use crate::error::{NodeError, PeerError};
use crate::life::state::Node;
use crate::life::stats::bump;
use crate::replication::batch::Charged;
use crate::replication::consistency::Level;
use crate::replication::quorum::{quorum_hedged, Enough, Hedge, QuorumError, Weight};
use crate::replication::shape::Shape;
use crate::replication::votes::{Ballot, Counted, Needed, Votes};
use crate::transport::peer::is_stale_epoch;
use crate::transport::wire::{ApplyKind, KeyEntry, ReadResponse};

/// Re-plans after a "stale epoch" answer before giving up.
const STALE_RETRIES: usize = 3;
/// Re-stamps after "superseded" answers before giving up (each one stamps above every version
/// seen, so only a stream of concurrent writers to the same key can use them up).
const SUPERSEDED_RETRIES: usize = 5;

impl Node {
    /// Write `value` (or a tombstone for `None`) under a fresh version, expiring at `expires` (ms
    /// since the Unix epoch) if given; `w` overrides the default write quorum.
    pub async fn coordinate_write(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        expires: Option<u64>,
        w: Option<Level>,
    ) -> Result<(), NodeError> {
        if let Some(why) = self.clock_refusal() {
            return Err(NodeError::Unavailable(why));
        }
        self.lease_held()?;
        let hash = key_hash(&key);
        let expires = expires.filter(|_| value.is_some());
        let entry = Entry { version: Version { ts: self.hlc.now(), node: self.me.0 }, value, expires };
        let kv = KeyEntry { key, entry };
        if w.is_none() {
            let _writes = self.fence.enter();
            if self.with_topology(|t| t.sole_replica(hash)) == Some(self.me) {
                // One copy, nothing moving: no fan-out machinery on the hot path. A fresh version
                // is not stored only below one held (stamped by a clock ahead of this one, or
                // before a restart on a clock since stepped back): the write goes the replicated
                // way, which stamps it above the one held, rather than be acknowledged and lost.
                if self.apply_one(hash, kv.clone()).await? {
                    return Ok(());
                }
            }
        }
        Box::pin(self.write_to_replicas(hash, kv, w)).await
    }

    async fn write_to_replicas(&self, hash: u64, kv: KeyEntry, w: Option<Level>) -> Result<(), NodeError> {
        // Copied: the replica calls still running when the quorum is reached outlive the request
        // (up to the request timeout, for a stalled replica).
        let mut kv = kv.detached();
        let (mut stale_left, mut superseded_left) = (STALE_RETRIES, SUPERSEDED_RETRIES);
        loop {
            let (result, pending) = {
                let _writes = self.fence.enter();
                let topo = self.topology();
                let p = topo.placement(hash);
                if p.write.is_empty() {
                    return Err(NodeError::Unavailable(
                        "no node owns this key: the cluster has no serving members".into(),
                    ));
                }
                let w = resolve(w, self.config.write_quorum, p.read.len(), "w")?;
                let needed = Needed { applied: w + (p.write.len() - p.read.len()), complete: w };
                let result = self.send_write(&topo, &p.write, needed, &kv).await;
                (result, p.write[p.read.len()..].to_vec())
            };
            let error = match result {
                Ok(Counted::Acknowledged) => return Ok(()),
                Ok(Counted::AcknowledgedIncomplete) => {
                    bump(&self.stats.incomplete_acks);
                    return Ok(());
                }
                Ok(Counted::Superseded(newest)) => {
                    // Fewer than W replicas took this version: some hold a newer one. Stamp the
                    // write above the newest of them and send it again, so the client is told
                    // of a version that W replicas applied (see the module doc).
                    let max = self.max_clock_offset_ms();
                    if let Err(ahead) = self.hlc.follow(newest.ts, self.cluster_clock_ms(), max) {
                        // Stamped by a clock that is off (stored by a hint, a move or anti-entropy,
                        // which take such entries). Stamping above it would drag this clock that far
                        // ahead, and the replicas would refuse the write as too far ahead anyway.
                        bump(&self.stats.clock_refusals);
                        return Err(NodeError::ClockAhead(format!(
                            "a replica holds a version of this key {ahead} ms ahead of this node's clock (more than \
                             --max-clock-offset {max} ms), written by a node whose clock was off: no write stamped \
                             by a correct clock can supersede it until that time"
                        )));
                    }
                    if superseded_left == 0 {
                        return Err(NodeError::Unavailable(format!(
                            "write kept being superseded by newer versions of the key ({newest:?}); retry"
                        )));
                    }
                    superseded_left -= 1;
                    bump(&self.stats.restamped);
                    kv.entry.version = Version { ts: self.hlc.now(), node: self.me.0 };
                    continue;
                }
                Err(error) => error,
            };
            if stale_left > 1 && stale(&error) {
                stale_left -= 1;
                self.refresh().await;
                continue;
            }
            // A node moving into the range must take every write, so one that fails fails the
            // write however many replicas took it: say so, or the error reads like a lost quorum.
            // Not acknowledged is not undone: the replicas that applied it keep it, and a later
            // read may return it (found surprising by trying, 2026-12-06). Retrying is safe.
            let what = match error.failures.iter().find(|(id, _)| pending.contains(id)) {
                Some((id, _)) => format!(
                    "write not acknowledged (the replicas that took it keep it; a retry is safe): node {id} is taking \
                     over this key's range and must take every write until it has; a joining node that cannot be \
                     reached gives up after its --join-timeout"
                ),
                None => "write not acknowledged (the replicas that took it keep it; a retry is safe)".into(),
            };
            return Err(NodeError::Quorum { what, error });
        }
    }

    /// Send `kv` to every node of `targets`, its own copy applied here when this node is one,
    /// and count their answers (see `votes.rs`).
    async fn send_write(
        &self,
        topo: &Topology,
        targets: &[NodeId],
        needed: Needed,
        kv: &KeyEntry,
    ) -> Result<Counted, QuorumError> {
        let votes = Votes::new(kv.clone());
        for &id in targets.iter().filter(|&&id| id != self.me) {
            // No latency sample here: writes go to every replica and are never hedged, and a
            // sample costs a lock on the hottest path.
            match self.addr_of(topo, id) {
                Ok(addr) => {
                    self.write_batches.queue(self, addr, topo.epoch(), kv.clone(), Ballot::new(votes.clone(), id))
                }
                Err(e) => votes.cast(self, id, Err(e)),
            }
        }
        let here = targets.contains(&self.me).then_some(async {
            let here = |status, message| PeerError::Refused { addr: "this node".into(), status, message };
            let answer = match self.apply_write(votes.write().clone()).await {
                Ok(outcome) => outcome.into_result().map_err(|(status, message)| here(status, message)),
                Err(e) => Err(here(e.status().as_u16(), e.to_string())),
            };
            votes.cast(self, self.me, answer);
        });
        votes.count(here, targets, needed, self.config.request_timeout).await
    }

    /// The newest live value of `key` with its deadline, or `None` if absent, deleted or expired
    /// (by this node's clock); `r` overrides the default read quorum. Of the shape `S`: the value
    /// ([`Found`](crate::transport::wire::Found), `S` = [`Entry`]) or only its length ([`Length`](crate::transport::wire::Length),
    /// `S` = [`Head`](crate::transport::wire::Head)). A read of a key whose only copy is here does
    /// not come this way: the router sends it to [`Node::read_alone`].
    pub async fn coordinate_read<S: Shape>(&self, key: Bytes, r: Option<Level>) -> Result<Option<S::Live>, NodeError> {
        self.lease_held()?;
        Box::pin(self.read_from_replicas::<S>(key_hash(&key), key, r)).await
    }

    /// The read of a key whose only copy is this node's, nothing moving (the router said so).
    pub fn read_alone<S: Shape>(&self, hash: u64, key: &[u8]) -> Result<Option<S::Live>, NodeError> {
        self.lease_held()?;
        Ok(self.engine.get(hash, key)?.and_then(|e| self.live(S::of(e))))
    }

    /// An error while this node may have been removed by the seed without knowing it (see
    /// `life/lease.rs`): its view may give keys to it that are no longer its.
    pub fn lease_held(&self) -> Result<(), NodeError> {
        match self.lease.refusal() {
            None => Ok(()),
            Some(why) => Err(NodeError::Unavailable(why)),
        }
    }

    /// What a read answers for `held`: its value (or length) and deadline, unless it is deleted
    /// or expired.
    fn live<S: Shape>(&self, held: S) -> Option<S::Live> {
        // The clock is read only for a value with a deadline: most have none. Expired as
        // `Entry::is_expired_at` says: once the clock is past the deadline.
        match held.expires().is_some_and(|t| self.cluster_wall_ms() > t) {
            true => None,
            false => held.live(),
        }
    }

    async fn read_from_replicas<S: Shape>(
        &self,
        hash: u64,
        key: Bytes,
        r: Option<Level>,
    ) -> Result<Option<S::Live>, NodeError> {
        // Copied, as in `write_to_replicas`: hedged reads and repairs may outlive the request.
        let key = Bytes::copy_from_slice(&key);
        for attempt in 1..=STALE_RETRIES {
            let topo = self.topology();
            let mut replicas = topo.placement(hash).read;
            if replicas.is_empty() {
                return Err(NodeError::Unavailable("no node owns this key: the cluster has no serving members".into()));
            }
            let needed = resolve(r, self.config.read_quorum, replicas.len(), "r")?;
            // Ask R replicas first, this node among them when it is one; only if one of them fails
            // or answers a "not found" that does not decide, ask them all.
            if let Some(i) = replicas.iter().position(|&id| id == self.me) {
                replicas[..=i].rotate_right(1);
            }
            // Replicas silent for longer than they usually take go last (see `latency.rs`; never
            // this node, which it does not time), and the hedge waits for the first R as long as
            // the slowest of them usually takes.
            let after = self.latencies.plan(&mut replicas, |&id| id, needed);
            let enough = Enough {
                decisive: needed,
                complete: complete_enough(needed, self.config.write_quorum, replicas.len()),
            };
            let strong = enough.complete <= needed;
            // A tombstone or an expired value reads as "not found" and is as weak as one: the
            // replica may have missed the write that came after it (found by reading,
            // 2026-12-07: `r=1` through a replica holding the key's old tombstone answered 404
            // for a value W replicas had acknowledged since).
            // The clock is read only for a weak read's value with a deadline, as in `live`.
            let live = |e: &S| e.is_value() && e.expires().is_none_or(|t| self.cluster_wall_ms() <= t);
            let decides = |a: &Charged<ReadResponse<S>>| match a.settled {
                true if strong || a.entry.as_ref().is_some_and(live) => Weight::Decides,
                true => Weight::Complete,
                false => Weight::Weak,
            };
            let call = |id| self.tasks.track_future(self.clone().read_on::<S>(topo.clone(), id, key.clone()));
            // Ask R replicas; ask another when one fails, answers what does not decide (an
            // incomplete answer, or a weak "not found"), or takes much longer than it usually
            // does (it may be stalled).
            let hedge = Hedge { first: needed, after, counter: &self.stats.hedged };
            let timeout = self.config.request_timeout;
            let result = quorum_hedged(&replicas, enough, timeout, Some(hedge), decides, call).await;
            match result {
                Ok(answers) => {
                    if answers.iter().filter(|(_, a)| a.settled).count() < needed {
                        // Decided once every replica answered or failed, or at the deadline.
                        bump(&self.stats.incomplete_reads);
                    }
                    let seen: Vec<(NodeId, Option<Version>)> =
                        answers.iter().map(|(id, a)| (*id, a.entry.as_ref().map(S::version))).collect();
                    // Of equal versions, a value before its own tombstone: a replica whose clock
                    // runs a little ahead may have swept it already, and this clock decides.
                    // Found by its place and then moved out: a clone of a value read from the
                    // wire or the store would allocate its reference count.
                    let newest = (answers.iter().enumerate())
                        .filter_map(|(i, (_, a))| a.entry.as_ref().map(|e| (i, e)))
                        .max_by_key(|(_, e)| (e.version(), e.is_value()));
                    let Some((i, newest)) = newest else { return Ok(None) };
                    S::repair(self, &topo, &key, answers[i].0, newest, seen);
                    let mut answers = answers;
                    return Ok(answers.swap_remove(i).1.answer.entry.and_then(|e| self.live(e)));
                }
                Err(e) if attempt < STALE_RETRIES && stale(&e) => self.refresh().await,
                Err(error) => return Err(NodeError::Quorum { what: "read failed".into(), error }),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Read repair: send `newest` to every replica in `seen` that answered something older.
    pub(crate) fn repair(&self, topo: &Arc<Topology>, key: &Bytes, newest: &Entry, seen: &[(NodeId, Option<Version>)]) {
        let expired;
        let newest = match newest.expires.is_some() && newest.is_expired_at(self.cluster_wall_ms()) {
            true => {
                // The replica's own sweep would make this of the value anyway: send no bytes.
                expired = newest.clone().expired();
                &expired
            }
            false => newest,
        };
        for &(id, version) in seen {
            if version.is_some_and(|v| v >= newest.version) {
                continue;
            }
            bump(&self.stats.read_repairs);
            let (node, topo) = (self.clone(), topo.clone());
            let kv = KeyEntry { key: key.clone(), entry: newest.clone() };
            self.tasks.spawn(async move {
                if let Err(e) = node.apply_on(&topo, id, ApplyKind::Repair, vec![kv]).await {
                    tracing::debug!("read repair of node {id} failed: {e}");
                }
            });
        }
    }

    /// What replica `id` holds for `key`, of the shape `S`, a large value charged to
    /// `--max-client-memory` from its arrival (or its copy out of this node's store) until the
    /// answer is dropped: see [`Charged`].
    pub(crate) async fn read_on<S: Shape>(
        self,
        topo: Arc<Topology>,
        id: NodeId,
        key: Bytes,
    ) -> Result<Charged<ReadResponse<S>>, PeerError> {
        if id == self.me {
            let hash = key_hash(&key);
            let (read, settled) = self.read_complete(&[hash], || self.engine.get(hash, &key));
            return match read {
                Ok(entry) => {
                    let read = ReadResponse { entry: entry.map(S::of), settled };
                    let bytes = read.entry.as_ref().map_or(0, S::bytes);
                    Charged::of(&self, "this node", read, bytes)
                }
                Err(e) => Err(PeerError::Refused { addr: "this node".into(), status: 500, message: e.to_string() }),
            };
        }
        let addr = self.addr_of(&topo, id)?;
        let asked = self.latencies.asked(id);
        let answer = S::batches(&self).send(&self, addr, topo.epoch(), key).await;
        // A refusal is an answer too: the peer is not silent.
        if answer.is_ok() || matches!(answer, Err(PeerError::Refused { .. })) {
            self.latencies.answered(id, asked);
        }
        answer
    }

    pub fn addr_of<'t>(&self, topo: &'t Topology, id: NodeId) -> Result<&'t str, PeerError> {
        topo.member(id).map(|m| m.addr.as_str()).ok_or_else(|| PeerError::Unreachable {
            addr: id.to_string(),
            reason: "not a member of the current view".into(),
        })
    }
}

/// Answers needed: an explicit level (an error if it exceeds the replicas), else the configured
/// default capped at the replicas the key has.
fn resolve(level: Option<Level>, default: usize, replicas: usize, name: &str) -> Result<usize, NodeError> {
    match level {
        Some(l) => l.needed(replicas, name),
        None => Ok(default.clamp(1, replicas.max(1))),
    }
}

/// Complete answers of any kind that decide a read of `needed` answers among `replicas`, whose
/// writes are acknowledged by `write_quorum`: as many as meet every write quorum (N − W + 1), at
/// least `needed`. With R + W > N that is R, and every complete answer decides.
pub(crate) fn complete_enough(needed: usize, write_quorum: usize, replicas: usize) -> usize {
    let w = write_quorum.clamp(1, replicas.max(1));
    needed.max(replicas + 1 - w)
}

fn stale(e: &QuorumError) -> bool {
    e.failures.iter().any(|(_, f)| is_stale_epoch(f))
}

#[cfg(test)]
mod tests {
    use dkv_membership::{NodeId, NodeState, Topology, View};
    use dkv_storage::{Entry, Hlc, Version};

    use crate::error::NodeError;
    use crate::life::state::Node;
    use crate::testing;
    use crate::transport::wire::Head;

    /// A large value read from a replica (this node's copy of it too) is charged to the client
    /// memory budget while the read holds it: with the budget taken, the read fails and says so,
    /// and it holds nothing once it ends (a client's pipelined reads of 16 MiB values held GBs
    /// beside a 1 GiB budget).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_value_read_from_the_replicas_is_charged_to_the_client_memory_budget() {
        let mut config = testing::config();
        config.limits.max_client_memory = 8 << 20;
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], config).await;
        let big = testing::value(7, 3 << 20);
        for n in &nodes {
            testing::put_local(n, b"big", big.clone());
        }
        let a = &nodes[0];
        let held = a.guard.charge(4 << 20).expect("room");
        let err = a.coordinate_read::<Entry>("big".into(), None).await.expect_err("no room for the replica's answer");
        assert!(err.to_string().contains("--max-client-memory"), "{err}");
        drop(held);
        // The failed read may end before the other replica's answer has arrived and been let
        // go (the clean-clone CI of 2026-12-06 found 6 MiB still held): that answer, charged
        // too, is given back when it lands. It may also land only after the budget was seen
        // empty, and hold 3 MiB while the next read takes 6 (the clean-clone CI of 2026-12-07):
        // the read succeeds once it has.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            match a.coordinate_read::<Entry>("big".into(), None).await {
                Ok(found) => break found.expect("found"),
                Err(e) => assert!(std::time::Instant::now() < deadline, "no room again within 10 s: {e}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        assert_eq!(found.value.len(), 3 << 20);
        assert_eq!(a.guard.charged(), 0, "nothing held once the read ended");
    }

    /// A replica that holds a version a year ahead (stamped by a node whose clock was off, brought
    /// by anti-entropy) supersedes a client write. The coordinator refuses at once and says why,
    /// rather than stamping above it: that would drag its clock a year ahead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_superseded_by_a_version_a_year_ahead_is_refused_and_drags_no_clock() {
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        let year = 365 * 86_400_000;
        let far = Entry::value(Version { ts: Hlc::ts_at_ms(a.hlc.wall_ms() + year), node: 2 }, "x".into());
        testing::put_local(b, b"far", far.clone());
        let err = a.coordinate_write("far".into(), Some("y".into()), None, None).await.unwrap_err();
        assert!(matches!(err, NodeError::ClockAhead(_)), "{err:?}");
        assert!(err.to_string().contains("ahead of this node's clock"), "{err}");
        let clock = Hlc::ms_of(a.hlc.now());
        assert!(clock < a.hlc.wall_ms() + year / 2, "the clock stays near the wall clock, not a year ahead");
        assert_eq!(testing::local(b, b"far"), Some(far), "the version ahead stays");
        assert_eq!(a.stats.restamped.load(std::sync::atomic::Ordering::Relaxed), 0, "nothing re-stamped");
    }

    /// The sole replica of a key holds a version above this node's clock: one within
    /// --max-clock-offset ahead, or one from before a restart on a clock since stepped back. A
    /// write through the one-copy path is stamped above it and stored, not acknowledged and
    /// dropped as older; one a year ahead is refused, as on the replicated path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sole_replica_holding_a_newer_version_does_not_drop_a_write_it_acknowledges() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0];
        let hash = dkv_placement::key_hash(b"k");
        assert_eq!(a.with_topology(|t| t.sole_replica(hash)), Some(a.me), "the one-copy path");
        let ahead = Entry::value(Version { ts: Hlc::ts_at_ms(a.hlc.wall_ms() + 200), node: 2 }, "old".into());
        testing::put_local(a, b"k", ahead.clone());
        a.coordinate_write("k".into(), Some("new".into()), None, None).await.expect("written");
        let held = testing::local(a, b"k").expect("held");
        assert_eq!(held.value.as_deref(), Some(&b"new"[..]), "the acknowledged write is what the key holds");
        assert!(held.version > ahead.version);

        let year = 365 * 86_400_000;
        let far = Entry::value(Version { ts: Hlc::ts_at_ms(a.hlc.wall_ms() + year), node: 2 }, "far".into());
        testing::put_local(a, b"k", far.clone());
        let err = a.coordinate_write("k".into(), Some("y".into()), None, None).await.unwrap_err();
        assert!(matches!(err, NodeError::ClockAhead(_)), "{err:?}");
        assert_eq!(testing::local(a, b"k"), Some(far));
    }

    /// A write answered at its quorum still reaches the replica that had not answered by then,
    /// and one to a replica that is down leaves a hint for it: the batches carry them to the end,
    /// with no task of the coordinator's (see `votes.rs`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_reaches_every_replica_after_its_quorum_and_leaves_a_hint_for_one_that_is_down() {
        let mut nodes = testing::cluster(&[NodeState::Normal; 3], testing::config()).await;
        let until = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}: not within 10 s");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        nodes[0].coordinate_write("k".into(), Some("v".into()), None, None).await.expect("written");
        until("all three replicas hold the write", &|| nodes.iter().all(|n| testing::local(n, b"k").is_some()));
        assert!(nodes[0].hints.targets().is_empty(), "no hint while every replica answers");

        let down_id = testing::stop_last(&mut nodes);
        nodes[0].coordinate_write("j".into(), Some("w".into()), None, None).await.expect("two of three");
        assert!(testing::local(&nodes[1], b"j").is_some());
        until("a hint kept for the node that is down", &|| nodes[0].hints.targets() == [down_id]);
    }

    /// A replica that refuses a write as of a view it has left, while the others acknowledge it,
    /// gets a hint: it may still replicate the key in its newer view (here: the same members).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_ahead_of_the_coordinators_view_gets_a_hint_for_the_write_it_refused() {
        let nodes = testing::cluster(&[NodeState::Normal; 3], testing::config()).await;
        let mut view = nodes[2].topology().view.clone();
        view.epoch += 1;
        nodes[2].adopt(view);
        assert_eq!(nodes[2].epoch(), nodes[0].epoch() + 1);
        nodes[0].coordinate_write("k".into(), Some("v".into()), None, None).await.expect("two of three");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while nodes[0].hints.targets() != [nodes[2].me] {
            assert!(std::time::Instant::now() < deadline, "no hint for the replica that refused");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(testing::local(&nodes[2], b"k"), None, "refused as stale");
    }

    /// A read judges a value's deadline by the cluster's clock too: through a node judged two
    /// hours behind, a value with an hour left has expired.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_judges_deadlines_by_the_clusters_clock() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0];
        let now = a.hlc.wall_ms();
        let mut entry = Entry::value(Version { ts: Hlc::ts_at_ms(now), node: 1 }, "v".into());
        entry.expires = Some(now + 3_600_000);
        testing::put_local(a, b"k", entry);
        let hash = dkv_placement::key_hash(b"k");
        assert!(a.read_alone::<Entry>(hash, b"k").unwrap().is_some(), "an hour left");
        assert!(a.read_alone::<Head>(hash, b"k").unwrap().is_some(), "an hour left, by the head");
        a.set_clock_off(Some(crate::life::clock::Off { why: "behind".into(), offset_ms: -7_200_000 }));
        assert!(a.read_alone::<Entry>(hash, b"k").unwrap().is_none(), "expired an hour ago in the cluster's time");
        assert!(a.read_alone::<Head>(hash, b"k").unwrap().is_none(), "expired, by the head too");
    }

    /// Four settled nodes, and a key of nodes 1, 2 and 3 that node 4 gains once the seed expires
    /// node 1 (of the other replicas, node 4 then asks node 2 first); with the view without node 1.
    async fn a_key_node_4_gains_by_an_expiry() -> (Vec<testing::TestNode>, String, View) {
        let nodes = testing::cluster(&[NodeState::Normal; 4], testing::config()).await;
        for n in &nodes {
            n.mark_settled(&n.topology());
        }
        let before = nodes[0].topology();
        let mut view = before.view.clone();
        view.epoch += 1;
        view.nodes.retain(|m| m.id != NodeId(1));
        let after = Topology::new(view.clone(), NodeId(4), 3);
        let key = (0..10_000)
            .map(|i| format!("k{i}"))
            .find(|k| {
                let hash = dkv_placement::key_hash(k.as_bytes());
                let read = after.placement(hash).read;
                !before.is_read_replica(NodeId(4), hash) && read.iter().find(|&&id| id != NodeId(4)) == Some(&NodeId(2))
            })
            .expect("such a key");
        (nodes, key, view)
    }

    /// Node 1 goes, and the others adopt `view`, which the seed made without it.
    fn expire_node_1(nodes: &mut Vec<testing::TestNode>, view: &View) {
        drop(nodes.remove(0));
        for n in nodes.iter() {
            n.adopt(view.clone());
        }
    }

    /// A round that ends while a read runs vouches for nothing the read found before it ended:
    /// the key it copied in may have been absent when the read looked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_that_ends_during_a_read_does_not_vouch_for_it() {
        let (mut nodes, key, view) = a_key_node_4_gains_by_an_expiry().await;
        let hash = dkv_placement::key_hash(key.as_bytes());
        expire_node_1(&mut nodes, &view);
        let gained = &nodes[2];
        assert!(!gained.settled_for(hash), "node 4 gained the key by the expiry");
        let (_, complete) = gained.read_complete(&[hash], || gained.mark_settled(&gained.topology()));
        assert!(!complete, "the round ended during the read");
        assert!(gained.read_complete(&[hash], || ()).1, "a read after the round is complete");
    }

    /// The seed expired node 1. Node 4, next on the ring, replicates its keys from then on, with
    /// none of their data yet (it holds an older copy of one, as a node that replicated it before
    /// may). Node 2 missed the last write of that key, acknowledged by nodes 1 and 3. Node 4's
    /// answer must not count towards R until a round settles it: with node 2's, which it asks
    /// first, it would make R = 2 answers that both hold the older value.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_gained_a_key_by_an_expiry_counts_towards_r_only_once_settled() {
        let (mut nodes, key, view) = a_key_node_4_gains_by_an_expiry().await;
        let hash = dkv_placement::key_hash(key.as_bytes());
        let (older, newer) = (testing::value(10, 8), testing::value(20, 8));
        testing::put_local(&nodes[0], key.as_bytes(), newer.clone());
        testing::put_local(&nodes[1], key.as_bytes(), older.clone());
        testing::put_local(&nodes[2], key.as_bytes(), newer.clone());
        testing::put_local(&nodes[3], key.as_bytes(), older);
        expire_node_1(&mut nodes, &view);
        assert!(nodes[0].settled_for(hash), "node 2 replicated the key all along");
        assert!(!nodes[2].settled_for(hash), "node 4 gained it by the expiry");
        let incomplete = |n: &Node| n.stats.incomplete_reads.load(std::sync::atomic::Ordering::Relaxed);

        let read = nodes[2].coordinate_read::<Entry>(key.clone().into(), None).await.expect("a read");
        assert_eq!(read.map(|f| f.value), newer.value, "the acknowledged write, from node 3");
        assert_eq!(incomplete(&nodes[2]), 0, "decided by nodes 2 and 3, both complete");

        // A second fault: node 3 goes too. The read is decided once every replica answered or
        // failed, on node 2's complete answer and node 4's incomplete one, and counted.
        drop(nodes.remove(1));
        let gained = &nodes[1];
        let read = gained.coordinate_read::<Entry>(key.clone().into(), None).await;
        assert!(read.is_ok(), "{read:?}");
        assert_eq!(incomplete(gained), 1);

        gained.mark_settled(&gained.topology());
        assert!(gained.settled_for(hash), "a round under the new view settles it");
    }

    /// The seed expired node 1. Node 4, next on the ring, replicates its keys from then on, with
    /// none of their data yet. The last write of a key, acknowledged by nodes 1 and 3, was stamped
    /// by a clock running ahead; node 2 missed it. A write through node 4, whose clock lags,
    /// stamps below it: nodes 4 and 2 apply it, and only node 3 can say "superseded". Node 4's
    /// acknowledgement must not count towards W until a round settles it, or the write would be
    /// acknowledged and then lose to the earlier one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_acknowledged_by_a_replica_that_gained_the_key_counts_towards_w_only_once_settled() {
        let (mut nodes, key, view) = a_key_node_4_gains_by_an_expiry().await;
        let ahead = Hlc::ts_at_ms(nodes[3].hlc.wall_ms() + 200); // within --max-clock-offset
        let acknowledged = Entry::value(Version { ts: ahead, node: 1 }, "acknowledged".into());
        testing::put_local(&nodes[0], key.as_bytes(), acknowledged.clone());
        testing::put_local(&nodes[2], key.as_bytes(), acknowledged);
        expire_node_1(&mut nodes, &view);
        let gained = &nodes[2];
        assert!(!gained.settled_for(dkv_placement::key_hash(key.as_bytes())), "node 4 gained the key");

        gained.coordinate_write(key.clone().into(), Some("later".into()), None, None).await.expect("written");
        let restamped = gained.stats.restamped.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(restamped, 1, "stamped above the version node 3 holds, once node 3 answered");
        let incomplete = gained.stats.incomplete_acks.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(incomplete, 0, "acknowledged by nodes 2 and 3, both complete");
        assert_eq!(testing::local(&nodes[1], key.as_bytes()).and_then(|e| e.value), Some("later".into()));
        let read = gained.coordinate_read::<Entry>(key.into(), None).await.expect("a read");
        assert_eq!(read.map(|f| f.value), Some("later".into()), "the acknowledged write reads back");
    }
}
