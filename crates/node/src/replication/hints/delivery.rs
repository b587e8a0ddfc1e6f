//! Delivering hints: every heartbeat interval, each replica's kept writes go to it while it is a
//! member, or, once it has left the membership, to each key's current replicas. A batch stays
//! in the store while it is out (counted as pending, saved with the others); one that fails goes
//! back in the queue for the next round.

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

/// Deliver kept hints every heartbeat interval: to the replica that missed them while it is a
/// member, or — once it is gone from the membership — to the key's current replicas. While
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
        let result = if topo.member(target).is_some() {
            node.apply_on(&topo, target, ApplyKind::Hint, batch).await
        } else {
            redirect(node, &topo, batch).await
        };
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

/// Hints for a node that left the membership go to each key's current replicas.
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
