//! The peer's side of a comparison: which buckets differ (step 1), and for a page of a bucket,
//! what the sender lacks or holds older and what this node wants of the sender's (step 2).

use std::collections::HashMap;

use bytes::Bytes;
use dkv_membership::{NodeId, Topology};
use dkv_storage::{Cursor, KeyVersion, Version};

use super::digests::summaries_now;
use super::{bucket_page, values_of, BUCKETS};
use crate::error::NodeError;
use crate::life::state::Node;
use crate::transport::wire::{
    self, KeyEntry, SyncBucket, SyncBucketReply, SyncDiff, SyncSummary, SyncVersions, SyncVersionsReply,
};

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
