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
//! versions first, and only the entries that differ go with their values ([`SyncVersions`]). Both
//! sides scan keys and versions alone (`Engine::scan_keys`) and read the values of only the
//! entries that go: a differing bucket of values of megabytes used to be copied whole on both
//! sides, page by page, to compare its versions.
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
//! horizon ([`SyncSummarySettled`]), which helps while overwrites between the two scans are rare.
//! A round after a change compares and exchanges everything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dkv_membership::{NodeId, NodeState, Topology};
use dkv_storage::digests::{entry_digest, segment_range, SEGMENTS};
use dkv_storage::{Cursor, Digests, KeyVersion, Version};
use tokio::sync::watch;

use crate::error::{NodeError, PeerError};
use crate::life::load::Moving;
use crate::life::state::{Life, Node};
use crate::life::stats::add;
use crate::replication::batch::unknown_kind;
use crate::replication::pages;
use crate::transport::peer::is_stale_epoch;
use crate::transport::wire::{
    self, ApplyKind, ApplyReply, ApplyRequest, KeyEntry, Kind, SyncBucket, SyncBucketReply, SyncDiff, SyncSummary,
    SyncSummarySettled, SyncVersions, SyncVersionsReply,
};

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

/// Digests of the keys this node shares with each peer.
pub type Summaries = HashMap<NodeId, Vec<u64>>;

/// The last summaries computed, reused while neither the store nor the view changed.
///
/// Every summary request a node answers, and every round it starts, needs the digests of all the
/// keys it replicates: a scan of the whole store. Within one round its peers ask one after the
/// other, so on a quiet store one scan answers them all. The engine's generation says whether
/// anything was stored or removed since; an engine without one is scanned every time.
///
/// Summaries up to different horizons are the same when no entry lies after either: the cache
/// keeps the newest version it scanned, so on a quiet store the periodic rounds, each with a
/// horizon of its own, still cost one scan.
#[derive(Default)]
pub struct DigestCache {
    last: Mutex<Option<Cached>>,
    /// Where each kept segment digest goes under the current view ([`Layout`]).
    layout: Mutex<Option<Arc<Layout>>>,
}

/// Where each segment's kept digest goes under one view, in runs of segments that go to the same
/// peers: computed once per view (a placement per run of segments between ring tokens), so that
/// reading the digests and summing them into a summary takes well under a millisecond. The two
/// nodes of a pair read their kept digests within that and a round trip of each other, and the
/// writes of that moment are all that can tell them apart: read over the tens of milliseconds
/// that a placement per segment took, they differed in a third of the buckets under 15 000
/// writes a second.
struct Layout {
    epoch: u64,
    /// `(first segment, share)`, in order; each run lasts until the next one's first segment.
    runs: Vec<(usize, Share)>,
}

#[derive(Clone, PartialEq)]
enum Share {
    /// Keys this node does not replicate.
    NotMine,
    /// Keys this node replicates with these peers.
    With(dkv_placement::Replicas<NodeId>),
    /// A token of either ring cuts the segment: its keys are scanned.
    Cut,
}

impl Layout {
    fn of(topo: &Topology) -> Layout {
        let mut runs: Vec<(usize, Share)> = Vec::new();
        for segment in 0..SEGMENTS {
            let (lo, hi) = segment_range(segment);
            // A placement per run of segments between tokens, not per segment: with no token from
            // the previous segment's start to this one's end, this one is as the previous.
            let previous = segment.checked_sub(1).map(|p| segment_range(p).0);
            let share = if !topo.same_placement_over(lo, hi) {
                Share::Cut
            } else if let Some((_, last)) = runs
                .last()
                .filter(|(_, last)| *last != Share::Cut && previous.is_some_and(|p| topo.same_placement_over(p, hi)))
            {
                last.clone()
            } else {
                let mut write = topo.placement(lo).write;
                match write.iter().position(|&p| p == topo.me) {
                    Some(me) => {
                        write.remove(me);
                        Share::With(write)
                    }
                    None => Share::NotMine,
                }
            };
            if runs.last().is_none_or(|(_, last)| *last != share) {
                runs.push((segment, share));
            }
        }
        Layout { epoch: topo.epoch(), runs }
    }

    /// The runs as `(segments, share)`.
    fn iter(&self) -> impl Iterator<Item = (std::ops::Range<usize>, &Share)> {
        let ends = self.runs.iter().skip(1).map(|(first, _)| *first).chain([SEGMENTS]);
        self.runs.iter().zip(ends).map(|((first, share), end)| (*first..end, share))
    }
}

impl DigestCache {
    fn layout(&self, topo: &Topology) -> Arc<Layout> {
        let mut layout = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        match &*layout {
            Some(l) if l.epoch == topo.epoch() => l.clone(),
            _ => layout.insert(Arc::new(Layout::of(topo))).clone(),
        }
    }
}

struct Cached {
    epoch: u64,
    generation: u64,
    horizon: Option<u64>,
    /// The newest version timestamp in the store when it was scanned.
    newest: u64,
    summaries: Arc<Summaries>,
}

/// The digests of the keys this node shares with each peer under `topo`, of the entries whose
/// version timestamp is at most `horizon` if one is given (blocking: it may scan). Without a
/// horizon they come from the engine's kept digests when it keeps them ([`from_kept`]), else
/// from a scan; with one, from a scan.
pub fn summaries(node: &Node, topo: &Topology, horizon: Option<u64>) -> Arc<Summaries> {
    // Held while computing: concurrent requests wait for one scan instead of each making their own.
    let mut last = node.digests.last.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = last.as_ref().filter(|c| c.serves(node, topo, horizon)) {
        return c.summaries.clone();
    }
    // Read before the digests: a write during the computation moves it, and the next caller
    // computes again.
    let generation = node.engine.generation();
    let (s, newest) = match (horizon, node.engine.digests()) {
        // The newest entry is not known: this result answers only requests without a horizon.
        (None, Some(kept)) => (from_kept(node, topo, kept), u64::MAX),
        _ => summarize(node, topo, horizon),
    };
    let s = Arc::new(s);
    *last =
        generation.map(|generation| Cached { epoch: topo.epoch(), generation, horizon, newest, summaries: s.clone() });
    s
}

/// [`summaries`], from a task: the last ones as they are while they serve, else computed in
/// place of the worker (`block_in_place`). Handing the worker's other tasks to another thread is
/// a thread's wake-up (and, after a quiet spell, its creation), which a round of a quiet store
/// paid once per peer for summaries it already had.
pub fn summaries_now(node: &Node, topo: &Topology, horizon: Option<u64>) -> Arc<Summaries> {
    let last = node.digests.last.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = last.as_ref().filter(|c| c.serves(node, topo, horizon)) {
        return c.summaries.clone();
    }
    drop(last);
    tokio::task::block_in_place(|| summaries(node, topo, horizon))
}

impl Cached {
    /// Whether these summaries are those `topo` and `horizon` would give now: the same view, the
    /// store unchanged, and the same horizon or none that leaves an entry out.
    fn serves(&self, node: &Node, topo: &Topology, horizon: Option<u64>) -> bool {
        let covers = |h: Option<u64>| h.is_none_or(|h| h >= self.newest);
        self.epoch == topo.epoch()
            && node.engine.generation() == Some(self.generation)
            && (self.horizon == horizon || covers(self.horizon) && covers(horizon))
    }
}

/// Digests of the keys this node shares with each peer (up to `horizon`), from one scan of
/// hashes and versions; and the newest version timestamp seen.
fn summarize(node: &Node, topo: &Topology, horizon: Option<u64>) -> (Summaries, u64) {
    let mut out: Summaries = HashMap::new();
    let newest = scan_into(node, topo, None, u64::MAX, horizon, &mut out);
    (out, newest)
}

/// Add the entries with hashes after `after` up to `end_hash` (up to `horizon`) to the digests
/// of the peers that share them with this node; the newest version timestamp seen.
fn scan_into(
    node: &Node,
    topo: &Topology,
    after: Option<Cursor>,
    end_hash: u64,
    horizon: Option<u64>,
    out: &mut Summaries,
) -> u64 {
    let mut newest = 0;
    let (mut cursor, mut page) = (after, Vec::with_capacity(PAGE));
    loop {
        page.clear();
        cursor = match node.engine.scan_versions(cursor.as_ref(), end_hash, PAGE, &mut page) {
            Ok(c) => c,
            Err(e) => {
                // The digests come out different, so the pair exchanges the rest entry by entry:
                // wasteful but safe (every apply is versioned). The error is what matters.
                tracing::error!("anti-entropy scan failed: {e}");
                None
            }
        };
        for &(hash, version) in &page {
            newest = newest.max(version.ts);
            let write = topo.placement(hash).write;
            if !write.contains(&node.me) {
                continue;
            }
            // An entry after the horizon adds nothing to the digests, but its peers still get a
            // summary (all zeros if that is all they share): they may hold what this node lacks.
            let counted = horizon.is_none_or(|h| version.ts <= h);
            for peer in write.into_iter().filter(|&p| p != node.me) {
                let d = out.entry(peer).or_insert_with(|| vec![0; BUCKETS]);
                if counted {
                    d[bucket_of(hash)] = d[bucket_of(hash)].wrapping_add(entry_digest(hash, version));
                }
            }
        }
        if cursor.is_none() {
            return newest;
        }
    }
}

/// Digests of the keys this node shares with each peer, from the engine's kept segment digests
/// (the same numbers a scan without a horizon gives). A segment that lies under one placement
/// adds its digest to the buckets of that placement's peers; one that a token of either ring
/// cuts (a few hundred of the 65 536 in a cluster of three) is scanned. A peer that shares a
/// range with this node gets a summary even when neither holds a key of it.
fn from_kept(node: &Node, topo: &Topology, kept: &Digests) -> Summaries {
    let layout = node.digests.layout(topo);
    // Read all at once, first: see [`Layout`].
    let digests: Vec<u64> = (0..SEGMENTS).map(|s| kept.segment(s)).collect();
    let mut out: Summaries = HashMap::new();
    let mut cut = Vec::new();
    for (segments, share) in layout.iter() {
        match share {
            Share::NotMine => {}
            Share::Cut => cut.push(segments),
            Share::With(peers) => {
                for &peer in peers {
                    let d = out.entry(peer).or_insert_with(|| vec![0; BUCKETS]);
                    for segment in segments.clone() {
                        let bucket = bucket_of(segment_range(segment).0);
                        d[bucket] = d[bucket].wrapping_add(digests[segment]);
                    }
                }
            }
        }
    }
    for segments in cut {
        let (lo, hi) = (segment_range(segments.start).0, segment_range(segments.end - 1).1);
        // Strictly after (lo - 1, ""): from the first key whose hash is lo (keys are not empty).
        let after = (lo > 0).then(|| Cursor { hash: lo - 1, key: Bytes::new() });
        scan_into(node, topo, after, hi, None, &mut out);
    }
    out
}

/// The horizon of a periodic round: twice the request timeout back, past which every write has
/// reached its replicas or left a hint.
fn horizon(node: &Node) -> u64 {
    let settle = 2 * node.config.request_timeout.as_millis() as u64;
    dkv_storage::Hlc::ts_at_ms(node.hlc.wall_ms().saturating_sub(settle))
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

/// Sync with every peer whose id is above ours; with `settle`, with every serving peer, after
/// which (if every sync succeeded under an unchanged view) this node holds everything its peers
/// hold of the keys it replicates, and its "not found" answers can be trusted (see
/// `coordinator.rs`).
pub async fn round(node: &Node, settle: bool) -> Round {
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
    if settle {
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
        match sync_with(node, &topo, peer, (digests, generation), horizons, &progress).await {
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
    if settle && report.failed == 0 && !report.stopped {
        node.mark_settled(topo.epoch());
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
            progress.moving.moved(theirs.len() as u64, entries_bytes(&theirs));
            node.apply_local(theirs).await.map_err(here)?;
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

/// The receiver's side of step 1: which buckets differ between the sender's digests and this
/// node's (of the entries up to `horizon`, when given). A `tracked` summary (of everything) that
/// finds none records the pair as equal, as its sender does (`pairs.rs`).
pub fn answer_summary(node: &Node, req: &SyncSummary, horizon: Option<u64>, tracked: bool) -> SyncDiff {
    let topo = node.topology();
    let peer = NodeId(req.from);
    node.pairs.comparing(peer);
    let generation = node.engine.generation();
    let all = summaries_now(node, &topo, horizon);
    let none = vec![0; BUCKETS];
    let mine = all.get(&peer).unwrap_or(&none);
    let buckets: Vec<u32> = (0..BUCKETS as u32).filter(|&b| mine[b as usize] != req.digests[b as usize]).collect();
    if let (true, None, true, Some(generation)) = (tracked, horizon, buckets.is_empty(), generation) {
        node.pairs.found_equal(peer, topo.epoch(), generation);
    }
    SyncDiff { buckets }
}

fn entries_bytes(entries: &[KeyEntry]) -> u64 {
    entries.iter().map(|e| (e.key.len() + e.entry.value_len()) as u64).sum()
}

/// `entries` in order, cut into batches of about [`wire::BATCH_BYTES`] of keys and values (a
/// larger entry alone).
fn in_batches(entries: Vec<KeyEntry>) -> Vec<Vec<KeyEntry>> {
    let mut batches: Vec<Vec<KeyEntry>> = Vec::new();
    let mut bytes = 0;
    for kv in entries {
        let size = kv.key.len() + kv.entry.value_len();
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

/// A receiver's answer to a page: the entries the sender lacks or holds older, and where the
/// receiver stopped (as a wire cursor).
type Answer = (Vec<KeyEntry>, Option<(u64, Bytes)>);

/// This node's entries of the part of a bucket that a sender's page covered (after `after`, up
/// to `upto`), as far as a page of its own holds them: the receiver's side of both exchanges.
struct Part {
    keys: Vec<KeyVersion>,
    upto: Option<Cursor>,
    /// Where this node's page stopped short of `upto`: the sender's next page starts there.
    stopped: Option<Cursor>,
}

impl Part {
    fn of(
        node: &Node,
        topo: &Topology,
        from: u64,
        bucket: u32,
        after: Option<(u64, Bytes)>,
        upto: Option<(u64, Bytes)>,
    ) -> Result<Part, NodeError> {
        let (after, upto) = (after.map(wire::cursor_from_wire), upto.map(wire::cursor_from_wire));
        let end_hash = upto.as_ref().map_or(u64::MAX, |c| c.hash);
        let page =
            tokio::task::block_in_place(|| bucket_page(node, topo, NodeId(from), bucket as usize, after, end_hash))?;
        let within = |hash: u64, key: &Bytes| upto.as_ref().is_none_or(|u| (hash, key) <= (u.hash, &u.key));
        // The page may end past `upto` (keys after it under the same hash): those are the next part's.
        let stopped = page.next.clone().filter(|c| within(c.hash, &c.key) && upto.as_ref() != Some(c));
        let keys = page.entries.into_iter().filter(|kv| within(kv.hash, &kv.key)).collect();
        Ok(Part { keys, upto, stopped })
    }

    /// Whether this node's page compared the key at `hash`: within `upto`, and up to where it stopped.
    fn compared(&self, hash: u64, key: &Bytes) -> bool {
        let upto = |c: &Option<Cursor>| c.as_ref().is_none_or(|c| (hash, key) <= (c.hash, &c.key));
        upto(&self.upto) && upto(&self.stopped)
    }

    /// The entries the sender lacks or holds older (`theirs`: the version it holds), with their
    /// values, and where this node stopped.
    fn newer_than(self, node: &Node, theirs: impl Fn(&Bytes) -> Option<Version>) -> Result<Answer, NodeError> {
        // Values written since the scan may make the answer larger than the page's bound; a frame
        // holds four times that and more, and an answer past it fails this round, which the next
        // one runs again.
        let newer = self.keys.iter().filter(|kv| theirs(&kv.key).is_none_or(|v| v < kv.version));
        let entries = tokio::task::block_in_place(|| values_of(node, newer))?;
        Ok((entries, self.stopped.map(wire::cursor_to_wire)))
    }
}

/// Receiver side of step 2: apply what the sender has, answer with what it lacks or has older in
/// the same part of the bucket — as much of it as a page holds.
pub async fn answer_bucket(node: &Node, topo: &Topology, msg: SyncBucket) -> Result<SyncBucketReply, NodeError> {
    let theirs: HashMap<Bytes, Version> = msg.entries.iter().map(|kv| (kv.key.clone(), kv.entry.version)).collect();
    node.apply_local(msg.entries).await?;
    let part = Part::of(node, topo, msg.from, msg.bucket, msg.after, msg.upto)?;
    let (entries, stopped) = part.newer_than(node, |key| theirs.get(key).copied())?;
    Ok(SyncBucketReply { entries, stopped })
}

/// Receiver side of step 2, keys and versions first ([`SyncVersions`]): what the sender lacks or
/// holds older of this part of the bucket, as [`answer_bucket`] answers, and which of the
/// sender's keys this node lacks or holds older, among those its page compared (up to where it
/// stopped: the sender's next page starts there and sends the rest again).
pub async fn answer_versions(node: &Node, topo: &Topology, msg: SyncVersions) -> Result<SyncVersionsReply, NodeError> {
    let part = Part::of(node, topo, msg.from, msg.bucket, msg.after, msg.upto)?;
    let wanted = {
        let mine: HashMap<&Bytes, Version> = part.keys.iter().map(|kv| (&kv.key, kv.version)).collect();
        msg.versions
            .iter()
            .filter(|(key, version)| {
                part.compared(dkv_placement::key_hash(key), key) && mine.get(key).is_none_or(|held| held < version)
            })
            .map(|(key, _)| key.clone())
            .collect()
    };
    let theirs: HashMap<&Bytes, Version> = msg.versions.iter().map(|(key, version)| (key, *version)).collect();
    let (entries, stopped) = part.newer_than(node, |key| theirs.get(key).copied())?;
    Ok(SyncVersionsReply { entries, stopped, wanted })
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
        let r = round(&node, changed || !node.settled()).await;
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
    fn values_go_in_batches_of_the_page_bound() {
        let kv = |len| KeyEntry { key: "k".into(), entry: crate::testing::value(1, len) };
        let half = wire::BATCH_BYTES / 2;
        let lens = |batches: Vec<Vec<KeyEntry>>| batches.iter().map(Vec::len).collect::<Vec<_>>();
        // Key and value bytes: two halves fill a batch; a larger entry goes alone.
        let entries = vec![kv(half - 1), kv(half - 1), kv(10), kv(3 * half), kv(1)];
        assert_eq!(lens(in_batches(entries)), [2, 1, 1, 1]);
        assert!(in_batches(Vec::new()).is_empty());
    }

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

#[cfg(test)]
mod round_tests {
    use dkv_membership::{NodeState, View};
    use dkv_placement::key_hash;
    use dkv_storage::Entry;

    use super::*;
    use crate::config::NodeConfig;
    use crate::testing;

    /// `count` keys named `{prefix}N` whose hashes fall in bucket `bucket`.
    fn keys_in_bucket(prefix: &str, bucket: usize, count: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .filter(|k| bucket_of(key_hash(k.as_bytes())) == bucket)
            .take(count)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn summaries_are_reused_until_the_store_or_the_view_changes() {
        let nodes = testing::cluster_scanning(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let a = &nodes[0];
        testing::put_local(a, b"k", testing::value(2, 10));
        let topo = a.topology();
        let first = summaries(a, &topo, None);
        assert!(Arc::ptr_eq(&first, &summaries(a, &topo, None)), "nothing changed: no second scan");
        assert!(Arc::ptr_eq(&first, &summaries(a, &topo, Some(50))), "a horizon after every entry: the same");
        testing::put_local(a, b"k", testing::value(1, 10));
        assert!(Arc::ptr_eq(&first, &summaries(a, &topo, None)), "an older version stores nothing");
        testing::put_local(a, b"k", testing::value(3, 10));
        let second = summaries(a, &topo, None);
        assert!(second[&NodeId(2)].iter().any(|&d| d != 0));
        let before = summaries(a, &topo, Some(2));
        assert!(before[&NodeId(2)].iter().all(|&d| d == 0), "the one entry is after the horizon");
        assert_ne!(first[&NodeId(2)], second[&NodeId(2)], "the new version is in the digests");
        let mut view = topo.view.clone();
        view.epoch += 1;
        a.adopt(view);
        assert!(!Arc::ptr_eq(&second, &summaries(a, &a.topology(), None)), "another view, another scan");
    }

    /// The digests a node's kept segment digests give are those a scan gives, for every peer:
    /// with replicas on some nodes only, a node joining (a future ring unlike the read ring), and
    /// keys in the segments that tokens cut, which are scanned.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_digests_give_the_summaries_a_scan_gives() {
        let states = [NodeState::Normal, NodeState::Normal, NodeState::Normal, NodeState::Joining];
        let config = NodeConfig { replicas: 2, ..testing::config() };
        let nodes = testing::cluster(&states, config).await;
        let topo = nodes[0].topology();
        let cut = |k: &String| {
            let (lo, hi) = segment_range(dkv_storage::digests::segment_of(key_hash(k.as_bytes())));
            !topo.same_placement_over(lo, hi)
        };
        let keys: Vec<String> = (0..40_000).map(|i| format!("key-{i}")).collect();
        assert!(keys.iter().filter(|k| cut(k)).count() >= 10, "some keys lie in segments a token cuts");
        for (i, k) in keys.iter().enumerate() {
            for node in topo.placement(key_hash(k.as_bytes())).write {
                // Most copies the same, some older, some missing.
                match i % 7 {
                    0 if node == NodeId(2) => continue,
                    1 if node == NodeId(1) => testing::put_local(&nodes[0], k.as_bytes(), testing::value(1, 10)),
                    _ => testing::put_local(&nodes[node.0 as usize - 1], k.as_bytes(), testing::value(2, 10)),
                }
            }
        }
        for node in &nodes {
            let topo = node.topology();
            let kept = from_kept(node, &topo, node.engine.digests().expect("a memory engine keeps them"));
            let (scanned, _) = summarize(node, &topo, None);
            let none = vec![0; BUCKETS];
            let peers: HashSet<&NodeId> = kept.keys().chain(scanned.keys()).collect();
            assert!(peers.len() >= 2, "{peers:?}");
            for peer in peers {
                let (k, s) = (kept.get(peer).unwrap_or(&none), scanned.get(peer).unwrap_or(&none));
                assert!(
                    k == s,
                    "node {} and its peer {peer}: {} buckets differ",
                    node.me,
                    (0..BUCKETS).filter(|&b| k[b] != s[b]).count()
                );
            }
        }
    }

    /// With kept digests, a periodic round compares everything, but exchanges only the entries
    /// written before its horizon, either way: a newer one may be on its way to the replica.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_periodic_round_with_kept_digests_exchanges_only_entries_before_its_horizon() {
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        let now = dkv_storage::Hlc::ts_at_ms(a.hlc.wall_ms());
        let recent = |node| Entry::value(Version { ts: now, node }, Bytes::from_static(b"recent"));
        testing::put_local(a, b"old-a", testing::value(5, 10));
        testing::put_local(b, b"old-b", testing::value(5, 10));
        testing::put_local(a, b"new-a", recent(1));
        testing::put_local(b, b"new-b", recent(2));
        let r = round(a, false).await;
        assert_eq!((r.failed, r.sent, r.received), (0, 1, 1), "{r:?}");
        assert!(r.buckets >= 3, "the recent entries' buckets differ too: {r:?}");
        assert_eq!(testing::local(b, b"old-a"), Some(testing::value(5, 10)));
        assert_eq!(testing::local(a, b"old-b"), Some(testing::value(5, 10)));
        assert_eq!((testing::local(b, b"new-a"), testing::local(a, b"new-b")), (None, None));
        let r = round(a, true).await;
        assert_eq!((r.failed, r.sent, r.received), (0, 1, 1), "a round after a change takes them: {r:?}");
        assert_eq!((testing::local(b, b"new-a"), testing::local(a, b"new-b")), (Some(recent(1)), Some(recent(2))));
    }

    /// An entry stamped a year ahead by a node whose clock is off (a write its replicas refused)
    /// is taken by a round after a change, as everything is, but drags no clock with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_entry_a_year_ahead_is_taken_and_drags_no_clock() {
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        let year = 365 * 86_400_000;
        let far = Entry::value(Version { ts: dkv_storage::Hlc::ts_at_ms(a.hlc.wall_ms() + year), node: 2 }, "x".into());
        testing::put_local(b, b"far", far.clone());
        let r = round(a, true).await;
        assert_eq!((r.failed, r.received), (0, 1), "{r:?}");
        assert_eq!(testing::local(a, b"far"), Some(far));
        let clock = dkv_storage::Hlc::ms_of(a.hlc.now());
        assert!(clock < a.hlc.wall_ms() + year / 2, "the clock stays near the wall clock, not a year ahead");
    }

    /// Without kept digests, a periodic round leaves out what was written after its horizon (it
    /// may be in flight to the other replica); a round after a change compares everything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_periodic_round_compares_only_entries_before_its_horizon() {
        let nodes = testing::cluster_scanning(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        let now = dkv_storage::Hlc::ts_at_ms(a.hlc.wall_ms());
        let recent = |ts| Entry::value(Version { ts, node: 1 }, Bytes::from_static(b"recent"));
        testing::put_local(a, b"old", testing::value(5, 10));
        testing::put_local(a, b"new", recent(now));
        let r = round(a, false).await;
        assert_eq!(r.failed, 0, "{r:?}");
        assert_eq!(testing::local(b, b"old"), testing::local(a, b"old"), "an old difference is repaired");
        assert_eq!(testing::local(b, b"new"), None, "a recent one is left to a later round");
        let r = round(a, true).await;
        assert_eq!(r.failed, 0, "{r:?}");
        assert_eq!(testing::local(b, b"new"), Some(recent(now)), "a settling round compares everything");
    }

    /// A bucket of many equal keys and a few different ones, on `a` and `b`; what each must end
    /// up holding.
    fn a_bucket_that_differs_by_two_keys(a: &Node, b: &Node) -> Vec<String> {
        let keys = keys_in_bucket("same-", 5, 300);
        for k in &keys {
            testing::put_local(a, k.as_bytes(), testing::value(3, 100));
            testing::put_local(b, k.as_bytes(), testing::value(3, 100));
        }
        // One key only `a` holds, one that `b` holds newer.
        testing::put_local(a, keys[7].as_bytes(), testing::value(4, 100));
        testing::put_local(b, keys[9].as_bytes(), testing::value(6, 100));
        let only_a = keys_in_bucket("only-a-", 5, 1).remove(0);
        testing::put_local(a, only_a.as_bytes(), testing::value(5, 100));
        let mut all = keys;
        all.push(only_a);
        all
    }

    /// Under a steady write load every bucket differs by the few keys overwritten between the two
    /// nodes' scans; a differing bucket goes as keys and versions, and only what differs goes
    /// with its value.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_differing_bucket_ships_only_the_entries_that_differ() {
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        let keys = a_bucket_that_differs_by_two_keys(a, b);
        let r = round(a, true).await;
        assert_eq!(r.failed, 0, "{r:?}");
        assert_eq!((r.buckets, r.sent, r.received), (1, 2, 1), "only the three keys that differ: {r:?}");
        for k in &keys {
            assert_eq!(testing::local(a, k.as_bytes()), testing::local(b, k.as_bytes()), "{k}");
        }
        assert_eq!(testing::local(b, keys[7].as_bytes()), Some(testing::value(4, 100)));
        assert_eq!(testing::local(a, keys[9].as_bytes()), Some(testing::value(6, 100)));
    }

    /// Both sides compare a differing bucket by keys and versions, and read the values of only
    /// the entries that go: 300 equal entries of 10 KB were copied on both sides to compare them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_differing_bucket_reads_the_values_of_only_the_entries_that_go() {
        let (nodes, engines) =
            testing::cluster_counting(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        let keys = keys_in_bucket("same-", 5, 300);
        for k in &keys {
            testing::put_local(a, k.as_bytes(), testing::value(3, 10_000));
            testing::put_local(b, k.as_bytes(), testing::value(3, 10_000));
        }
        // One newer on each side.
        testing::put_local(a, keys[7].as_bytes(), testing::value(4, 10_000));
        testing::put_local(b, keys[9].as_bytes(), testing::value(6, 10_000));
        let r = round(a, true).await;
        assert_eq!((r.failed, r.buckets, r.sent, r.received), (0, 1, 1, 1), "{r:?}");
        let read: Vec<u64> = engines.iter().map(|e| e.value_bytes.load(std::sync::atomic::Ordering::Relaxed)).collect();
        assert_eq!(read, [10_000, 10_000], "each side read the one value it gave");
        for k in [&keys[7], &keys[9]] {
            assert_eq!(testing::local(a, k.as_bytes()), testing::local(b, k.as_bytes()), "{k}");
        }
    }

    /// A peer of the release before keys-and-versions refuses them as unknown: it gets the
    /// bucket's entries whole, as before, and ends up the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_of_the_release_before_gets_buckets_whole() {
        let states = [NodeState::Normal, NodeState::Normal];
        let nodes = testing::cluster_of_releases(&states, testing::config(), &[Kind::SyncVersions]).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        let keys = a_bucket_that_differs_by_two_keys(a, b);
        let r = round(a, true).await;
        assert_eq!(r.failed, 0, "{r:?}");
        assert_eq!((r.buckets, r.sent), (1, 301), "the bucket whole: {r:?}");
        for k in &keys {
            assert_eq!(testing::local(a, k.as_bytes()), testing::local(b, k.as_bytes()), "{k}");
        }
    }

    /// A pair found equal is compared again only once a store changes, by the side whose store
    /// changed: the lower id at its next round, the higher id once the lower one has been quiet
    /// for a window. An idle cluster's periodic rounds send nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_equal_pair_is_compared_again_only_by_a_side_whose_store_changed() {
        let interval = Duration::from_millis(300);
        let config = NodeConfig { anti_entropy_interval: interval, ..testing::config() };
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], config).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        for k in keys_in_bucket("same-", 3, 50) {
            testing::put_local(a, k.as_bytes(), testing::value(3, 100));
            testing::put_local(b, k.as_bytes(), testing::value(3, 100));
        }
        let counts = |r: &Round| (r.failed, r.peers, r.skipped, r.buckets);
        assert_eq!(counts(&round(a, false).await), (0, 1, 0, 0), "nothing known of the pair yet");
        assert_eq!(counts(&round(a, false).await), (0, 0, 1, 0), "found equal, nothing changed");
        assert_eq!(counts(&round(b, false).await), (0, 0, 1, 0));
        assert!(b.pairs.get(a.me).is_some_and(|p| p.equal.is_some()), "the side that answered knows it too");

        // Only the higher id's store changes: the lower id has nothing new to compare.
        let key = keys_in_bucket("only-b-", 3, 1).remove(0);
        testing::put_local(b, key.as_bytes(), testing::value(4, 100));
        assert_eq!(counts(&round(a, false).await), (0, 0, 1, 0));
        let started = std::time::Instant::now();
        let first = round(b, false).await;
        if started.elapsed() < interval {
            assert_eq!(counts(&first), (0, 0, 1, 0), "the lower id compared within the window");
        }
        let deadline = started + Duration::from_secs(20);
        let mut r = first;
        while r.peers == 0 {
            assert!(std::time::Instant::now() < deadline, "the higher id never compared: {r:?}");
            tokio::time::sleep(interval / 10).await;
            r = round(b, false).await;
        }
        assert_eq!((r.failed, r.buckets, r.sent), (0, 1, 1), "{r:?}");
        assert_eq!(testing::local(a, key.as_bytes()), Some(testing::value(4, 100)));

        // The entry `a` took changed its store: it compares, finds the pair equal, and both rest.
        assert_eq!(counts(&round(a, false).await), (0, 1, 0, 0));
        assert_eq!(counts(&round(a, false).await), (0, 0, 1, 0));
        assert_eq!(counts(&round(b, false).await), (0, 0, 1, 0));
        assert_eq!(a.stats.pairs_skipped.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    /// A peer of the release before skips nothing and never compares as the higher id, so a pair
    /// with it is compared at every round, as before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pair_with_a_peer_of_the_release_before_is_compared_every_round() {
        let states = [NodeState::Normal, NodeState::Normal];
        let nodes = testing::cluster_of_releases(&states, testing::config(), &[Kind::SyncSummaryTracked]).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        testing::put_local(a, b"k", testing::value(3, 100));
        testing::put_local(b, b"k", testing::value(3, 100));
        for _ in 0..3 {
            let r = round(a, false).await;
            assert_eq!((r.failed, r.peers, r.skipped, r.buckets), (0, 1, 0, 0), "{r:?}");
        }
        assert!(a.pairs.get(b.me).is_some_and(|p| p.equal.is_none()), "nothing recorded");
    }

    /// A round under a view older than its peers' stops at the first refusal: the others would
    /// refuse as well. (While 200 nodes started, rounds that asked every peer anyway made 75 000
    /// refused comparisons.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_under_a_view_its_peers_left_stops_at_the_first_refusal() {
        let nodes = testing::cluster(&[NodeState::Normal; 4], testing::config()).await;
        let newer = View { epoch: 2, ..nodes[0].topology().view.clone() };
        for n in &nodes[1..] {
            n.adopt(newer.clone()); // the same placement: false, but the epoch moves
            assert_eq!(n.topology().epoch(), 2);
        }
        let a = &nodes[0];
        let r = round(a, true).await;
        assert_eq!((r.peers, r.failed, r.stopped), (1, 1, true), "{r:?}");
        assert!(!a.settled(), "a round that stopped settles nothing");
        // Under the newer view it asks everyone, and settles.
        a.adopt(newer);
        let r = round(a, true).await;
        assert_eq!((r.peers, r.failed, r.stopped), (3, 0, false), "{r:?}");
        assert!(a.settled());
    }

    /// Issue 11: a bucket's entries went in one message whatever their size, so a bucket holding
    /// more than a frame may carry failed every round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_exchanges_buckets_larger_than_a_frame() {
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0], &nodes[1]);
        let mut want = Vec::new();
        // Each side holds 24 MiB in bucket 7 that the other lacks, plus small keys on both sides.
        for (i, k) in keys_in_bucket("big-a-", 7, 3).into_iter().enumerate() {
            testing::put_local(a, k.as_bytes(), testing::value(10 + i as u64, 8 << 20));
            want.push(k);
        }
        for (i, k) in keys_in_bucket("big-b-", 7, 3).into_iter().enumerate() {
            testing::put_local(b, k.as_bytes(), testing::value(20 + i as u64, 8 << 20));
            want.push(k);
        }
        for (i, k) in keys_in_bucket("small-", 7, 3000).into_iter().enumerate() {
            let (here, ts) = if i % 3 == 0 { (b, 5) } else { (a, 6) };
            testing::put_local(here, k.as_bytes(), testing::value(ts, 100));
            if i % 2 == 0 {
                // Both hold it, at different versions: the newer must win on both.
                let other = if i % 3 == 0 { a } else { b };
                testing::put_local(other, k.as_bytes(), testing::value(4, 100));
            }
            want.push(k);
        }
        let r = tokio::time::timeout(Duration::from_secs(60), round(a, true)).await.expect("the round ends");
        assert_eq!(r.failed, 0, "{r:?}");
        for k in &want {
            let (x, y) = (testing::local(a, k.as_bytes()), testing::local(b, k.as_bytes()));
            assert!(x.is_some(), "{k} on a");
            assert_eq!(x, y, "{k}");
        }
        let again = round(a, true).await;
        assert_eq!((again.failed, again.buckets), (0, 0), "in sync after one round: {again:?}");
    }
}
