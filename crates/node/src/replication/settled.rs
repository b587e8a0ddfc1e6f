//! For which keys a replica's answer is complete while the membership is changing.
//!
//! A read decides on R answers only when each comes from a replica that holds every write of the
//! key that was acknowledged before (see `coordinator.rs`), and a write is acknowledged by W
//! only such replicas: one that lacks an earlier write cannot answer "superseded" to a write
//! stamped below it (`votes.rs`). A node that finished an anti-entropy
//! round with every peer under the current view does, for all its keys ([`Node::settled`]).
//! Between a view change and the end of that round, which takes a heartbeat interval and the
//! round itself, a replica still does for a key it replicated in the view it last settled under
//! and in every view it adopted since: it received the key's writes all along.
//!
//! A replica that gained the key through a change does not. When the seed expires a member, the
//! next node on the ring takes over its ranges at once, with none of their data: nothing can be
//! pulled from a dead node, so the new replica gets the keys in its next full round. Until then
//! its answer, a value or "not found", may be older than a write acknowledged by the member it
//! replaced and one other replica. Counted as one of R = 2 answers beside a replica that missed
//! that write, it made a read return the value before an acknowledged write (found by the fault
//! injection, `scripts/nemesis.py`, with a partition on top of an expiry).
//!
//! So a node keeps the views it adopted since the one from which it is complete, a few at most:
//! the view of its last full round, the view its join began its copies under (it copied its
//! ranges of that view, and received their writes while it copied; a range it gained during the
//! join, from a member expired meanwhile, waits for its first round), or, for the first member
//! of a new cluster, the view it started with. A view dropped from the few, a restart on a data directory, or being sent
//! back to joining mean "not complete" until the next round settles: the answer is then weak, and
//! the read asks the other replicas as well. (A node that stopped cleanly while settled and
//! starts again under the same view is settled at once: see `life/local.rs`.) Without the join's base, every answer of a cluster
//! that just started was weak until its first round, which a stalled member holds up: each read
//! then waited the request timeout for it.
//!
//! [`Node::settled`]: crate::life::state::Node::settled

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use dkv_membership::{NodeId, Topology};

/// Views kept since the base: a node adopts one per membership change (two per join: its start
/// and its end), and settles within a few of them unless the membership keeps changing, when no
/// answer of its own is trusted beyond them. Consecutive views share their unchanged rings.
const KEPT: usize = 16;

/// The views a node adopted since the one it is complete from, oldest first (only the newest
/// while it is complete from none).
#[derive(Default)]
struct Chain {
    views: VecDeque<Arc<Topology>>,
    /// Index in `views` of the view the node is complete from (its last full round's, its
    /// join's start once the join ended, or its start as a new cluster's first member), if it
    /// has one.
    settled: Option<usize>,
    /// While the node joins: index in `views` of the view its join started under. Its copies
    /// hold every key it replicated in that view and in every view since (it received their
    /// writes while it copied), but not a key it gained in a later one: a member expired
    /// meanwhile handed nothing over, and a holder already copied from is not asked again.
    join_base: Option<usize>,
}

impl Chain {
    fn adopted(&mut self, topo: Arc<Topology>) {
        if self.settled.is_none() && self.join_base.is_none() {
            // Nothing to check against: only the newest view matters, for a round that ends
            // under it. (A node that never settles, a member being down for good, holds one.)
            self.views.clear();
        }
        self.views.push_back(topo);
        if self.views.len() > KEPT {
            self.views.pop_front();
            self.settled = self.settled.and_then(|i| i.checked_sub(1));
            self.join_base = self.join_base.and_then(|i| i.checked_sub(1));
        }
    }

    /// A full round ended under `topo`: complete from it, and views before it no longer matter.
    /// A round under a view no longer kept tells nothing (which views came since is unknown),
    /// and leaves the base as it was.
    fn settled_under(&mut self, topo: &Arc<Topology>) {
        if let Some(i) = self.views.iter().rposition(|v| Arc::ptr_eq(v, topo)) {
            self.views.drain(..i);
            self.settled = Some(0);
            self.join_base = self.join_base.map(|b| b.saturating_sub(i));
        }
    }

    /// A join begins its copies under the newest view.
    fn join_began(&mut self) {
        self.join_base = Some(self.views.len() - 1);
    }

    /// The join's copies ended: complete from the view they began under, if still kept (else
    /// from none, until a round).
    fn joined(&mut self) {
        if let Some(base) = self.join_base.take() {
            self.settled = Some(base);
        }
    }

    /// The node holds every acknowledged write of its ranges in the newest view: there were
    /// none (the first member of a new cluster).
    fn complete_now(&mut self) {
        let last = self.views.len() - 1;
        self.views.drain(..last);
        self.settled = Some(0);
    }

    /// Whether `me` held `hash` in the view it is complete from and in every view since.
    fn complete_for(&self, me: NodeId, hash: u64) -> bool {
        let Some(i) = self.settled else { return false };
        self.views.iter().skip(i).all(|t| holds(t, me, hash))
    }
}

/// Whether `me` receives every write of `hash` in the view `t`: as one of its replicas, or,
/// while it joins, as one of its future replicas (a joining node is in the key's write set).
fn holds(t: &Topology, me: NodeId, hash: u64) -> bool {
    match t.my_state() {
        Some(dkv_membership::NodeState::Joining) => t.is_future_replica(me, hash),
        _ => t.is_read_replica(me, hash),
    }
}

/// [`Chain`], shared: views are recorded as they are installed, rounds mark where they settled,
/// and replicas ask on their read path, only while the node is not settled.
pub struct SettledViews(Mutex<Chain>);

impl SettledViews {
    /// Starting with `topo`, the view a node starts with, not settled under.
    pub fn new(topo: Arc<Topology>) -> SettledViews {
        let mut chain = Chain::default();
        chain.adopted(topo);
        SettledViews(Mutex::new(chain))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `topo` was installed, after every view recorded so far.
    pub fn adopted(&self, topo: Arc<Topology>) {
        self.lock().adopted(topo);
    }

    /// A round with every peer ended under `topo`.
    pub fn settled_under(&self, topo: &Arc<Topology>) {
        self.lock().settled_under(topo);
    }

    /// The node holds every acknowledged write of its ranges in the newest view (see
    /// [`Chain::complete_now`]).
    pub fn complete_now(&self) {
        self.lock().complete_now();
    }

    /// Nothing of this node is complete until its next round (sent back to joining: it missed
    /// writes while it was not a member).
    pub fn forget(&self) {
        let mut chain = self.lock();
        chain.settled = None;
        chain.join_base = None;
    }

    /// The node begins to copy its ranges for a join, under the newest view (see
    /// [`Chain::join_base`]).
    pub fn join_began(&self) {
        self.lock().join_began();
    }

    /// The join's copies ended: the node is complete for the keys it replicated in the view
    /// they began under and in every view since, not for ones it gained in between.
    pub fn joined(&self) {
        self.lock().joined();
    }

    /// Whether `me` holds every acknowledged write of `hash`, by the views alone (the caller
    /// checks the node's life: a node joining holds nothing yet).
    pub fn complete_for(&self, me: NodeId, hash: u64) -> bool {
        self.lock().complete_for(me, hash)
    }

    /// [`complete_for`](Self::complete_for) every one of `hashes` (a batch of reads), under one lock.
    pub fn complete_for_all(&self, me: NodeId, hashes: &[u64]) -> bool {
        let chain = self.lock();
        hashes.iter().all(|&h| chain.complete_for(me, h))
    }
}

#[cfg(test)]
mod tests {
    use dkv_membership::{Member, NodeState, View};

    use super::*;

    const ME: NodeId = NodeId(1);

    /// A view of the members `ids` at `epoch`, every one `normal`, each with tokens spread
    /// evenly, seen by node 1 with N = 2.
    fn view(epoch: u64, ids: &[u64]) -> Arc<Topology> {
        let nodes = ids
            .iter()
            .map(|&id| Member {
                id: NodeId(id),
                addr: format!("127.0.0.1:{id}"),
                tokens: (0..16u64).map(|v| (v * 8 + id) * (u64::MAX / 128)).collect(),
                state: NodeState::Normal,
                last_seen_ms: 0,
            })
            .collect();
        Arc::new(Topology::new(View { epoch, nodes }, ME, 2))
    }

    /// Hashes node 1 replicates in `a` and not in `b`, and in both.
    fn split(a: &Topology, b: &Topology) -> (Vec<u64>, Vec<u64>) {
        let hashes = (0..4096u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mine: Vec<u64> = hashes.filter(|&h| b.is_read_replica(ME, h)).collect();
        mine.into_iter().partition(|&h| !a.is_read_replica(ME, h))
    }

    #[test]
    fn after_a_change_only_the_keys_replicated_all_along_are_complete() {
        let (before, after) = (view(1, &[1, 2, 3, 4]), view(2, &[1, 2, 3]));
        let (gained, kept) = split(&before, &after);
        assert!(!gained.is_empty() && !kept.is_empty(), "node 4's expiry gives node 1 keys");
        let chain = SettledViews::new(before.clone());
        assert!(!chain.complete_for(ME, kept[0]), "nothing is complete before a round settles");
        chain.settled_under(&before);
        chain.adopted(after.clone());
        assert!(kept.iter().all(|&h| chain.complete_for(ME, h)), "replicated before and after");
        assert!(gained.iter().all(|&h| !chain.complete_for(ME, h)), "gained with node 4's expiry");
        chain.settled_under(&after);
        assert!(gained.iter().all(|&h| chain.complete_for(ME, h)), "a round settled them");
    }

    #[test]
    fn a_key_lost_and_gained_back_since_the_round_is_not_complete() {
        let (three, four) = (view(1, &[1, 2, 3]), view(2, &[1, 2, 3, 4]));
        let (lost_then_back, kept) = split(&four, &three);
        assert!(!lost_then_back.is_empty() && !kept.is_empty(), "node 4's join takes keys from node 1");
        let chain = SettledViews::new(three.clone());
        chain.settled_under(&three);
        chain.adopted(four);
        chain.adopted(view(3, &[1, 2, 3])); // node 4 gone again: the keys come back
        assert!(lost_then_back.iter().all(|&h| !chain.complete_for(ME, h)), "writes went elsewhere meanwhile");
        assert!(kept.iter().all(|&h| chain.complete_for(ME, h)));
    }

    /// Node 1 `joining` in a view of nodes 1 to 4 (N = 2), the others `normal`.
    fn joining(epoch: u64) -> Arc<Topology> {
        joining_among(epoch, &[1, 2, 3, 4])
    }

    /// Node 1 `joining` in a view of the members `ids` (node 1 first), the others `normal`.
    fn joining_among(epoch: u64, ids: &[u64]) -> Arc<Topology> {
        let mut t = view(epoch, ids).view.clone();
        t.nodes[0].state = NodeState::Joining;
        Arc::new(Topology::new(t, ME, 2))
    }

    /// Node 1 joins a cluster of 2 to 5; node 5 expires while it copies. Its keys were never
    /// handed over, and the holders node 1 had copied from are not asked again: the ranges node 1
    /// gained from it are not complete at the join's end, the ones it copied are.
    #[test]
    fn a_join_is_not_complete_for_ranges_gained_while_it_copied() {
        let (began, expired, after) =
            (joining_among(2, &[1, 2, 3, 4, 5]), joining_among(3, &[1, 2, 3, 4]), view(4, &[1, 2, 3, 4]));
        let hashes = (0..4096u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mine = hashes.filter(|&h| after.is_read_replica(ME, h));
        let (kept, gained): (Vec<u64>, Vec<u64>) = mine.partition(|&h| holds(&began, ME, h));
        assert!(!gained.is_empty() && !kept.is_empty(), "node 5's expiry gives node 1 keys");
        let chain = SettledViews::new(view(1, &[2, 3, 4, 5]));
        chain.adopted(began);
        chain.join_began();
        chain.adopted(expired);
        chain.joined();
        chain.adopted(after.clone());
        assert!(kept.iter().all(|&h| chain.complete_for(ME, h)), "copied, and a replica since");
        assert!(gained.iter().all(|&h| !chain.complete_for(ME, h)), "gained by the expiry during the copies");
        chain.settled_under(&after);
        assert!(gained.iter().all(|&h| chain.complete_for(ME, h)), "a round settled them");
    }

    #[test]
    fn a_join_that_ended_is_complete_for_the_ranges_it_copied_and_a_node_sent_back_for_none() {
        let (during, after) = (joining(2), view(3, &[1, 2, 3, 4]));
        let mine: Vec<u64> = (0..4096u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .filter(|&h| after.is_read_replica(ME, h))
            .collect();
        let not_mine =
            (0..4096u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).find(|&h| !after.is_read_replica(ME, h));
        let chain = SettledViews::new(view(1, &[2, 3, 4]));
        chain.adopted(during);
        chain.join_began();
        assert!(!chain.complete_for(ME, mine[0]), "copying");
        chain.joined();
        chain.adopted(after);
        assert!(mine.iter().all(|&h| chain.complete_for(ME, h)), "copied while joining, a replica since");
        assert!(!chain.complete_for(ME, not_mine.expect("a key of the others")));
        chain.forget();
        assert!(!chain.complete_for(ME, mine[0]), "sent back to joining");
    }

    #[test]
    fn a_round_under_a_view_no_longer_kept_settles_nothing() {
        let first = view(1, &[1, 2, 3]);
        let mine = (0..u64::MAX).step_by(1 << 40).find(|&h| first.is_read_replica(ME, h)).expect("a key of node 1");
        let chain = SettledViews::new(first.clone());
        for epoch in 2..=KEPT as u64 + 1 {
            chain.adopted(view(epoch, &[1, 2, 3]));
        }
        chain.settled_under(&first);
        assert!(!chain.complete_for(ME, mine), "the round's view was dropped: which views came since is unknown");
        let last = view(KEPT as u64 + 2, &[1, 2, 3]);
        chain.adopted(last.clone());
        chain.settled_under(&last);
        assert!(chain.complete_for(ME, mine));
        for epoch in 0..=KEPT as u64 {
            chain.adopted(view(KEPT as u64 + 3 + epoch, &[1, 2, 3]));
        }
        assert!(!chain.complete_for(ME, mine), "the settled view was dropped after more than the kept views");
    }
}
