//! Rounds between real nodes of a test cluster: what is compared, what is exchanged, and when a
//! pair is skipped.

use std::collections::HashSet;

use dkv_membership::{NodeState, View};
use dkv_placement::key_hash;
use dkv_storage::digests::segment_range;
use dkv_storage::{Entry, Version};

use super::digests::{from_kept, summaries, summarize};
use super::*;
use crate::config::NodeConfig;
use crate::testing;
use crate::transport::wire::Kind;

/// `count` keys named `{prefix}N` whose hashes fall in bucket `bucket`.
fn keys_in_bucket(prefix: &str, bucket: usize, count: usize) -> Vec<String> {
    (0..).map(|i| format!("{prefix}{i}")).filter(|k| bucket_of(key_hash(k.as_bytes())) == bucket).take(count).collect()
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
    let (nodes, engines) = testing::cluster_counting(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
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
