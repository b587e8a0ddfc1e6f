//! Delivering hints: every heartbeat interval, each replica's kept writes go to it while it
//! still replicates their keys, or else (it left the membership, or a join took the key's range
//! from it meanwhile) to each key's current replicas. A batch stays in the store while it is out
//! (counted as pending, saved with the others); one that fails goes back in the queue for the
//! next round.
//!
//! A hint is not delivered to a member that no longer replicates its key: nothing would ever read
//! it there, anti-entropy compares no such copy, and the next membership change would hand it to
//! the key's replicas as a misplaced key, however old by then: a delete of the key, its
//! tombstone purged since, would be undone.

use std::collections::HashMap;

use dkv_membership::NodeId;
use dkv_placement::key_hash;
use tokio::sync::watch;

use crate::error::PeerError;
use crate::life::state::Node;
use crate::life::stats::add;
use crate::transport::wire::{ApplyKind, KeyEntry};

/// Hints per delivery batch.
const HINT_BATCH: usize = 512;

/// Deliver kept hints every heartbeat interval: to the replica that missed them while it still
/// replicates their keys, or else to the keys' current replicas. While
/// there are none, wait for one instead: an idle node has no timer to wake it for nothing.
pub async fn deliver_hints_loop(node: Node, mut stop: watch::Receiver<bool>) {
    loop {
        if node.hints.targets().is_empty() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = node.hints.kept() => {}
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(node.config.heartbeat_interval) => {}
        }
        for target in node.hints.targets() {
            deliver_hints(&node, target).await;
        }
    }
}

async fn deliver_hints(node: &Node, target: NodeId) {
    loop {
        let batch = node.hints.take(target, HINT_BATCH, std::time::Instant::now());
        if batch.is_empty() {
            return;
        }
        let topo = node.topology();
        let (its, moved): (Vec<KeyEntry>, Vec<KeyEntry>) = match topo.member(target) {
            Some(_) => batch.into_iter().partition(|kv| topo.placement(key_hash(&kv.key)).write.contains(&target)),
            None => (Vec::new(), batch),
        };
        let mut result = Ok(());
        if !its.is_empty() {
            result = node.apply_on(&topo, target, ApplyKind::Hint, its).await;
        }
        if result.is_ok() && !moved.is_empty() {
            result = redirect(node, &topo, moved).await;
        }
        match result {
            Ok(()) => add(&node.stats.hints_delivered, node.hints.delivered(target) as u64),
            Err(e) => {
                tracing::debug!("delivering hints for node {target} failed: {e}");
                node.hints.put_back(target);
                return;
            }
        }
    }
}

/// Hints for a node that no longer replicates their keys go to each key's current replicas.
async fn redirect(node: &Node, topo: &dkv_membership::Topology, batch: Vec<KeyEntry>) -> Result<(), PeerError> {
    let mut by_dest: HashMap<NodeId, Vec<KeyEntry>> = HashMap::new();
    for kv in batch {
        for id in topo.placement(key_hash(&kv.key)).write {
            by_dest.entry(id).or_default().push(kv.clone());
        }
    }
    for (id, kvs) in by_dest {
        node.apply_on(topo, id, ApplyKind::Hint, kvs).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use dkv_membership::NodeState;

    use super::*;
    use crate::testing;

    /// A hint for a member that no longer replicates its key (a join took the range from it
    /// after the hint was kept) goes to the key's replicas, not to that member.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hint_goes_to_the_keys_replicas_once_its_target_no_longer_replicates_it() {
        let nodes = testing::cluster(&[NodeState::Normal; 4], testing::config()).await;
        let (holder, target) = (&nodes[0], nodes[1].me);
        let topo = holder.topology();
        let key = (0..10_000)
            .map(|i| format!("k{i}"))
            .find(|k| !topo.placement(key_hash(k.as_bytes())).write.contains(&target))
            .expect("a key node 2 does not replicate");
        let replicas = topo.placement(key_hash(key.as_bytes())).write;
        let kv = KeyEntry { key: key.clone().into(), entry: testing::value(7, 8) };
        assert!(holder.hints.add(target, kv, std::time::Instant::now()));
        deliver_hints(holder, target).await;
        assert!(holder.hints.targets().is_empty(), "delivered");
        assert_eq!(testing::local(&nodes[1], key.as_bytes()), None, "not to node 2");
        for n in nodes.iter().filter(|n| replicas.contains(&n.me)) {
            assert_eq!(testing::local(n, key.as_bytes()), Some(testing::value(7, 8)), "to replica {}", n.me);
        }
    }

    /// A node stores entries in its own store by the view they were planned under only while it
    /// still holds that view, as a peer does: a hint delivered to itself by a view it had just
    /// left would land after that view's hand-off pass, a copy nothing reads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_applies_to_itself_only_under_the_view_it_holds() {
        let nodes = testing::cluster(&[NodeState::Normal; 3], testing::config()).await;
        let node = &nodes[0];
        let before = node.topology();
        let mut view = before.view.clone();
        view.epoch += 1;
        view.nodes.retain(|m| m.id != nodes[2].me);
        assert!(node.adopt(view));
        let kv = KeyEntry { key: b"k".to_vec().into(), entry: testing::value(7, 8) };
        let err = node.apply_on(&before, node.me, ApplyKind::Hint, vec![kv.clone()]).await.expect_err("an older view");
        assert!(err.to_string().contains("view moved"), "{err}");
        assert_eq!(testing::local(node, b"k"), None, "nothing stored");
        node.apply_on(&node.topology(), node.me, ApplyKind::Hint, vec![kv]).await.expect("the view it holds");
        assert_eq!(testing::local(node, b"k"), Some(testing::value(7, 8)));
    }
}
