//! Storing writes on this node: the replica's side of every write path.
//!
//! A client write (`apply_write`, or `apply_writes` for a coordinator's batch) is judged before it
//! is stored: a version too far ahead of this node's clock is refused (it would drag every clock
//! it reaches ahead), and one older than the version held answers "superseded" with that version,
//! so the coordinator stamps the write above it (see `coordinator.rs`). One it applied says whether
//! this node holds every acknowledged write of the key (`settled.rs`): only then does it count
//! towards W, since only then would an older version have been answered "superseded" (asked
//! before and after the store, so that a round ending in between vouches for nothing it did not
//! hold when it judged). Entries that were already
//! acknowledged — hints, read repairs, range movement, anti-entropy — go through `apply_local` and
//! keep plain "newest wins".
//!
//! Either way an entry folds its version into the hybrid clock (but not past
//! `--max-clock-offset` ahead of the wall clock), a tombstone past its grace period that would
//! replace nothing live is dropped rather than stored again, and the call returns once the entries
//! are durable under the `--fsync` policy (`life/durability.rs`). Large batches are stored off the
//! async runtime.

use dkv_membership::{NodeId, Topology};
use dkv_placement::key_hash;
use dkv_storage::{Applied, Entry, Hlc, Version};

use crate::error::{NodeError, PeerError};
use crate::life::state::Node;
use crate::life::stats::bump;
use crate::replication::batch::prefetching;
use crate::transport::wire::{self, ApplyKind, ApplyReply, ApplyRequest, KeyEntry, Kind, WriteOutcome};

/// Whether `held` is `written` stored: the same contents, or, for a value with a deadline, the
/// tombstone it became once expired (which keeps the deadline; a delete's has none).
fn same_write(held: &Entry, written: &Entry) -> bool {
    held.expires == written.expires && (held.value == written.value || (held.value.is_none() && held.expires.is_some()))
}

/// Key and value bytes from which a batch is stored off the async runtime.
const BLOCKING_BATCH: usize = 256 << 10;

/// Clock readings a batch of stores takes at most once each, and only if an entry needs them.
#[derive(Default)]
struct Readings {
    purge_before: Option<u64>,
    /// The cluster's clock as this node measured it ([`Node::cluster_clock_ms`]).
    cluster_clock: Option<u64>,
}

impl Node {
    /// Apply a client write here, unless this node holds a newer version of the key: then answer
    /// that version, so the coordinator stamps the write above it. (Hints, repairs, anti-entropy
    /// and movement carry versions that were already acknowledged: they keep "newest wins".)
    pub async fn apply_write(&self, kv: KeyEntry) -> Result<WriteOutcome, NodeError> {
        // One write, the coordinator's own share of every client write: no vectors of outcomes.
        if let Some(refused) = self.ahead_of_clock(kv.entry.version, self.cluster_clock_ms()) {
            return Ok(refused);
        }
        let (key, written, hash) = (kv.key.clone(), kv.entry.clone(), key_hash(&kv.key));
        let complete = self.settled_for(hash);
        let stored = self.apply_one(hash, kv).await?;
        let complete = complete && self.settled_for(hash);
        match stored {
            true => Ok(WriteOutcome::Applied { complete }),
            false => self.held_instead(&key, &written, complete),
        }
    }

    /// [`Node::apply_write`] for each of `entries`, stored together: one outcome per entry, in
    /// order. An error is one that concerns them all (the store failed).
    pub async fn apply_writes(&self, entries: Vec<KeyEntry>) -> Result<Vec<WriteOutcome>, NodeError> {
        let mut outcomes = Vec::with_capacity(entries.len());
        // What each accepted write was, to find a newer version held instead when it was not
        // stored, and whether this node was complete for its key before the store.
        let mut accepted = Vec::with_capacity(entries.len());
        let mine = self.cluster_clock_ms();
        let entries: Vec<KeyEntry> = entries
            .into_iter()
            .filter(|kv| match self.ahead_of_clock(kv.entry.version, mine) {
                Some(refused) => {
                    outcomes.push(refused);
                    false
                }
                None => {
                    let complete = self.complete_for_key(&kv.key);
                    accepted.push((outcomes.len(), kv.key.clone(), kv.entry.clone(), complete));
                    outcomes.push(WriteOutcome::Applied { complete });
                    true
                }
            })
            .collect();
        let mut stored = Vec::with_capacity(entries.len());
        self.store_and_wait(entries, |s| stored.push(s)).await?;
        for ((at, key, written, before), stored) in accepted.into_iter().zip(stored) {
            let complete = before && self.complete_for_key(&key);
            outcomes[at] = match stored {
                true => WriteOutcome::Applied { complete },
                false => self.held_instead(&key, &written, complete)?,
            };
        }
        Ok(outcomes)
    }

    /// [`Node::settled_for`] the key, its hash computed only while the node is not settled (the
    /// steady state asks one atomic).
    fn complete_for_key(&self, key: &[u8]) -> bool {
        self.settled() || self.settled_for(key_hash(key))
    }

    /// The refusal of a write stamped `version`, if that is too far ahead of the cluster's clock
    /// as we measured it (`mine`, ms: [`Node::cluster_clock_ms`]): it would drag our clock, and
    /// every clock it reaches, ahead.
    fn ahead_of_clock(&self, version: Version, mine: u64) -> Option<WriteOutcome> {
        let max = self.max_clock_offset_ms();
        let ahead = Hlc::too_far_ahead(version.ts, mine, max)?;
        bump(&self.stats.clock_refusals);
        let e = NodeError::ClockAhead(format!(
            "write version {ahead} ms ahead of the cluster's clock as this replica measured it (more than --max-clock-offset {max} ms): \
             the coordinator's clock is off"
        ));
        Some(WriteOutcome::Refused { status: e.status().as_u16(), message: e.to_string() })
    }

    /// The outcome of a write of `key` that was not stored: superseded by the newer version held,
    /// or applied already (the same write again). A tombstone past the grace period is dropped on
    /// purpose, and counts as applied too; `complete` as for a write that was stored.
    ///
    /// An equal version held with other contents is another write that got the same stamp: a
    /// coordinator restarted on a clock behind its last one (its clock had followed a peer's up
    /// to `--max-clock-offset` ahead, or the wall clock was stepped back) stamps again what it
    /// stamped before the restart. Answered "applied", the write was acknowledged and stored
    /// nowhere that held the first; so it is "superseded", and the coordinator stamps it above.
    fn held_instead(&self, key: &[u8], written: &Entry, complete: bool) -> Result<WriteOutcome, NodeError> {
        Ok(match self.engine.get(key_hash(key), key)? {
            Some(held) if held.version > written.version => WriteOutcome::Superseded(held.version),
            Some(held) if held.version == written.version && !same_write(&held, written) => {
                WriteOutcome::Superseded(held.version)
            }
            _ => WriteOutcome::Applied { complete },
        })
    }

    /// Store entries locally, folding their versions into our clock; returns once they are
    /// durable under the `--fsync` policy (see `durability.rs`), with how many were newer than
    /// what was stored.
    pub async fn apply_local(&self, entries: Vec<KeyEntry>) -> Result<usize, NodeError> {
        let mut stored = 0;
        self.store_and_wait(entries, |s| stored += usize::from(s)).await?;
        Ok(stored)
    }

    /// [`Node::apply_local`] of one entry whose key hashes to `hash`, without a vector: a client
    /// write's own copy, on its coordinator or a replica. Whether it was stored.
    pub async fn apply_one(&self, hash: u64, kv: KeyEntry) -> Result<bool, NodeError> {
        let stored = self.store_entry(hash, kv, &mut Readings::default())?;
        self.durability.wait().await?;
        Ok(stored)
    }

    /// [`Node::apply_local`], telling `each` for every entry, in order, whether it was stored.
    async fn store_and_wait(&self, entries: Vec<KeyEntry>, mut each: impl FnMut(bool)) -> Result<(), NodeError> {
        if entries.is_empty() {
            return Ok(());
        }
        // A batch's lookups are prefetched a few entries ahead; one entry is hashed as it is stored.
        let hashes: Vec<u64> =
            if entries.len() > 1 { entries.iter().map(|kv| key_hash(&kv.key)).collect() } else { Vec::new() };
        let store = |entries: Vec<KeyEntry>, each: &mut dyn FnMut(bool)| -> Result<(), NodeError> {
            let mut hashes = prefetching(&*self.engine, &hashes);
            let mut readings = Readings::default();
            for kv in entries {
                let hash = hashes.next().unwrap_or_else(|| key_hash(&kv.key));
                each(self.store_entry(hash, kv, &mut readings)?);
            }
            Ok(())
        };
        // A batch (a pulled page, a hand-off, hints, an anti-entropy bucket) is megabytes of
        // copying and journal writes: off the runtime. One client write is not worth the switch.
        let bytes: usize = entries.iter().map(KeyEntry::bytes).sum();
        if bytes >= BLOCKING_BATCH {
            tokio::task::block_in_place(|| store(entries, &mut each))?
        } else {
            store(entries, &mut each)?
        }
        self.durability.wait().await
    }

    /// Store one entry in the engine, unless it is a tombstone (or an expired value) past its
    /// grace period that replaces no live value here: already purged here or about to be,
    /// storing it again would only delay that. One that does replace a live value is stored, so
    /// the value goes (and the tombstone with the next purge). Whether it was stored (newer than
    /// the copy held).
    fn store_entry(&self, hash: u64, kv: KeyEntry, readings: &mut Readings) -> Result<bool, NodeError> {
        let KeyEntry { key, entry } = kv;
        if let Some(dead) = entry.dead_since() {
            if dead < *readings.purge_before.get_or_insert_with(|| self.purge_horizon()) {
                let held = self.engine.get(hash, &key)?;
                if !held.is_some_and(|held| held.value.is_some() && entry.supersedes(&held)) {
                    return Ok(false);
                }
            }
        }
        // The clock follows what it stores (a later write here is stamped above it), but not
        // past --max-clock-offset ahead of the cluster's clock as this node measured it: an entry stamped by a node whose
        // clock is off (a write its replicas refused, brought by a hint, a move or anti-entropy)
        // is stored, and drags no clock ahead, as a client write is refused. A version the clock
        // has reached already (every write stamped here) needs no wall-clock reading.
        if !self.hlc.has_reached(entry.version.ts) {
            let cluster_clock = *readings.cluster_clock.get_or_insert_with(|| self.cluster_clock_ms());
            let _ = self.hlc.follow(entry.version.ts, cluster_clock, self.max_clock_offset_ms());
        }
        // No copy of the value: `key` and the value may be slices of a larger network buffer,
        // but every engine stores its own copy (see `Engine::apply`).
        let deadline = entry.expires.is_some() && entry.value.is_some();
        let stored = self.engine.apply(hash, &key, entry)? == Applied::Stored;
        if stored && deadline {
            // Wakes the sweep if it waits for a value with a deadline.
            self.expiring_stored.notify_one();
        }
        Ok(stored)
    }

    /// Tombstones with versions below this are past their grace period, by the cluster's clock
    /// (see [`Node::cluster_wall_ms`]).
    pub fn purge_horizon(&self) -> u64 {
        let grace = self.config.tombstone_grace.as_millis() as u64;
        Hlc::ts_at_ms(self.cluster_wall_ms().saturating_sub(grace))
    }

    /// Apply entries on node `id` (locally when it is us), as a member of `topo`.
    ///
    /// Here as on a peer ([`internal.rs`](crate::transport::internal)), only while this node's
    /// view is `topo`'s, and inside the write fence: a hint a node delivered to itself by a view
    /// it had just left was stored after the drain of the new view and its hand-off pass, a copy
    /// of a key it no longer replicates, which nothing reads or compares and the next change,
    /// maybe days later, would hand on over a delete whose tombstone was purged meanwhile (found
    /// by reading, 2026-12-06).
    pub async fn apply_on(
        &self,
        topo: &Topology,
        id: NodeId,
        kind: ApplyKind,
        entries: Vec<KeyEntry>,
    ) -> Result<(), PeerError> {
        if id == self.me {
            let refused = |status, message| PeerError::Refused { addr: "this node".into(), status, message };
            let _writes = self.fence.enter();
            if self.epoch() != topo.epoch() {
                let message = format!("this node's view moved from epoch {} to {}", topo.epoch(), self.epoch());
                return Err(refused(wire::STATUS_STALE_EPOCH, message));
            }
            return self.apply_local(entries).await.map(|_| ()).map_err(|e| refused(500, e.to_string()));
        }
        let addr = self.addr_of(topo, id)?;
        // Large batches (hand-offs, hints of big values) go in pieces the receiver accepts.
        for entries in wire::split_batches(entries) {
            let req = ApplyRequest { epoch: topo.epoch(), kind, entries };
            self.peers.call::<_, ApplyReply>(addr, Kind::Apply, &req).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use dkv_membership::NodeState;
    use dkv_storage::{Entry, Hlc, Version};

    use crate::testing;
    use crate::transport::wire::{KeyEntry, WriteOutcome};

    /// A tombstone past its grace period is dropped where it would replace nothing live (it is
    /// purged there or about to be), but still deletes an older value: kept, that value would
    /// come back through anti-entropy once the others purged the tombstone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tombstone_past_its_grace_still_deletes_an_older_value() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0];
        let long_ago = a.hlc.wall_ms() - 2 * a.config.tombstone_grace.as_millis() as u64;
        let at = |ms| Version { ts: Hlc::ts_at_ms(ms), node: 1 };
        testing::put_local(a, b"old", Entry::value(at(long_ago), "v".into()));
        let tombstone = |key: &str| KeyEntry { key: key.to_string().into(), entry: Entry::tombstone(at(long_ago + 1)) };
        assert_eq!(a.apply_local(vec![tombstone("old"), tombstone("none")]).await.unwrap(), 1);
        assert!(testing::local(a, b"old").is_some_and(|e| e.value.is_none()), "the value is deleted");
        assert_eq!(testing::local(a, b"none"), None, "nothing stored where nothing lived");
    }

    /// A value written long ago with a deadline at the end of the range a client may give
    /// (`PXAT 9223372036854775807`) is live: a move, a hint or anti-entropy must store it, not
    /// take it for one dead since a wrapped-round time and drop it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_value_that_expires_at_the_end_of_time_is_stored_however_old() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0];
        let long_ago = a.hlc.wall_ms() - 2 * a.config.tombstone_grace.as_millis() as u64;
        let version = Version { ts: Hlc::ts_at_ms(long_ago), node: 1 };
        let entry = Entry::expiring(version, "v".into(), Some(i64::MAX as u64));
        let kv = KeyEntry { key: "forever".into(), entry: entry.clone() };
        assert_eq!(a.apply_local(vec![kv]).await.unwrap(), 1);
        assert_eq!(testing::local(a, b"forever"), Some(entry));
    }

    /// A coordinator restarted on a clock behind its last one stamps a write with a version it
    /// stamped before: a replica that holds that version with other contents answers
    /// "superseded", so the write is stamped above it, not acknowledged and stored nowhere. The
    /// same write again (a retry, or the value expired since) is "applied".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_stamped_with_a_version_held_for_other_contents_is_superseded() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0];
        let now = a.hlc.wall_ms();
        let at = Version { ts: Hlc::ts_at_ms(now), node: 1 };
        let write = |entry: Entry| KeyEntry { key: "k".into(), entry };
        let first = Entry::value(at, "A".into());
        testing::put_local(a, b"k", first.clone());
        let outcome = a.apply_write(write(Entry::value(at, "B".into()))).await.unwrap();
        assert!(matches!(outcome, WriteOutcome::Superseded(v) if v == at), "{outcome:?}");
        assert_eq!(testing::local(a, b"k"), Some(first.clone()), "B is not taken for A");
        let outcome = a.apply_write(write(first)).await.unwrap();
        assert!(matches!(outcome, WriteOutcome::Applied { .. }), "the same write again: {outcome:?}");
        let deleted = Entry::tombstone(at);
        testing::put_local(a, b"d", deleted);
        let outcome = a.apply_write(KeyEntry { key: "d".into(), entry: Entry::value(at, "B".into()) }).await.unwrap();
        assert!(matches!(outcome, WriteOutcome::Superseded(_)), "a delete's tombstone at that version: {outcome:?}");
        let expiring = Entry::expiring(at, "E".into(), Some(now - 1));
        testing::put_local(a, b"e", expiring.clone().expired());
        let outcome = a.apply_write(KeyEntry { key: "e".into(), entry: expiring }).await.unwrap();
        assert!(matches!(outcome, WriteOutcome::Applied { .. }), "the value expired since: {outcome:?}");
    }

    /// While this node's clock is off, grace periods are counted by the cluster's clock: a node a
    /// year ahead keeps a fresh delete, as the others do.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_whose_clock_is_off_counts_grace_periods_by_the_clusters_clock() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0];
        let year: i64 = 365 * 86_400_000;
        let now = a.hlc.wall_ms();
        let fresh = KeyEntry {
            key: "k".into(),
            entry: Entry::tombstone(Version { ts: Hlc::ts_at_ms(now - year as u64), node: 1 }),
        };
        // A year behind this node's clock: past any grace period.
        assert_eq!(a.apply_local(vec![fresh.clone()]).await.unwrap(), 0);
        // Judged a year ahead of the cluster, the node counts from the cluster's time.
        a.set_clock_off(Some(crate::life::clock::Off { why: "a year ahead".into(), offset_ms: year }));
        assert!(a.cluster_wall_ms().abs_diff(now - year as u64) < 60_000);
        assert_eq!(a.apply_local(vec![fresh]).await.unwrap(), 1, "a delete of now in the cluster's time is kept");
        a.set_clock_off(None);
        assert!(a.cluster_wall_ms() >= now);
    }

    /// A replica bounds a write's version by the cluster's clock as it measured it, not by its
    /// own: measured 400 ms behind, it takes a write stamped 850 ms ahead of its wall clock (a
    /// coordinator 450 ms ahead of the cluster, within the bound), and refuses one past the
    /// cluster's clock and the bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_bounds_versions_by_the_clusters_clock_not_its_own() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0];
        let at = |ahead: u64, key: &str| KeyEntry {
            key: key.to_string().into(),
            entry: Entry::value(Version { ts: Hlc::ts_at_ms(a.hlc.wall_ms() + ahead), node: 2 }, "v".into()),
        };
        let refused = |o: &WriteOutcome| matches!(o, WriteOutcome::Refused { status: 422, .. });
        assert!(refused(&a.apply_write(at(850, "k")).await.unwrap()), "by its own clock: 850 ms ahead");
        a.set_measured_offset(-400);
        assert!(!refused(&a.apply_write(at(850, "k")).await.unwrap()), "within the cluster's clock and the bound");
        assert!(refused(&a.apply_write(at(1_000, "j")).await.unwrap()), "past them");
        assert!(a.hlc.now() > Hlc::ts_at_ms(a.hlc.wall_ms() + 800), "and the clock followed the write it took");
    }
}
