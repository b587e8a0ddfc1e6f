//! Anti-entropy: replicas of the same keys compare summaries and exchange only what differs.
//!
//! The hash space is cut into [`BUCKETS`] buckets (the top bits of the key hash, so a bucket is a
//! contiguous range of the engine's hash-ordered store). For a pair of nodes, a bucket's digest
//! sums a hash of `(key, version)` over the keys in it that *both* nodes replicate (under the
//! same membership epoch, so both sides pick the same keys). One message carries all digests;
//! only the buckets whose digests differ are then exchanged, entry by entry, in both directions,
//! and applied with "newest version wins" — the same rule as every other transfer, so a round can
//! be interrupted and simply run again, and a deleted key (a tombstone) is never resurrected.
//!
//! Rounds run after every membership change — which is how the replicas that take over a crashed
//! node's ranges get them back to N copies, and how a returning node catches up — and every
//! `anti_entropy_interval` otherwise. Each pair is synced by the node with the lower id.

use std::collections::HashMap;
use std::time::Duration;

use dkv_membership::{NodeId, NodeState, Topology};
use dkv_storage::{Cursor, Entry};
use tokio::sync::watch;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{NodeError, PeerError};
use crate::life::state::{Life, Node};
use crate::life::stats::add;
use crate::transport::wire::{KeyEntry, Kind, SyncBucket, SyncBucketReply, SyncDiff, SyncSummary};

const BUCKET_BITS: u32 = 10;
/// Buckets per summary.
pub const BUCKETS: usize = 1 << BUCKET_BITS;
/// Entries scanned per page.
const PAGE: usize = 1024;

pub fn bucket_of(hash: u64) -> usize {
    (hash >> (64 - BUCKET_BITS)) as usize
}

fn bucket_range(bucket: usize) -> (u64, u64) {
    let lo = (bucket as u64) << (64 - BUCKET_BITS);
    (lo, lo | (u64::MAX >> BUCKET_BITS))
}

/// One key's contribution to its bucket's digest.
fn digest(hash: u64, entry: &Entry) -> u64 {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&entry.version.ts.to_le_bytes());
    v[8..].copy_from_slice(&entry.version.node.to_le_bytes());
    xxh3_64_with_seed(&v, hash)
}

/// Walk local entries with hashes in `lo..=hi`, page by page (no lock held between pages).
fn for_each_entry(node: &Node, lo: u64, hi: u64, mut f: impl FnMut(u64, bytes::Bytes, Entry)) {
    // Resume strictly after (lo - 1, ""): every stored key is non-empty, so this starts at the
    // first entry whose hash is lo - 1 or more; those below lo are skipped below.
    let mut cursor = (lo > 0).then(|| Cursor { hash: lo - 1, key: bytes::Bytes::new() });
    let mut page = Vec::with_capacity(PAGE);
    loop {
        page.clear();
        cursor = match node.engine.scan(cursor.as_ref(), hi, PAGE, &mut page) {
            Ok(c) => c,
            Err(e) => {
                // The digest comes out different, so the pair exchanges this range entry by entry:
                // wasteful but safe (every apply is versioned). The error is what matters.
                tracing::error!("anti-entropy scan failed: {e}");
                None
            }
        };
        for (hash, key, entry) in page.drain(..) {
            if hash >= lo {
                f(hash, key, entry);
            }
        }
        if cursor.is_none() {
            return;
        }
    }
}

/// Digests of the keys this node shares with each peer, from one scan.
fn summarize(node: &Node, topo: &Topology) -> HashMap<NodeId, Vec<u64>> {
    let mut out: HashMap<NodeId, Vec<u64>> = HashMap::new();
    for_each_entry(node, 0, u64::MAX, |hash, _, entry| {
        let write = topo.placement(hash).write;
        if !write.contains(&node.me) {
            return;
        }
        for peer in write.into_iter().filter(|&p| p != node.me) {
            let d = out.entry(peer).or_insert_with(|| vec![0; BUCKETS]);
            d[bucket_of(hash)] = d[bucket_of(hash)].wrapping_add(digest(hash, &entry));
        }
    });
    out
}

/// Digests of the keys this node shares with `peer`.
pub fn summarize_for(node: &Node, topo: &Topology, peer: NodeId) -> Vec<u64> {
    let mut d = vec![0u64; BUCKETS];
    for_each_entry(node, 0, u64::MAX, |hash, _, entry| {
        let write = topo.placement(hash).write;
        if write.contains(&node.me) && write.contains(&peer) {
            d[bucket_of(hash)] = d[bucket_of(hash)].wrapping_add(digest(hash, &entry));
        }
    });
    d
}

/// This node's entries of `bucket` that it shares with `peer`.
pub fn bucket_entries(node: &Node, topo: &Topology, peer: NodeId, bucket: usize) -> Vec<KeyEntry> {
    let (lo, hi) = bucket_range(bucket);
    let mut out = Vec::new();
    for_each_entry(node, lo, hi, |hash, key, entry| {
        let write = topo.placement(hash).write;
        if write.contains(&node.me) && write.contains(&peer) {
            out.push(KeyEntry { key, entry });
        }
    });
    out
}

/// Outcome of one round.
#[derive(Debug, Default)]
pub struct Round {
    pub peers: usize,
    pub buckets: usize,
    pub sent: u64,
    pub received: u64,
    pub failed: usize,
}

/// Sync with every peer whose id is above ours; with `settle`, with every serving peer, after
/// which (if every sync succeeded under an unchanged view) this node holds everything its peers
/// hold of the keys it replicates, and its "not found" answers can be trusted (see
/// `coordinator.rs`).
pub async fn round(node: &Node, settle: bool) -> Round {
    let topo = node.topology();
    let mut summaries = tokio::task::block_in_place(|| summarize(node, &topo));
    if settle {
        // Peers with which this node shares nothing yet (a range it newly replicates and has not
        // received) must be asked too.
        for m in topo.view.nodes.iter().filter(|m| m.id != node.me && m.state != NodeState::Joining) {
            summaries.entry(m.id).or_insert_with(|| vec![0; BUCKETS]);
        }
    }
    let mut report = Round::default();
    for (peer, digests) in summaries {
        if peer <= node.me && !settle {
            continue;
        }
        report.peers += 1;
        match sync_with(node, &topo, peer, digests).await {
            Ok((buckets, sent, received)) => {
                report.buckets += buckets;
                report.sent += sent;
                report.received += received;
            }
            Err(e) => {
                report.failed += 1;
                tracing::debug!("anti-entropy with node {peer} failed: {e}");
            }
        }
    }
    if settle && report.failed == 0 {
        node.mark_settled(topo.epoch());
    }
    add(&node.stats.repaired_by_sync, report.sent + report.received);
    report
}

async fn sync_with(
    node: &Node,
    topo: &Topology,
    peer: NodeId,
    digests: Vec<u64>,
) -> Result<(usize, u64, u64), PeerError> {
    let addr = node.addr_of(topo, peer)?;
    let summary = SyncSummary { epoch: topo.epoch(), from: node.me.0, digests };
    let diff: SyncDiff = node.peers.call(addr, Kind::SyncSummary, &summary).await?;
    let (mut sent, mut received) = (0, 0);
    for &bucket in &diff.buckets {
        let entries = tokio::task::block_in_place(|| bucket_entries(node, topo, peer, bucket as usize));
        sent += entries.len() as u64;
        let msg = SyncBucket { epoch: topo.epoch(), from: node.me.0, bucket, entries };
        let reply: SyncBucketReply = node.peers.call(addr, Kind::SyncBucket, &msg).await?;
        received += reply.entries.len() as u64;
        node.apply_local(reply.entries).await.map_err(|e| PeerError::Refused {
            addr: "this node".into(),
            status: 500,
            message: e.to_string(),
        })?;
    }
    Ok((diff.buckets.len(), sent, received))
}

/// Receiver side of step 2: apply what the sender has, answer with what it lacks or has older.
pub async fn answer_bucket(node: &Node, topo: &Topology, msg: SyncBucket) -> Result<SyncBucketReply, NodeError> {
    let theirs: HashMap<bytes::Bytes, dkv_storage::Version> =
        msg.entries.iter().map(|kv| (kv.key.clone(), kv.entry.version)).collect();
    node.apply_local(msg.entries).await?;
    let mine = tokio::task::block_in_place(|| bucket_entries(node, topo, NodeId(msg.from), msg.bucket as usize));
    let entries = mine.into_iter().filter(|kv| theirs.get(&kv.key).is_none_or(|v| *v < kv.entry.version)).collect();
    Ok(SyncBucketReply { entries })
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
        if changed {
            // Let the other nodes adopt the same view, so both sides of a pair agree.
            tokio::time::sleep(node.config.heartbeat_interval).await;
            changes.borrow_and_update();
        }
        if node.life() != Life::Normal || node.topology().my_state() != Some(NodeState::Normal) {
            continue;
        }
        let started = tokio::time::Instant::now();
        // Until a round with every peer succeeds under the current view, every round is one.
        let r = round(&node, changed || !node.settled()).await;
        if r.buckets > 0 || r.failed > 0 {
            tracing::info!(peers = r.peers, buckets = r.buckets, sent = r.sent, received = r.received, failed = r.failed, took = ?started.elapsed(), "anti-entropy round");
        }
        if r.failed > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Purge tombstones past the grace period, a few times per grace period.
pub async fn purge_loop(node: Node, mut stop: watch::Receiver<bool>) {
    let every = (node.config.tombstone_grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
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
mod tests {
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
