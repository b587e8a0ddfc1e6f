//! A durable node back after an absence longer than `--tombstone-grace` drops its old store when
//! its peers have let go of deletes made while it was away.
//!
//! Why: a delete leaves a tombstone that beats the older value on every replica, and tombstones
//! are purged once past the grace (`replication/antientropy/mod.rs`). The purge waits for every
//! member that shares keys with the node, so a replica that is down but still a member gets the
//! tombstones first. A replica the seed *expired* does not hold the purge back: its ranges went to
//! the others. Back after the grace with its data directory, it held the old values of keys
//! deleted meanwhile, and no tombstone was left anywhere to beat them: anti-entropy and read
//! repair gave them back to the others (200 of 200 deleted keys in the hunt of 2026-12-07).
//!
//! So a durable node records, in its data directory ([`Service`], `service.json`):
//! * `in_service_ms`: when it was last a settled member (serving, and through an anti-entropy
//!   round with every peer under the current view), every [`period`]. It then held every delete
//!   made more than about two anti-entropy intervals before ([`Service::held_deletes_before`]).
//! * `purged_to`: the newest delete (or expiry) it let go of: a tombstone purged, or one that
//!   arrived past the grace for a key it did not hold and was not stored (`apply.rs`). Peers ask
//!   for it (`Kind::Purged`).
//!
//! At its start, a node that was out of service for longer than the grace (or never recorded in
//! service: a member that never settled, a directory of an earlier release) asks every member for
//! its `purged_to`. If one let go of a delete newer than what the node surely held, the node's
//! values may be ones deleted meanwhile: it drops its store, and gets its keys back from the
//! others (a join, or as a restarted member that is not complete until its first round). Its
//! acknowledged writes are on the others: they kept serving, and hold their replicas.
//!
//! A whole cluster stopped for longer than the grace and started again keeps its data: none of
//! its members let go of a delete newer than what the others held (they were all stopped), so
//! no one's `purged_to` is past another's horizon — unless one member comes back after the
//! others have purged, when dropping its store costs a copy and nothing else. A member that does
//! not answer is not counted: it either lets go of nothing meanwhile, or is asked by the next
//! node that comes back after it. Nodes without a data directory start empty and have nothing to
//! drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dkv_membership::{NodeId, View};
use dkv_storage::{Cursor, Engine, Hlc, KeyVersion};
use tokio::sync::watch;

use crate::life::state::Node;
use crate::transport::peer::Peers;
use crate::transport::wire::{Kind, PurgedReply, PurgedRequest};

/// What a durable node records of its service (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Service {
    /// When this node was last a settled member, by the cluster's clock (ms since the Unix epoch;
    /// 0: never recorded).
    pub in_service_ms: u64,
    /// The newest delete or expiry (a hybrid-clock timestamp) whose tombstone this node let go of.
    pub purged_to: u64,
}

impl Service {
    /// Deletes stamped before this (a hybrid-clock timestamp) surely reached this node's store:
    /// made while it was a settled member, and more than two anti-entropy intervals before it
    /// left (one round repairs a delete it missed). With anti-entropy off, only those it was
    /// sent.
    pub fn held_deletes_before(&self, anti_entropy_interval: Duration) -> u64 {
        let lag = 2 * anti_entropy_interval.as_millis() as u64;
        Hlc::ts_at_ms(self.in_service_ms.saturating_sub(lag))
    }

    /// Whether a node with this record, starting at `now_ms`, may hold values whose deletes its
    /// peers let go of meanwhile, so that it must ask them: out of service for longer than the
    /// grace (peers purge only what is older than the grace, so a shorter absence is safe), or
    /// never recorded in service (a member that never settled, or a directory of a release
    /// before the record).
    pub fn away_past(&self, now_ms: u64, grace: Duration) -> bool {
        now_ms.saturating_sub(self.in_service_ms) > grace.as_millis() as u64
    }
}

/// The verdict on an old store, pure: drop it when a peer let go of a delete newer than what it
/// surely holds (any delete, for a node never recorded in service).
pub fn must_drop(record: &Service, peers_purged_to: &[u64], anti_entropy_interval: Duration) -> bool {
    let held = record.held_deletes_before(anti_entropy_interval);
    peers_purged_to.iter().any(|&purged| purged != 0 && purged >= held)
}

/// How often a settled node records that it is in service: often enough that an absence
/// counted from the record is not much longer than the real one.
pub fn period(grace: Duration) -> Duration {
    (grace / 8).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// This node's newest purged delete (see [`Service::purged_to`]); only ever raised.
#[derive(Debug, Default)]
pub struct Purged(AtomicU64);

impl Purged {
    pub fn raise(&self, ts: u64) {
        self.0.fetch_max(ts, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Record, every [`period`], when this node was last a settled member and what it let go of
/// (a data directory's `service.json`), starting from `record`, what it recorded before.
pub async fn service_loop(node: Node, mut record: Service, mut stop: watch::Receiver<bool>) {
    if node.local.is_none() {
        return;
    }
    let every = period(node.config.tombstone_grace);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
        let mut now = record;
        if node.settled() {
            now.in_service_ms = node.cluster_wall_ms();
        }
        now.purged_to = node.purged.get();
        if now == record {
            continue;
        }
        record = now;
        let node = node.clone();
        let _ = tokio::task::spawn_blocking(move || node.local.as_ref().map(|l| l.save_service(&now))).await;
    }
}

/// Every other member's [`Service::purged_to`], of those that answer within the request
/// timeout, asked at once.
pub async fn ask_purged(peers: &Peers, view: &View, me: NodeId) -> Vec<u64> {
    let asks = view.nodes.iter().filter(|m| m.id != me).map(|m| async move {
        match peers.call::<_, PurgedReply>(&m.addr, Kind::Purged, &PurgedRequest {}).await {
            Ok(reply) => Some(reply.purged_to),
            Err(e) => {
                tracing::warn!("asking {} which deletes it let go of: {e}; it is not counted", m.addr);
                None
            }
        }
    });
    futures_util::future::join_all(asks).await.into_iter().flatten().collect()
}

/// Remove every entry of `engine`, page by page; how many.
pub fn drop_store(engine: &dyn Engine) -> dkv_storage::StorageResult<u64> {
    let mut dropped = 0;
    let mut cursor: Option<Cursor> = None;
    loop {
        let mut page: Vec<KeyVersion> = Vec::new();
        let next = engine.scan_keys(cursor.as_ref(), u64::MAX, 4096, usize::MAX, &mut |_| true, &mut page)?;
        for kv in page {
            dropped += u64::from(engine.remove_if(kv.hash, &kv.key, kv.version)?);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    engine.sync()?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);
    const AE: Duration = Duration::from_secs(60);

    #[test]
    fn only_an_absence_longer_than_the_grace_is_asked_about() {
        let record = Service { in_service_ms: 1_000_000_000, purged_to: 0 };
        assert!(!record.away_past(1_000_000_000 + 86_400_000, DAY));
        assert!(record.away_past(1_000_000_000 + 86_400_001, DAY));
        assert!(Service::default().away_past(1_000_000_000, DAY), "never recorded: asked");
    }

    #[test]
    fn a_store_is_dropped_only_when_a_peer_let_go_of_a_delete_it_may_have_missed() {
        let record = Service { in_service_ms: 1_000_000_000, purged_to: 0 };
        let held = record.held_deletes_before(AE);
        assert_eq!(Hlc::ms_of(held), 1_000_000_000 - 120_000, "two intervals before it left");
        assert!(!must_drop(&record, &[], AE), "no one answered");
        assert!(!must_drop(&record, &[0, held - 1], AE), "deletes it held: a whole cluster stopped and started");
        assert!(must_drop(&record, &[0, held], AE), "a delete of its last intervals, or after it left");
        assert!(must_drop(&record, &[Hlc::ts_at_ms(1_000_000_000 + 86_400_000)], AE));
        let never = Service::default();
        assert!(!must_drop(&never, &[0, 0], AE), "never recorded, and no member let go of anything");
        assert!(must_drop(&never, &[0, 1], AE), "never recorded: any delete let go of may be one it missed");
    }

    #[test]
    fn purged_is_only_raised() {
        let p = Purged::default();
        p.raise(5);
        p.raise(3);
        assert_eq!(p.get(), 5);
    }

    #[test]
    fn dropping_a_store_leaves_nothing() {
        let engine = dkv_storage::MemoryEngine::new();
        for i in 0..10_000u64 {
            let key = format!("k{i}");
            let entry = dkv_storage::Entry::value(dkv_storage::Version { ts: i + 1, node: 1 }, bytes::Bytes::from("v"));
            engine.apply(dkv_placement::key_hash(key.as_bytes()), key.as_bytes(), entry).unwrap();
        }
        assert_eq!(drop_store(&engine).unwrap(), 10_000);
        assert_eq!(engine.stats().keys, 0);
    }
}
