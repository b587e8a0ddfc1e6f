//! Anti-entropy: replicas of the same keys compare summaries and exchange only what differs.
//!
//! The hash space is cut into [`BUCKETS`] buckets (the top bits of the key hash, so a bucket is a
//! contiguous range of the engine's hash-ordered store). For a pair of nodes, a bucket's digest
//! sums a hash of each key's hash and version over the keys in it that *both* nodes replicate (under the
//! same membership epoch, so both sides pick the same keys). One message carries all digests;
//! only the buckets whose digests differ are then exchanged, entry by entry, in both directions,
//! and applied with "newest version wins" — the same rule as every other transfer, so a round can
//! be interrupted and simply run again, and a deleted key (a tombstone) is never resurrected.
//!
//! A bucket is exchanged in pages of at most about `BATCH_BYTES` each way (see `pages.rs`): the
//! sender's page says which part of the bucket it covers, the receiver answers with its entries
//! of that part, and stops early — saying where — when those would not fit in a page. So a bucket
//! of any size, values of megabytes included, fits in frames. A differing bucket goes as keys and
//! versions first, and only the entries that differ go with their values
//! ([`SyncVersions`](crate::transport::wire::SyncVersions)). Both sides scan keys and versions
//! alone (`Engine::scan_keys`) and read the values of only the entries that go: a differing bucket
//! of values of megabytes used to be copied whole on both sides, page by page, to compare its
//! versions.
//!
//! The digests come from the engine's kept segment digests (`dkv_storage::digests`), changed with
//! every write, so both nodes of a pair read theirs within a round trip of each other; only the
//! few segments that a ring token cuts are scanned. An engine that keeps none is scanned (hashes
//! and versions only, no values copied). Either way the result is reused while neither the store
//! nor the view changed, so the peers asking one after the other in a round cost one computation
//! ([`DigestCache`]).
//!
//! Rounds run after every membership change, once it settles ([`settle`]) — which is how the
//! replicas that take over a crashed node's ranges get them back to N copies, and how a returning
//! node catches up — and every `anti_entropy_interval` otherwise. Each pair is synced by the node
//! with the lower id. A periodic round skips a pair found equal while this node's store has not
//! changed since, and the higher id syncs when its store changed and the lower one stays quiet
//! ([`pairs`](crate::replication::pairs)): an idle cluster's periodic rounds send nothing.
//!
//! Under a steady write load, digests computed by scans differed in nearly every bucket: the two
//! nodes scan at different moments, a million keys apart, and a key written in between counts on
//! one side only. Each round then exchanged most of the store (measured: 2.5 M entries in one
//! periodic round with 970 000 keys under 50 000 PUTs/s, and that 5 s window at a quarter of the
//! speed). Kept digests differ only by the writes in flight as they are read.
//!
//! A periodic round sends and takes only the entries written before a *horizon* twice the request
//! timeout back: a newer write may still be on its way to a replica, and the next round sees it.
//! Where an engine keeps no digests, its periodic digests also count only the entries before the
//! horizon ([`SyncSummarySettled`](crate::transport::wire::SyncSummarySettled)), which helps while
//! overwrites between the two scans are rare.
//! A round after a change compares and exchanges everything.
//!
//! The files: [`digests`] computes a node's summaries (kept digests, or scans) and keeps the last
//! ones; [`round`](mod@round) is the side that starts a comparison, one peer after another; [`answer`] is
//! the peer's side of each message (`transport/internal.rs` hands them over). The loops that run
//! rounds, and the purge of old tombstones, are here.

mod answer;
mod digests;
mod round;
#[cfg(test)]
mod tests;

pub use answer::{answer_bucket, answer_summary, answer_versions};
pub use digests::DigestCache;
pub use round::{round, round_for, Purpose, Round};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dkv_membership::{NodeId, NodeState, Topology};
use dkv_storage::{Cursor, KeyVersion};
use tokio::sync::watch;

use crate::error::NodeError;
use crate::life::state::{Life, Node};
use crate::replication::pages;
use crate::transport::wire::KeyEntry;

const BUCKET_BITS: u32 = 10;
/// Buckets per summary.
pub const BUCKETS: usize = 1 << BUCKET_BITS;
/// Entries scanned per page.
const PAGE: usize = 1024;

// A segment of the kept digests lies in one bucket.
const _: () = assert!(dkv_storage::digests::SEGMENT_BITS >= BUCKET_BITS);

pub fn bucket_of(hash: u64) -> usize {
    (hash >> (64 - BUCKET_BITS)) as usize
}

fn bucket_range(bucket: usize) -> (u64, u64) {
    let lo = (bucket as u64) << (64 - BUCKET_BITS);
    (lo, lo | (u64::MAX >> BUCKET_BITS))
}

/// The horizon of a periodic round: twice the request timeout back, past which every write has
/// reached its replicas or left a hint. By the cluster's clock as this node measured it: by its
/// own, a node lagging far behind left out every write since (`Node::cluster_clock_ms`).
fn horizon(node: &Node) -> u64 {
    let settle = 2 * node.config.request_timeout.as_millis() as u64;
    dkv_storage::Hlc::ts_at_ms(node.cluster_clock_ms().saturating_sub(settle))
}

/// One page of this node's keys and versions of `bucket` that it shares with `peer`, after
/// `after` (from the bucket's start when `None`) and up to the hash `end_hash` (blocking: a scan).
fn bucket_page(
    node: &Node,
    topo: &Topology,
    peer: NodeId,
    bucket: usize,
    after: Option<Cursor>,
    end_hash: u64,
) -> Result<pages::Page<KeyVersion>, NodeError> {
    let (lo, hi) = bucket_range(bucket);
    // From the bucket's start: strictly after (lo - 1, ""), and every stored key is non-empty, so
    // this starts at the first entry whose hash is lo - 1 or more; `keep` drops those below lo.
    let after = after.or_else(|| (lo > 0).then(|| Cursor { hash: lo - 1, key: Bytes::new() }));
    let mut keep = |hash| {
        let write = topo.placement(hash).write;
        hash >= lo && write.contains(&node.me) && write.contains(&peer)
    };
    Ok(pages::key_page(&*node.engine, after, end_hash.min(hi), PAGE, &mut keep)?)
}

/// What this node stores now under each of `keys` (blocking: lookups). A key gone since the scan
/// (purged, or handed off) is left out; one written since comes at its newer version.
fn values_of<'a>(node: &Node, keys: impl Iterator<Item = &'a KeyVersion>) -> Result<Vec<KeyEntry>, NodeError> {
    let mut out = Vec::new();
    for kv in keys {
        if let Some(entry) = node.engine.get(kv.hash, &kv.key)? {
            out.push(KeyEntry { key: kv.key.clone(), entry });
        }
    }
    Ok(out)
}

/// Run a round after each membership change (once it settles) and every interval.
pub async fn anti_entropy_loop(node: Node, mut stop: watch::Receiver<bool>) {
    if node.config.anti_entropy_interval.is_zero() {
        return; // turned off
    }
    let mut changes = node.topo.subscribe();
    // The first round runs as soon as the node serves: a node restarted on its data directory
    // catches up there on what it missed while it was down.
    let mut first = true;
    loop {
        let changed = std::mem::take(&mut first)
            || tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                r = changes.changed() => if r.is_err() { return } else { true },
                _ = tokio::time::sleep(node.config.anti_entropy_interval) => false,
            };
        if changed && !settle(&node, &mut changes, &mut stop).await {
            return;
        }
        if node.life() != Life::Normal || node.topology().my_state() != Some(NodeState::Normal) {
            continue;
        }
        let started = tokio::time::Instant::now();
        // Until a round with every peer succeeds under the current view, every round is one.
        // A round paced by `--move-rate` may be waiting when the node stops: dropped, it is
        // redone whole at the next start, as any round may be.
        let r = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = round(&node, changed || !node.settled()) => r,
        };
        if r.buckets > 0 || r.failed > 0 || r.stopped {
            tracing::info!(peers = r.peers, buckets = r.buckets, sent = r.sent, received = r.received, failed = r.failed, stopped = r.stopped, took = ?started.elapsed(), "anti-entropy round");
        }
        if r.failed > 0 || r.stopped {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// After a membership change, wait a heartbeat interval, so the other nodes adopt the same view
/// and both sides of a pair agree; then, while the view keeps changing (another change within
/// each quarter interval), wait on, up to [`SETTLE_LIMIT`] intervals in all, so a membership that
/// keeps changing still gets its rounds. While a cluster of 200 starts, a change comes every few
/// tens of milliseconds, and a round with every peer after each interval was a fifth of the
/// start-up's CPU; a cluster of three that starts has its round an interval after its last
/// join, as before. False once `stop` is set.
async fn settle(node: &Node, changes: &mut watch::Receiver<Arc<Topology>>, stop: &mut watch::Receiver<bool>) -> bool {
    let interval = node.config.heartbeat_interval;
    let step = interval / 4;
    let mut wait = interval;
    let mut waited = Duration::ZERO;
    while waited < interval * SETTLE_LIMIT {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        waited += wait;
        if !changes.has_changed().unwrap_or(false) {
            break;
        }
        changes.borrow_and_update();
        wait = step;
    }
    changes.borrow_and_update();
    true
}

/// Most heartbeat intervals a change-triggered round waits for the membership to hold still.
const SETTLE_LIMIT: u32 = 10;

/// Rounds before a purge that a change of view may cut short, before the purge waits for its
/// next turn.
const PURGE_ROUNDS: usize = 3;

/// Purge tombstones past the grace period, a few times per grace period, each time right after
/// a round of anti-entropy with every peer it shares keys with; none while one of them cannot be
/// compared with.
///
/// Why the round: a replica down when a delete was made, whose hint was dropped (by age, or by
/// `--max-hints`), gets the tombstone from a round only. Purged by time alone, the tombstones were
/// gone when it came back, and its old value went back to the others: a replica killed for
/// longer than the grace, not yet expired by the seed, brought back 200 of 200 deleted keys, and
/// so did a whole cluster started again after a stop longer than the grace with one replica a
/// moment late (found by a hunt, 2026-12-07). A round before the purge hands the tombstones to
/// every replica that can be reached, and a replica that cannot holds the purge back until it
/// is compared with, or expired (its ranges then go to others, by a round). So a member down for
/// good keeps the tombstones of the peers it shares keys with (its ring neighbours, not the whole
/// cluster) until the seed expires it or `dkv remove` takes it out. A round cut short by a change
/// of view is run again, a few times.
///
/// With anti-entropy off (`--anti-entropy-interval 0s`, for tests) tombstones are purged by time
/// alone, as before; the node warns at start that deleted keys may come back then.
pub async fn purge_loop(node: Node, mut stop: watch::Receiver<bool>) {
    let every = (node.config.tombstone_grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(600));
    let compare_first = !node.config.anti_entropy_interval.is_zero();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
        if node.engine.stats().tombstones == 0 {
            continue;
        }
        if compare_first {
            if node.life() != Life::Normal || node.topology().my_state() != Some(NodeState::Normal) {
                continue;
            }
            let mut r = Round::default();
            for _ in 0..PURGE_ROUNDS {
                r = tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    r = round_for(&node, Purpose::Purge) => r,
                };
                if !r.stopped {
                    break;
                }
            }
            if r.failed > 0 || r.stopped {
                static KEPT: dkv_transport::Throttle = dkv_transport::Throttle::new();
                if let Some(more) = KEPT.allow("not compared") {
                    tracing::warn!(
                        failed = r.failed,
                        "tombstones past --tombstone-grace are kept: the anti-entropy round before the purge could \
                         not compare with every peer that shares keys with this node, and one that missed a delete \
                         would bring its value back once the tombstone is gone; they are purged once each is compared \
                         with, or expired (a member gone for good: `dkv remove`){more}"
                    );
                }
                continue;
            }
        }
        let before = node.purge_horizon();
        match tokio::task::block_in_place(|| node.engine.purge_tombstones(before)) {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged tombstones past the grace period"),
            Err(e) => tracing::error!("purging tombstones failed: {e}"),
        }
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

    #[test]
    fn buckets_tile_the_hash_space_in_order() {
        assert_eq!(bucket_range(0).0, 0);
        assert_eq!(bucket_range(BUCKETS - 1).1, u64::MAX);
        for b in 0..BUCKETS - 1 {
            assert_eq!(bucket_range(b).1 + 1, bucket_range(b + 1).0);
            assert_eq!(bucket_of(bucket_range(b).0), b);
            assert_eq!(bucket_of(bucket_range(b).1), b);
        }
    }
}
