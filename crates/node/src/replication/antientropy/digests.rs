//! A node's summaries: for each peer, the digests of the keys the two share, bucket by bucket.
//! From the engine's kept segment digests when it keeps them, else from a scan of hashes and
//! versions; the last ones are kept and reused while neither the store nor the view changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dkv_membership::{NodeId, Topology};
use dkv_storage::digests::{entry_digest, segment_range, SEGMENTS};
use dkv_storage::{Cursor, Digests};

use super::{bucket_of, BUCKETS, PAGE};
use crate::life::state::Node;

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
pub(super) fn summarize(node: &Node, topo: &Topology, horizon: Option<u64>) -> (Summaries, u64) {
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
pub(super) fn from_kept(node: &Node, topo: &Topology, kept: &Digests) -> Summaries {
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
