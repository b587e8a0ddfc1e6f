//! The side that starts a comparison: a round compares this node's summary with each peer's in
//! turn, then exchanges the buckets that differ, page by page, keys and versions first.

use std::collections::HashSet;

use bytes::Bytes;
use dkv_membership::{NodeId, NodeState, Topology};
use dkv_storage::Cursor;

use super::digests::{summaries_now, Summaries};
use super::{bucket_page, horizon, values_of, BUCKETS};
use crate::error::{NodeError, PeerError};
use crate::life::load::Moving;
use crate::life::state::Node;
use crate::life::stats::add;
use crate::replication::batch::unknown_kind;
use crate::replication::pace::Pace;
use crate::transport::peer::is_stale_epoch;
use crate::transport::wire::{
    self, ApplyKind, ApplyReply, ApplyRequest, KeyEntry, Kind, SyncBucket, SyncBucketReply, SyncDiff, SyncSummary,
    SyncSummarySettled, SyncVersions, SyncVersionsReply,
};

/// Outcome of one round.
#[derive(Debug, Default)]
pub struct Round {
    pub peers: usize,
    /// Peers a periodic round left out: found equal under this view with this store unchanged
    /// since, or (the higher id of the pair) left to the lower one, which compared lately.
    pub skipped: usize,
    pub buckets: usize,
    pub sent: u64,
    pub received: u64,
    pub failed: usize,
    /// Stopped before its last peer: the view it ran under is no longer the newest (this node
    /// adopted another, or a peer answered from a newer one).
    pub stopped: bool,
}

/// What a round is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Every anti-entropy interval: the pairs this node compares by the rules of `pairs.rs`,
    /// the entries written before a horizon.
    Periodic,
    /// After a membership change or a start: every serving peer, everything; if every sync
    /// succeeds under an unchanged view, this node is settled.
    Settle,
    /// Before tombstones are purged (`purge_loop`): every peer this node shares keys with,
    /// everything, whatever the pairs' records say.
    Purge,
}

/// Sync with every peer whose id is above ours; with `settle`, with every serving peer, after
/// which (if every sync succeeded under an unchanged view) this node holds everything its peers
/// hold of the keys it replicates, and its "not found" answers can be trusted (see
/// `coordinator.rs`).
pub async fn round(node: &Node, settle: bool) -> Round {
    round_for(node, if settle { Purpose::Settle } else { Purpose::Periodic }).await
}

/// A round for `purpose` (see [`Purpose`]).
pub async fn round_for(node: &Node, purpose: Purpose) -> Round {
    // Everything, with every peer in reach of the round, whatever the pairs' records say.
    let settle = purpose != Purpose::Periodic;
    let topo = node.topology();
    // A periodic round leaves the entries written after its horizon to a later round: they may
    // still be on their way to a replica. Kept digests are read by both nodes of a pair within a
    // round trip: they compare everything, and the horizon applies to the entries exchanged.
    // Digests from scans compare only the entries before it.
    let exchanged = (!settle).then(|| horizon(node));
    let kept = node.engine.digests().is_some();
    let horizon = exchanged.filter(|_| !kept);
    // Read before the digests, as every generation recorded with a comparison is (`pairs.rs`).
    let generation_first = node.engine.generation();
    // A peer's digests are copied only once it is compared: copying them all up front, 8 KiB a
    // peer, was a tenth of what 100 idle nodes spent, in rounds that then skipped every peer.
    let first = summaries_now(node, &topo, horizon);
    let mut peers: Vec<NodeId> = first.keys().copied().collect();
    if purpose == Purpose::Settle {
        // Peers with which this node shares nothing yet (a range it newly replicates and has not
        // received) must be asked too.
        let unshared = topo.view.nodes.iter().filter(|m| m.id != node.me && m.state != NodeState::Joining);
        peers.extend(unshared.map(|m| m.id).filter(|id| !first.contains_key(id)));
    }
    let digests_of = |summaries: &Summaries, peer| summaries.get(&peer).or_else(|| first.get(&peer)).cloned();
    let mut report = Round::default();
    // For the heartbeat's report: buckets found different so far, and exchanged.
    let moving = node.moves.begin(dkv_membership::load::MoveKind::Repair, None, None);
    let buckets = std::sync::atomic::AtomicU64::new(0);
    let progress = Progress { moving: &moving, planned: &buckets, done: report.buckets as u64 };
    let interval = node.config.anti_entropy_interval;
    // Within the node's `--move-rate`, with its joins and rebalances: the round after a join
    // pushed the joiner's ranges at full speed while the join's own copy kept to the rate.
    let mut pace = Pace::new(&node.move_rate, None);
    for peer in peers {
        // A view older than the newest: every peer that holds the newer one refuses (the
        // placement compared may have moved, too). While 200 nodes started, views changed
        // every few tens of milliseconds, and rounds that went on asking all their peers made
        // 75 000 comparisons that were refused as of a stale epoch. The next view's own round
        // runs once it settles (`anti_entropy_loop`).
        if node.topology().epoch() != topo.epoch() {
            report.stopped = true;
            break;
        }
        let generation = node.engine.generation();
        if !node.pairs.compares((node.me, peer), (topo.epoch(), generation), settle, interval) {
            report.skipped += 1;
            continue;
        }
        report.peers += 1;
        node.pairs.comparing(peer);
        // Kept digests are read again just before they go: the syncs with the peers before may
        // have taken seconds, and the writes of those seconds would make buckets differ.
        let (digests, generation) = match kept {
            true => (digests_of(&summaries_now(node, &topo, horizon), peer), generation),
            false => (digests_of(&first, peer), generation_first),
        };
        let digests = digests.unwrap_or_else(|| vec![0; BUCKETS]);
        let progress = Progress { done: report.buckets as u64, ..progress };
        let horizons = Horizons { digests: horizon, exchanged };
        match sync_with(node, &topo, peer, (digests, generation), horizons, &progress, &mut pace).await {
            Ok((buckets, sent, received)) => {
                report.buckets += buckets;
                report.sent += sent;
                report.received += received;
            }
            Err(e) => {
                report.failed += 1;
                tracing::debug!("anti-entropy with node {peer} failed: {e}");
                if is_stale_epoch(&e) {
                    // The peer holds a newer view, which reaches this node with its next
                    // heartbeat; until then, the peers that hold it refuse as well.
                    report.stopped = true;
                    break;
                }
            }
        }
    }
    if purpose == Purpose::Settle && report.failed == 0 && !report.stopped {
        node.mark_settled(&topo);
    }
    add(&node.stats.repaired_by_sync, report.sent + report.received);
    add(&node.stats.pairs_compared, report.peers as u64);
    add(&node.stats.pairs_skipped, report.skipped as u64);
    report
}

/// The horizons of a periodic round (`None`: everything): the digests compare the entries up to
/// `digests`, and the entries exchanged are those up to `exchanged`.
#[derive(Clone, Copy)]
struct Horizons {
    digests: Option<u64>,
    exchanged: Option<u64>,
}

/// Where a round is, for the heartbeat's report: buckets exchanged before this peer's, and found
/// different in all (this peer's included once its diff came).
#[derive(Clone, Copy)]
struct Progress<'a> {
    moving: &'a Moving<'a>,
    planned: &'a std::sync::atomic::AtomicU64,
    done: u64,
}

/// Sync with `peer`: compare this node's `digests` for it (read after this store's generation
/// was `.1`), then exchange the buckets that differ. Returns the buckets, and the entries sent
/// and received.
async fn sync_with(
    node: &Node,
    topo: &Topology,
    peer: NodeId,
    (digests, generation): (Vec<u64>, Option<u64>),
    horizons: Horizons,
    progress: &Progress<'_>,
    pace: &mut Pace<'_>,
) -> Result<(usize, u64, u64), PeerError> {
    let addr = node.addr_of(topo, peer)?;
    let summary = SyncSummary { epoch: topo.epoch(), from: node.me.0, digests };
    // Neither sent nor taken: entries written after the horizon of the exchange.
    let settled = |e: &KeyEntry| horizons.exchanged.is_none_or(|h| e.entry.version.ts <= h);
    let (diff, tracked) = diff_with(node, topo, addr, peer, summary, horizons).await?;
    if let (true, true, Some(generation)) = (tracked, diff.buckets.is_empty(), generation) {
        node.pairs.found_equal(peer, topo.epoch(), generation);
    }
    let planned = progress.planned.fetch_add(diff.buckets.len() as u64, std::sync::atomic::Ordering::Relaxed)
        + diff.buckets.len() as u64;
    let here = |e: NodeError| PeerError::Refused { addr: "this node".into(), status: 500, message: e.to_string() };
    let (mut sent, mut received) = (0, 0);
    // A peer of a release before `SyncVersions` gets each page's entries whole.
    let mut whole = false;
    for (i, &bucket) in diff.buckets.iter().enumerate() {
        progress.moving.progress((progress.done + i as u64) as f64, planned as f64);
        // Page by page: each message carries at most about `BATCH_BYTES` either way.
        let mut after: Option<Cursor> = None;
        loop {
            let page =
                tokio::task::block_in_place(|| bucket_page(node, topo, peer, bucket as usize, after.clone(), u64::MAX))
                    .map_err(here)?;
            let upto = page.next.clone();
            let keys = page.entries;
            // The values that went either way.
            let mut page_bytes = 0;
            let (after_wire, upto_wire) = (after.map(wire::cursor_to_wire), upto.clone().map(wire::cursor_to_wire));
            // Keys and versions first; the values of only those the peer lacks or holds older.
            let versions = if whole {
                None
            } else {
                let versions = keys.iter().map(|kv| (kv.key.clone(), kv.version)).collect();
                let msg = SyncVersions {
                    epoch: topo.epoch(),
                    from: node.me.0,
                    bucket,
                    after: after_wire.clone(),
                    upto: upto_wire.clone(),
                    versions,
                };
                match node.peers.call::<_, SyncVersionsReply>(addr, Kind::SyncVersions, &msg).await {
                    Err(e) if unknown_kind(&e) => None,
                    other => Some(other?),
                }
            };
            whole = versions.is_none();
            let (theirs, stopped) = match versions {
                Some(SyncVersionsReply { entries: theirs, stopped, wanted }) => {
                    let wanted: HashSet<Bytes> = wanted.into_iter().collect();
                    let give = tokio::task::block_in_place(|| {
                        values_of(node, keys.iter().filter(|kv| wanted.contains(&kv.key)))
                    })
                    .map_err(here)?;
                    let give: Vec<KeyEntry> = give.into_iter().filter(settled).collect();
                    sent += give.len() as u64;
                    page_bytes += entries_bytes(&give);
                    progress.moving.moved(give.len() as u64, entries_bytes(&give));
                    // The page's bound counted the values as scanned; one written since may be
                    // larger, so the values go in messages of the page's bound.
                    for entries in in_batches(give) {
                        let req = ApplyRequest { epoch: topo.epoch(), kind: ApplyKind::Repair, entries };
                        node.peers.call::<_, ApplyReply>(addr, Kind::Apply, &req).await?;
                    }
                    (theirs, stopped)
                }
                None => {
                    let entries = tokio::task::block_in_place(|| values_of(node, keys.iter())).map_err(here)?;
                    let entries: Vec<KeyEntry> = entries.into_iter().filter(settled).collect();
                    sent += entries.len() as u64;
                    page_bytes += entries_bytes(&entries);
                    progress.moving.moved(entries.len() as u64, entries_bytes(&entries));
                    let msg = SyncBucket {
                        epoch: topo.epoch(),
                        from: node.me.0,
                        bucket,
                        after: after_wire,
                        upto: upto_wire,
                        entries,
                    };
                    let reply: SyncBucketReply = node.peers.call(addr, Kind::SyncBucket, &msg).await?;
                    (reply.entries, reply.stopped)
                }
            };
            let theirs: Vec<KeyEntry> = theirs.into_iter().filter(settled).collect();
            received += theirs.len() as u64;
            page_bytes += entries_bytes(&theirs);
            progress.moving.moved(theirs.len() as u64, entries_bytes(&theirs));
            node.apply_local(theirs).await.map_err(here)?;
            pace.after(page_bytes).await;
            // Compared up to where the peer stopped, else up to where this page ended.
            after = match stopped.map(wire::cursor_from_wire).or(upto) {
                Some(c) => Some(c),
                None => break,
            };
        }
    }
    progress.moving.progress((progress.done + diff.buckets.len() as u64) as f64, planned as f64);
    Ok((diff.buckets.len(), sent, received))
}

/// Step 1: the buckets whose digests differ, and whether the peer took the summary as tracked
/// (it records the pair too when none differ, see `pairs.rs`): a comparison of everything, with
/// a peer of this release.
async fn diff_with(
    node: &Node,
    topo: &Topology,
    addr: &str,
    peer: NodeId,
    summary: SyncSummary,
    horizons: Horizons,
) -> Result<(SyncDiff, bool), PeerError> {
    let Some(horizon) = horizons.digests else {
        return match node.peers.call(addr, Kind::SyncSummaryTracked, &summary).await {
            // A peer of an earlier release: the same comparison, recorded by neither side.
            Err(e) if unknown_kind(&e) => Ok((node.peers.call(addr, Kind::SyncSummary, &summary).await?, false)),
            other => Ok((other?, true)),
        };
    };
    let req = SyncSummarySettled { summary, horizon };
    match node.peers.call(addr, Kind::SyncSummarySettled, &req).await {
        // A peer of an earlier release knows no horizon: compare everything with it.
        Err(e) if unknown_kind(&e) => {
            let all = summaries_now(node, topo, None);
            let digests = all.get(&peer).cloned().unwrap_or_else(|| vec![0; BUCKETS]);
            let summary = SyncSummary { epoch: topo.epoch(), from: node.me.0, digests };
            Ok((node.peers.call(addr, Kind::SyncSummary, &summary).await?, false))
        }
        other => Ok((other?, false)),
    }
}

fn entries_bytes(entries: &[KeyEntry]) -> u64 {
    entries.iter().map(|e| e.bytes() as u64).sum()
}

/// `entries` in order, cut into batches of about [`wire::BATCH_BYTES`] of keys and values (a
/// larger entry alone).
fn in_batches(entries: Vec<KeyEntry>) -> Vec<Vec<KeyEntry>> {
    let mut batches: Vec<Vec<KeyEntry>> = Vec::new();
    let mut bytes = 0;
    for kv in entries {
        let size = kv.bytes();
        match batches.last_mut() {
            Some(batch) if bytes + size <= wire::BATCH_BYTES => {
                bytes += size;
                batch.push(kv);
            }
            _ => {
                bytes = size;
                batches.push(vec![kv]);
            }
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_go_in_batches_of_the_page_bound() {
        let kv = |len| KeyEntry { key: "k".into(), entry: crate::testing::value(1, len) };
        let half = wire::BATCH_BYTES / 2;
        let lens = |batches: Vec<Vec<KeyEntry>>| batches.iter().map(Vec::len).collect::<Vec<_>>();
        // Key and value bytes: two halves fill a batch; a larger entry goes alone.
        let entries = vec![kv(half - 1), kv(half - 1), kv(10), kv(3 * half), kv(1)];
        assert_eq!(lens(in_batches(entries)), [2, 1, 1, 1]);
        assert!(in_batches(Vec::new()).is_empty());
    }
}
