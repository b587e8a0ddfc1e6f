//! What a view means for placement, as seen from one node.

use std::collections::HashMap;
use std::sync::Arc;

use dkv_placement::{Replicas, Ring};

use crate::member::same_tokens;
use crate::{Digest, Member, NodeId, NodeState, View};

/// Replicas of one key under the current topology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Replicas on the read ring, in preference order: they hold the data now. `read[0]` is the
    /// key's coordinator.
    pub read: Replicas<NodeId>,
    /// Every node a write must reach: `read` followed by the future-ring replicas not already in
    /// it (nodes joining into the key's range, or taking it over from a leaving node).
    pub write: Replicas<NodeId>,
}

/// A view turned into rings, built once per membership change and shared read-only.
#[derive(Clone, Debug)]
pub struct Topology {
    pub view: View,
    pub me: NodeId,
    /// Replication factor N: copies of each key.
    pub replicas: usize,
    /// Shared with the topologies before and after as long as the ring does not change: a
    /// join changes only the future ring, and its end only the read ring.
    read: Arc<Ring<NodeId>>,
    future: Arc<Ring<NodeId>>,
    index: HashMap<NodeId, usize>,
    /// The view's digest, which every heartbeat sends: computed once here.
    digest: Digest,
}

impl Topology {
    pub fn new(view: View, me: NodeId, replicas: usize) -> Self {
        let ring_of = |on: fn(NodeState) -> bool| {
            Arc::new(Ring::new(view.nodes.iter().filter(|m| on(m.state)).map(|m| (m.id, m.tokens.iter().copied()))))
        };
        let (read, future) = (ring_of(on_read_ring), ring_of(on_future_ring));
        let index = index_of(&view);
        let digest = view.digest();
        Topology { view, me, replicas: replicas.max(1), read, future, index, digest }
    }

    /// The topology of `view`, a later view seen by the same node: what [`Topology::new`]
    /// builds, with each ring changed from this one's by the members that came, went or changed
    /// tokens on it ([`Ring::changed`]) rather than sorted again whole.
    pub fn next(&self, view: View) -> Self {
        let index = index_of(&view);
        if index.len() != view.nodes.len() || self.index.len() != self.view.nodes.len() {
            // A member listed twice has the union of its tokens on the ring: build it whole.
            return Topology::new(view, self.me, self.replicas);
        }
        let read = self.ring_for(&self.read, &view, &index, on_read_ring);
        let future = self.ring_for(&self.future, &view, &index, on_future_ring);
        let digest = self.digest_with(&view, &index);
        Topology { view, me: self.me, replicas: self.replicas, read, future, index, digest }
    }

    /// `ring` (this topology's ring of the members `on` places there) changed for `view`.
    fn ring_for(
        &self,
        ring: &Arc<Ring<NodeId>>,
        view: &View,
        index: &HashMap<NodeId, usize>,
        on: fn(NodeState) -> bool,
    ) -> Arc<Ring<NodeId>> {
        // Whether `m` is on the ring in the other view, with the same tokens as `there`.
        let placed_as = |m: &Member, there: Option<&Member>| {
            there.is_some_and(|there| on(there.state) && same_tokens(&there.tokens, &m.tokens))
        };
        let gone: Vec<NodeId> = (self.view.nodes.iter())
            .filter(|old| on(old.state) && !placed_as(old, index.get(&old.id).map(|&i| &view.nodes[i])))
            .map(|old| old.id)
            .collect();
        let coming: Vec<&Member> =
            (view.nodes.iter()).filter(|new| on(new.state) && !placed_as(new, self.member(new.id))).collect();
        if gone.is_empty() && coming.is_empty() {
            return ring.clone();
        }
        Arc::new(ring.changed(&gone, coming.iter().map(|new| (new.id, new.tokens.iter().copied()))))
    }

    /// The digest of `view`, a later view seen by the same node, from this topology's: only the
    /// members that changed are hashed. [`View::digest`] hashes every member's tokens, which at a
    /// thousand members was a fifth of a change's cost (`examples/view_change_bench.rs`).
    pub fn digest_of(&self, view: &View) -> Digest {
        self.digest_with(view, &index_of(view))
    }

    /// [`Topology::digest_of`], given `view`'s [`index_of`].
    fn digest_with(&self, view: &View, index: &HashMap<NodeId, usize>) -> Digest {
        if index.len() != view.nodes.len() || self.index.len() != self.view.nodes.len() {
            return view.digest(); // a member listed twice
        }
        let changed = view.nodes.iter().fold(self.digest, |d, new| d.replace(self.member(new.id), Some(new)));
        let gone = self.view.nodes.iter().filter(|old| !index.contains_key(&old.id));
        let digest = gone.fold(changed, |d, old| d.replace(Some(old), None));
        debug_assert_eq!(digest, view.digest(), "the digest kept is the digest of the view");
        digest
    }

    pub fn epoch(&self) -> u64 {
        self.view.epoch
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.index.get(&id).map(|&i| &self.view.nodes[i])
    }

    pub fn my_state(&self) -> Option<NodeState> {
        self.member(self.me).map(|m| m.state)
    }

    /// The node that coordinates requests for `hash`: its first replica on the read ring.
    pub fn coordinator(&self, hash: u64) -> Option<NodeId> {
        self.read.primary(hash)
    }

    /// With one copy per key and no move in progress for `hash`: its only replica. Lets the
    /// common case skip building a [`Placement`].
    pub fn sole_replica(&self, hash: u64) -> Option<NodeId> {
        // One copy: N = 1, or a one-node cluster (N is capped at the number of nodes).
        if self.replicas.min(self.read.node_count()) != 1 || self.replicas.min(self.future.node_count()) != 1 {
            return None;
        }
        let owner = self.read.primary(hash)?;
        (self.future.primary(hash) == Some(owner)).then_some(owner)
    }

    /// Whether `id` is one of the key's replicas on the read ring.
    pub fn is_read_replica(&self, id: NodeId, hash: u64) -> bool {
        let nodes = self.read.node_count();
        match self.replicas.min(nodes) {
            1 => self.read.primary(hash) == Some(id),
            // Every node of the read ring holds every key: no walk needed.
            n if n == nodes => self.member(id).is_some_and(|m| m.state != NodeState::Joining),
            n => self.read.preference_list(hash, n).contains(&id),
        }
    }

    pub fn placement(&self, hash: u64) -> Placement {
        let mut p = Placement::default();
        self.read.preference_list_into(hash, self.replicas, &mut p.read);
        self.future.preference_list_into(hash, self.replicas, &mut p.write);
        p.write.retain(|id| !p.read.contains(id));
        p.write.insert_many(0, p.read.iter().copied());
        p
    }

    /// Whether every hash from `lo` to `hi` has the placement of `lo`: true when no token of
    /// either ring lies in `[lo, hi)` (a run without one may still be uniform; this says false).
    pub fn same_placement_over(&self, lo: u64, hi: u64) -> bool {
        !self.read.has_token_in(lo, hi) && !self.future.has_token_in(lo, hi)
    }

    /// The nodes that hold `hash` now (its read replicas, in preference order) and the last hash
    /// position up to which every position is held by the same nodes: one step of a walk over
    /// the hash space in order (a key scan), never wrapping past `u64::MAX`.
    pub fn read_span(&self, hash: u64) -> (Vec<NodeId>, u64) {
        (self.read.preference_list(hash, self.replicas), self.read.span_end(hash, self.replicas))
    }

    /// Where `hash` will live once current joins and leaves complete.
    pub fn future_replicas(&self, hash: u64) -> Vec<NodeId> {
        self.future.preference_list(hash, self.replicas)
    }

    pub fn is_future_replica(&self, id: NodeId, hash: u64) -> bool {
        self.future_replicas(hash).contains(&id)
    }

    /// Members that hold data now (the read ring), other than this node.
    pub fn data_holders(&self) -> Vec<&Member> {
        self.view.nodes.iter().filter(|m| m.state != NodeState::Joining && m.id != self.me).collect()
    }
}

/// Members that hold their ranges now: reads go to them.
fn on_read_ring(s: NodeState) -> bool {
    s != NodeState::Joining
}

/// Members that will hold their ranges once the joins and leaves in progress are done.
fn on_future_ring(s: NodeState) -> bool {
    s != NodeState::Leaving
}

fn index_of(view: &View) -> HashMap<NodeId, usize> {
    view.nodes.iter().enumerate().map(|(i, m)| (m.id, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_placement::{key_hash, tokens_for};

    fn member(id: u64, state: NodeState) -> Member {
        Member { id: NodeId(id), addr: format!("h:{id}"), tokens: tokens_for(id, 64).into(), state, last_seen_ms: 0 }
    }

    fn topo(members: Vec<Member>, n: usize) -> Topology {
        Topology::new(View { epoch: 1, nodes: members }, NodeId(1), n)
    }

    #[test]
    fn a_joining_node_gets_writes_but_no_reads() {
        let t = topo(vec![member(1, NodeState::Normal), member(2, NodeState::Joining)], 1);
        let mut saw_join = false;
        for i in 0..500 {
            let p = t.placement(key_hash(format!("k{i}").as_bytes()));
            assert_eq!(p.read.as_slice(), [NodeId(1)]);
            if p.write.contains(&NodeId(2)) {
                saw_join = true;
                assert_eq!(p.write.as_slice(), [NodeId(1), NodeId(2)]);
            }
        }
        assert!(saw_join);
    }

    #[test]
    fn a_leaving_node_serves_reads_and_its_successor_gets_writes() {
        let t = topo(vec![member(1, NodeState::Leaving), member(2, NodeState::Normal)], 1);
        for i in 0..200 {
            let h = key_hash(format!("k{i}").as_bytes());
            let p = t.placement(h);
            assert!(p.write.contains(&NodeId(2)), "the future owner always gets the write");
            assert_eq!(t.future_replicas(h), vec![NodeId(2)]);
            if p.read.as_slice() == [NodeId(1)] {
                assert_eq!(p.write.as_slice(), [NodeId(1), NodeId(2)]);
            }
        }
    }

    #[test]
    fn steady_state_write_set_equals_read_set() {
        let t = topo((1..=4).map(|i| member(i, NodeState::Normal)).collect(), 3);
        let p = t.placement(12345);
        assert_eq!(p.read.len(), 3);
        assert_eq!(p.read, p.write);
        assert_eq!(t.coordinator(12345), Some(p.read[0]));
        assert_eq!(t.sole_replica(12345), None, "three copies");
    }

    #[test]
    fn a_one_node_cluster_has_one_copy_whatever_n_is() {
        let t = topo(vec![member(1, NodeState::Normal)], 3);
        assert_eq!(t.sole_replica(42), Some(NodeId(1)));
        let t = topo(vec![member(1, NodeState::Normal), member(2, NodeState::Joining)], 3);
        assert_eq!(t.sole_replica(42), None, "the joining node gets every write");
    }

    #[test]
    fn read_spans_walk_the_space_with_the_holders_of_each_part() {
        let t =
            topo(vec![member(1, NodeState::Normal), member(2, NodeState::Joining), member(3, NodeState::Leaving)], 1);
        let mut pos = 0u64;
        loop {
            let (holders, end) = t.read_span(pos);
            assert_eq!(holders, t.placement(pos).read.as_slice(), "the read replicas of the span's start");
            assert_eq!(t.placement(end).read.as_slice(), holders, "and of its end");
            assert!(!holders.contains(&NodeId(2)), "a joining node holds nothing yet");
            if end == u64::MAX {
                break;
            }
            pos = end + 1;
        }
    }

    #[test]
    fn sole_replica_only_when_nothing_moves() {
        let t = topo(vec![member(1, NodeState::Normal), member(2, NodeState::Joining)], 1);
        for i in 0..300 {
            let h = key_hash(format!("k{i}").as_bytes());
            let p = t.placement(h);
            assert_eq!(t.sole_replica(h).is_some(), p.write.len() == 1, "{p:?}");
        }
    }

    /// A run of random views, each a step from the last (members come, go, change state, address
    /// or tokens), checked at every step: the rings and digest `next` derives are the ones `new`
    /// builds, whether the unchanged members' tokens are shared with the last view or were
    /// decoded afresh (equal, but not the same allocation).
    #[test]
    fn next_builds_the_rings_new_builds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let states = [NodeState::Joining, NodeState::Normal, NodeState::Leaving];
        let mut members: Vec<Member> = Vec::new();
        let mut last = topo(members.clone(), 3);
        for step in 0..400u64 {
            match rng.random_range(0..6) {
                0 | 1 => {
                    let id = rng.random_range(1..40);
                    if members.iter().all(|m| m.id != NodeId(id)) {
                        members.push(member(id, states[rng.random_range(0..3)]));
                    }
                }
                2 if !members.is_empty() => {
                    members.remove(rng.random_range(0..members.len()));
                }
                3 if !members.is_empty() => {
                    let i = rng.random_range(0..members.len());
                    members[i].state = states[rng.random_range(0..3)];
                }
                4 if !members.is_empty() => {
                    let i = rng.random_range(0..members.len());
                    members[i].addr = format!("h:{step}");
                }
                _ if !members.is_empty() => {
                    // New tokens, some shared with another member: ties must order as in `new`.
                    let i = rng.random_range(0..members.len());
                    let other = members[rng.random_range(0..members.len())].tokens.clone();
                    let mut tokens = tokens_for(step + 1000, 8);
                    tokens.extend(other.iter().take(rng.random_range(0..4)));
                    members[i].tokens = tokens.into();
                }
                _ => {}
            }
            let mut view = View { epoch: step + 2, nodes: members.clone() };
            if rng.random_bool(0.3) {
                for m in &mut view.nodes {
                    m.tokens = m.tokens.to_vec().into();
                }
            }
            assert_eq!(last.digest_of(&view), view.digest(), "step {step}");
            let next = last.next(view.clone());
            let whole = Topology::new(view, NodeId(1), 3);
            assert_eq!(next.read, whole.read, "read ring at step {step}");
            assert_eq!(next.future, whole.future, "future ring at step {step}");
            assert_eq!((&next.index, next.digest), (&whole.index, whole.digest), "step {step}");
            last = next;
        }
    }

    #[test]
    fn next_merges_the_tokens_of_a_member_listed_twice_as_new_does() {
        let t = topo(vec![member(1, NodeState::Normal)], 1);
        let mut again = member(1, NodeState::Normal);
        again.tokens = tokens_for(99, 8).into();
        let view = View { epoch: 2, nodes: vec![member(1, NodeState::Normal), again] };
        assert_eq!(t.next(view.clone()).read, Topology::new(view, NodeId(1), 1).read);
    }
}
