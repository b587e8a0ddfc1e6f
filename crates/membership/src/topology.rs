//! What a view means for placement, as seen from one node.

use std::collections::HashMap;

use dkv_placement::Ring;

use crate::{Digest, Member, NodeId, NodeState, View};

/// Replicas of one key under the current topology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Replicas on the read ring, in preference order: they hold the data now. `read[0]` is the
    /// key's coordinator.
    pub read: Vec<NodeId>,
    /// Every node a write must reach: `read` followed by the future-ring replicas not already in
    /// it (nodes joining into the key's range, or taking it over from a leaving node).
    pub write: Vec<NodeId>,
}

/// A view turned into rings, built once per membership change and shared read-only.
#[derive(Clone, Debug)]
pub struct Topology {
    pub view: View,
    pub me: NodeId,
    /// Replication factor N: copies of each key.
    pub replicas: usize,
    read: Ring<NodeId>,
    future: Ring<NodeId>,
    index: HashMap<NodeId, usize>,
    /// The view's digest, which every heartbeat sends: computed once here.
    digest: Digest,
}

impl Topology {
    pub fn new(view: View, me: NodeId, replicas: usize) -> Self {
        let ring_of = |keep: fn(NodeState) -> bool| {
            Ring::new(view.nodes.iter().filter(|m| keep(m.state)).map(|m| (m.id, m.tokens.iter().copied())))
        };
        let read = ring_of(|s| s != NodeState::Joining);
        let future = ring_of(|s| s != NodeState::Leaving);
        let index = view.nodes.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
        let digest = view.digest();
        Topology { view, me, replicas: replicas.max(1), read, future, index, digest }
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
        p.write.splice(0..0, p.read.iter().copied());
        p
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

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_placement::{key_hash, tokens_for};

    fn member(id: u64, state: NodeState) -> Member {
        Member { id: NodeId(id), addr: format!("h:{id}"), tokens: tokens_for(id, 64), state, last_seen_ms: 0 }
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
            assert_eq!(p.read, vec![NodeId(1)]);
            if p.write.contains(&NodeId(2)) {
                saw_join = true;
                assert_eq!(p.write, vec![NodeId(1), NodeId(2)]);
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
            if p.read == vec![NodeId(1)] {
                assert_eq!(p.write, vec![NodeId(1), NodeId(2)]);
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
            assert_eq!(holders, t.placement(pos).read, "the read replicas of the span's start");
            assert_eq!(t.placement(end).read, holders, "and of its end");
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
}
