//! Where a public request goes. Pure: a topology, a key hash, the operation and the hop count in,
//! a decision out.
//!
//! A write is coordinated by the node the client asked, whether or not it holds a copy: it stamps
//! the version and sends it to the key's replicas itself. Forwarding a write is not safe. A
//! forward to a stalled replica is hedged to the next one (or retried there after a timeout),
//! and the stalled one still runs its copy once it wakes; stamped then, that copy would be newer
//! than writes acknowledged in between and overwrite them.
//!
//! A read is served by any replica of the key on the read ring; any other node forwards it to
//! the key's first replica. Reads can be hedged and run twice: they change nothing. Two nodes
//! whose views disagree (one saw a membership change the other did not yet) could pass a read
//! back and forth, so forwards are counted in a header and bounded by [`MAX_HOPS`], after which
//! the client gets a 503 to retry.

use dkv_membership::{NodeId, Topology};

use crate::transport::wire::Op;

/// Forwards a request may take before it is refused.
pub const MAX_HOPS: u8 = 2;

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A read of a key whose only copy is this node's, with no move of it under way: answered
    /// from the local store, without the replica machinery. (Writes are never routed here: that
    /// check must be made under the write fence, see `coordinator.rs`.)
    Alone,
    /// This node coordinates the request.
    Local,
    /// Pass the read on to the key's first replica.
    Forward(NodeId),
    /// Nobody can serve it now; the text says why.
    Unavailable(String),
}

pub fn route(topo: &Topology, hash: u64, op: Op, hops: u8) -> Route {
    if op == Op::Get && topo.sole_replica(hash) == Some(topo.me) {
        return Route::Alone;
    }
    match topo.coordinator(hash) {
        None => Route::Unavailable("no node owns data yet: the cluster has no serving members".into()),
        Some(_) if op != Op::Get || topo.is_read_replica(topo.me, hash) => Route::Local,
        Some(_) if hops >= MAX_HOPS => Route::Unavailable(format!(
            "request forwarded {hops} times without reaching its owner: nodes disagree about membership; retry shortly"
        )),
        Some(id) => Route::Forward(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_membership::{Member, NodeState, View};
    use dkv_placement::{key_hash, tokens_for};

    fn topo(me: u64, members: &[(u64, NodeState)]) -> Topology {
        let nodes = members
            .iter()
            .map(|&(id, state)| Member {
                id: NodeId(id),
                addr: format!("h:{id}"),
                tokens: tokens_for(id, 32).into(),
                state,
                last_seen_ms: 0,
            })
            .collect();
        Topology::new(View { epoch: 1, nodes }, NodeId(me), 1)
    }

    #[test]
    fn writes_are_coordinated_wherever_they_arrive() {
        let a = topo(1, &[(1, NodeState::Normal), (2, NodeState::Normal)]);
        let mut forwarded_reads = 0;
        for i in 0..100 {
            let h = key_hash(format!("k{i}").as_bytes());
            forwarded_reads += usize::from(matches!(route(&a, h, Op::Get, 0), Route::Forward(_)));
            for op in [Op::Put, Op::Delete] {
                assert_eq!(route(&a, h, op, 0), Route::Local);
                assert_eq!(route(&a, h, op, MAX_HOPS), Route::Local, "a write forwarded by a release before");
            }
        }
        assert!(forwarded_reads > 0, "node 2 owns some keys");
    }

    #[test]
    fn owner_serves_others_forward_and_forwarding_is_bounded() {
        let a = topo(1, &[(1, NodeState::Normal), (2, NodeState::Normal)]);
        let mut local = 0;
        for i in 0..100 {
            let h = key_hash(format!("k{i}").as_bytes());
            match route(&a, h, Op::Get, 0) {
                // One copy per key (N = 1): its owner reads it from its own store.
                Route::Alone => local += 1,
                Route::Local => panic!("a read of a key with one copy, here, is served alone"),
                Route::Forward(id) => {
                    assert_eq!(id, NodeId(2));
                    assert!(matches!(route(&a, h, Op::Get, MAX_HOPS), Route::Unavailable(_)));
                    assert_eq!(route(&a, h, Op::Get, MAX_HOPS - 1), Route::Forward(NodeId(2)));
                }
                Route::Unavailable(e) => panic!("{e}"),
            }
        }
        assert!(local > 0 && local < 100);
    }

    #[test]
    fn only_a_read_of_the_only_copy_with_nothing_moving_is_served_alone() {
        let one = topo(1, &[(1, NodeState::Normal)]);
        assert_eq!(route(&one, 5, Op::Get, 0), Route::Alone);
        assert_eq!(route(&one, 5, Op::Put, 0), Route::Local, "a write checks under the fence");
        let normal = [(1, NodeState::Normal), (2, NodeState::Normal), (3, NodeState::Normal)];
        let three = Topology::new(topo(1, &normal).view.clone(), NodeId(1), 3);
        assert_eq!(route(&three, 5, Op::Get, 0), Route::Local, "three copies: a quorum read");
        // Node 2 joins: the keys it takes over are moving, and read with the full path.
        let joining = topo(1, &[(1, NodeState::Normal), (2, NodeState::Joining)]);
        let routes: Vec<Route> =
            (0..100).map(|i| route(&joining, key_hash(format!("k{i}").as_bytes()), Op::Get, 0)).collect();
        assert!(routes.contains(&Route::Alone) && routes.contains(&Route::Local), "{routes:?}");
    }

    #[test]
    fn two_views_that_disagree_cannot_bounce_forever() {
        // Node 1 believes only node 2 exists; node 2 believes only node 1 exists.
        let one = topo(1, &[(2, NodeState::Normal)]);
        let two = topo(2, &[(1, NodeState::Normal)]);
        let (mut at, mut hops) = (1, 0u8);
        let h = key_hash(b"k");
        loop {
            let t = if at == 1 { &one } else { &two };
            match route(t, h, Op::Get, hops) {
                Route::Forward(id) => {
                    at = id.0;
                    hops += 1;
                }
                Route::Unavailable(_) => break,
                Route::Alone | Route::Local => panic!("neither node owns the key in its own view"),
            }
        }
        assert_eq!(hops, MAX_HOPS);
    }

    #[test]
    fn joining_only_cluster_is_unavailable() {
        let t = topo(1, &[(1, NodeState::Joining)]);
        assert!(matches!(route(&t, 5, Op::Put, 0), Route::Unavailable(_)));
    }
}
