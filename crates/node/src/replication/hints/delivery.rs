//! Delivering hints: every heartbeat interval, each replica's kept writes go to it while it
//! still replicates their keys; the others (it left the membership, or a join took the key's
//! range from it meanwhile) join the queues of each key's current replicas, with their age, and
//! go with those. A batch stays in the store while it is out (counted as pending, saved with the
//! others); one that fails goes back in its queue for the next round, and holds back no other
//! replica's hints.
//!
//! A hint is not delivered to a member that no longer replicates its key: nothing would ever read
//! it there, anti-entropy compares no such copy, and the next membership change would hand it to
//! the key's replicas as a misplaced key, however old by then: a delete of the key, its
//! tombstone purged since, would be undone.

use dkv_membership::{Member, NodeId, NodeState};
use dkv_placement::key_hash;
use tokio::sync::watch;

use crate::life::state::Node;
use crate::life::stats::add;
use crate::transport::wire::{split_by_bytes, ApplyKind, HandedHint, KeepHintsRequest, KeyEntry, Kind};

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
        // Hints for keys `target` no longer replicates join their replicas' own queues, to go
        // with those (a replica that cannot take them holds back its queue alone). Until
        // 2026-12-06 they were sent from here, and one paused replica held back the batch, and
        // every other replica's share of it, until the hints aged out.
        let topo = node.topology();
        let replicates =
            |kv: &KeyEntry| topo.member(target).is_some() && topo.placement(key_hash(&kv.key)).write.contains(&target);
        node.hints.hand_over(target, |kv| (!replicates(kv)).then(|| topo.placement(key_hash(&kv.key)).write));
        let its: Vec<KeyEntry> = batch.into_iter().filter(|kv| replicates(kv)).collect();
        if its.is_empty() {
            continue;
        }
        match node.apply_on(&topo, target, ApplyKind::Hint, its).await {
            Ok(()) => add(&node.stats.hints_delivered, node.hints.delivered(target) as u64),
            Err(e) => {
                tracing::debug!("delivering hints for node {target} failed: {e}");
                node.hints.put_back(target);
                return;
            }
        }
    }
}

/// A leaving node's hints: delivered once more, and what cannot be (its replica is down or
/// paused) handed on to a member that stays, which keeps them with their age and delivers them
/// as its own. Until 2026-12-06 they went with the node and its `hints.log`, and the replicas
/// stayed a copy short until anti-entropy. Returns how many hints no member took (dropped).
pub async fn hand_on(node: &Node) -> usize {
    for target in node.hints.targets() {
        deliver_hints(node, target).await;
    }
    let topo = node.topology();
    let mut dropped = 0;
    for target in node.hints.targets() {
        // Members that stay and are not the hints' target, in the order of the view.
        let keepers: Vec<_> = topo
            .view
            .nodes
            .iter()
            .filter(|m| m.state == NodeState::Normal && m.id != node.me && m.id != target)
            .collect();
        loop {
            let batch = node.hints.take_aged(target, HINT_BATCH, std::time::Instant::now());
            if batch.is_empty() {
                break;
            }
            let hints = batch
                .into_iter()
                .map(|(kv, age)| HandedHint { target: target.0, age_ms: age.as_millis() as u64, kv })
                .collect();
            // In frames a member takes (a batch of hints of large values is over one).
            for hints in split_by_bytes(hints, |h: &HandedHint| h.kv.bytes()) {
                let req = KeepHintsRequest { hints };
                if !hand_to_a_keeper(node, &keepers, target, &req).await {
                    dropped += req.hints.len();
                    tracing::warn!(
                        "no remaining member took {} hints for node {target}: they go with this node \
                         (anti-entropy repairs what they carried)",
                        req.hints.len()
                    );
                }
            }
            node.hints.delivered(target);
        }
    }
    dropped
}

/// Send hints for `target` to the first of `keepers` that takes them; whether one did.
async fn hand_to_a_keeper(node: &Node, keepers: &[&Member], target: NodeId, req: &KeepHintsRequest) -> bool {
    for keeper in keepers {
        match node.peers.call::<_, ()>(&keeper.addr, Kind::KeepHints, req).await {
            Ok(()) => {
                tracing::debug!("{} hints for node {target} handed to node {}", req.hints.len(), keeper.id);
                return true;
            }
            Err(e) => tracing::debug!("node {} did not keep hints for node {target}: {e}", keeper.id),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing;

    /// A value of `len` bytes whose version was made as this test process started: hints are
    /// aged from their version too, so one of a made-up early version would be long expired.
    fn recent(len: usize) -> dkv_storage::Entry {
        static TS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let ts = *TS.get_or_init(|| dkv_storage::Hlc::ts_at_ms(crate::replication::hints::wall_ms()));
        testing::value(ts, len)
    }

    /// Deliver every queue until none is left, or `rounds` passes over them.
    async fn deliver_all(holder: &Node, rounds: usize) {
        for _ in 0..rounds {
            for target in holder.hints.targets() {
                deliver_hints(holder, target).await;
            }
        }
    }

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
        let kv = KeyEntry { key: key.clone().into(), entry: recent(8) };
        assert!(holder.hints.add(target, kv, std::time::Instant::now()));
        deliver_all(holder, 2).await;
        assert!(holder.hints.targets().is_empty(), "delivered");
        assert_eq!(testing::local(&nodes[1], key.as_bytes()), None, "not to node 2");
        for n in nodes.iter().filter(|n| replicas.contains(&n.me)) {
            assert_eq!(testing::local(n, key.as_bytes()), Some(recent(8)), "to replica {}", n.me);
        }
    }

    /// Hints for a member that left go to each key's replicas, and one replica that cannot
    /// take them holds back its own share alone: more than a batch of hints, with one of the
    /// three replicas stopped, all reach the other two. (Sent from the left member's batch,
    /// the first failure held back the batch and every one after it, for every replica.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_cannot_take_hints_holds_back_only_its_own() {
        let mut nodes = testing::cluster(&[NodeState::Normal; 4], testing::config()).await;
        let gone = nodes[1].me;
        let mut view = nodes[0].topology().view.clone();
        view.epoch += 1;
        view.nodes.retain(|m| m.id != gone);
        for n in &nodes {
            assert!(n.adopt(view.clone()));
        }
        let stopped_id = testing::stop_last(&mut nodes);
        let holder = &nodes[0];
        let keys: Vec<String> = (0..HINT_BATCH + 100).map(|i| format!("k{i}")).collect();
        for k in &keys {
            let kv = KeyEntry { key: k.clone().into(), entry: recent(8) };
            assert!(holder.hints.add(gone, kv, std::time::Instant::now()));
        }
        deliver_all(holder, 2).await;
        for n in [&nodes[0], &nodes[2]] {
            let missing = keys.iter().filter(|k| testing::local(n, k.as_bytes()).is_none()).count();
            assert_eq!(missing, 0, "node {} is missing {missing} of {} hinted keys", n.me, keys.len());
        }
        assert_eq!(holder.hints.targets(), vec![stopped_id], "the stopped replica's share waits");
        assert_eq!(holder.hints.stats().pending, keys.len());
    }

    /// A leaving node delivers what hints it can and hands the rest, with their age, to a
    /// member that stays, which delivers them once their replica is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leaving_node_hands_its_hints_on_to_a_member_that_stays() {
        let mut nodes = testing::cluster(&[NodeState::Normal; 4], testing::config()).await;
        let down_id = testing::stop_last(&mut nodes);
        let (holder, up) = (&nodes[0], nodes[1].me);
        let t0 = std::time::Instant::now();
        let made = t0.checked_sub(Duration::from_secs(60)).expect("a minute ago");
        let kv = |k: &str| KeyEntry { key: k.to_string().into(), entry: recent(8) };
        // Keys each target replicates, so the hints go to it and nowhere else.
        let topo = holder.topology();
        let replicated_by = |id| {
            (0..10_000)
                .map(|i| format!("k{i}"))
                .filter(|k| topo.placement(key_hash(k.as_bytes())).write.contains(&id))
                .take(HINT_BATCH + 10)
                .collect::<Vec<_>>()
        };
        let (for_up, for_down) = (replicated_by(up), replicated_by(down_id));
        for k in &for_up {
            assert!(holder.hints.add(up, kv(k), made));
        }
        for k in &for_down {
            assert!(holder.hints.add(down_id, kv(k), made));
        }
        assert_eq!(hand_on(holder).await, 0, "none dropped");
        assert_eq!(holder.hints.stats().pending, 0, "nothing left with the leaving node");
        assert!(for_up.iter().all(|k| testing::local(&nodes[1], k.as_bytes()).is_some()), "delivered to node {up}");
        let kept: usize = nodes[1..].iter().map(|n| n.hints.stats().pending).sum();
        assert_eq!(kept, for_down.len(), "the stopped node's hints are kept by a member that stays");
        let keeper = nodes[1..].iter().find(|n| n.hints.stats().pending > 0).expect("a keeper");
        assert_eq!(keeper.hints.targets(), vec![down_id]);
        let ages = keeper.hints.take_aged(down_id, usize::MAX, std::time::Instant::now());
        assert!(ages.iter().all(|(_, age)| *age >= Duration::from_secs(60)), "their age came with them");
    }

    /// Hints of large values are handed on in frames a member takes: 20 hints of 1 MiB are over
    /// one frame together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hints_of_large_values_are_handed_on_in_frames_a_member_takes() {
        let mut nodes = testing::cluster(&[NodeState::Normal; 3], testing::config()).await;
        let down_id = testing::stop_last(&mut nodes);
        let holder = &nodes[0];
        for i in 0..20 {
            let kv = KeyEntry { key: format!("big-{i}").into(), entry: recent(1 << 20) };
            assert!(holder.hints.add(down_id, kv, std::time::Instant::now()));
        }
        assert_eq!(hand_on(holder).await, 0, "none dropped");
        assert_eq!(nodes[1].hints.stats().pending, 20, "all kept by the member that stays");
    }

    /// A member that is leaving too keeps no hints: the next one is asked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leaving_member_keeps_no_hints() {
        let nodes = testing::cluster(&[NodeState::Normal; 3], testing::config()).await;
        nodes[1].set_life(crate::life::state::Life::Leaving);
        let req = KeepHintsRequest {
            hints: vec![HandedHint { target: 3, age_ms: 0, kv: KeyEntry { key: "k".into(), entry: recent(8) } }],
        };
        let refused =
            nodes[0].peers.call::<_, ()>(&nodes[1].topology().view.nodes[1].addr, Kind::KeepHints, &req).await;
        assert!(refused.expect_err("leaving").to_string().contains("keeps no hints"));
        nodes[0]
            .peers
            .call::<_, ()>(&nodes[2].topology().view.nodes[2].addr, Kind::KeepHints, &req)
            .await
            .expect("kept");
        assert_eq!(nodes[2].hints.targets(), vec![NodeId(3)]);
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
        let kv = KeyEntry { key: b"k".to_vec().into(), entry: recent(8) };
        let err = node.apply_on(&before, node.me, ApplyKind::Hint, vec![kv.clone()]).await.expect_err("an older view");
        assert!(err.to_string().contains("view moved"), "{err}");
        assert_eq!(testing::local(node, b"k"), None, "nothing stored");
        node.apply_on(&node.topology(), node.me, ApplyKind::Hint, vec![kv]).await.expect("the view it holds");
        assert_eq!(testing::local(node, b"k"), Some(recent(8)));
    }
}
