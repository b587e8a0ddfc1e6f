use std::collections::BTreeMap;

use bytes::Bytes;
use dkv_membership::NodeState;
use dkv_storage::{Entry, MemoryEngine};

use super::*;
use crate::life::metrics::Api;
use crate::testing;

fn v(ts: u64) -> Version {
    Version { ts, node: 1 }
}

fn req(from: u64, end: u64, limit: u32) -> ScanRequest {
    ScanRequest { epoch: 1, from, end, limit, max_bytes: 1 << 20, filter: KeyFilter::default() }
}

fn entry(key: &str, ts: u64, live: bool) -> ScanEntry {
    ScanEntry { key: Bytes::copy_from_slice(key.as_bytes()), version: v(ts), live }
}

#[test]
fn a_replica_page_ends_on_a_hash_boundary_and_the_next_starts_there() {
    let e = MemoryEngine::new();
    // Hashes chosen by hand (the engine takes whatever hash it is given): three keys share 20.
    for (hash, key) in [(10, "a"), (20, "b"), (20, "c"), (20, "d"), (30, "e"), (40, "f")] {
        e.apply(hash, key.as_bytes(), Entry::value(v(1), "x".into())).unwrap();
    }
    e.apply(35, b"gone", Entry::tombstone(v(2))).unwrap();
    let keys =
        |r: &ScanReply| r.entries.iter().map(|x| String::from_utf8_lossy(&x.key).into_owned()).collect::<Vec<_>>();

    let p = local_page(&e, &req(0, u64::MAX, 2), 0).unwrap();
    assert_eq!(keys(&p), ["a", "b", "c", "d"], "the keys of hash 20 come together");
    assert_eq!((p.next, p.looked), (Some(21), 4));
    let p = local_page(&e, &req(21, u64::MAX, 2), 0).unwrap();
    assert_eq!(keys(&p), ["e", "gone", "f"], "a tombstone weighs a sixteenth of a key: the page goes on");
    assert!(!p.entries[1].live, "a tombstone comes, marked dead");
    assert_eq!(p.next, None);
    let p = local_page(&e, &req(36, u64::MAX, 2), 0).unwrap();
    assert_eq!((keys(&p), p.next), (vec!["f".to_string()], None));
    // A range's end bounds the page, and a page that reaches it says so.
    let p = local_page(&e, &req(11, 30, 100), 0).unwrap();
    assert_eq!((keys(&p), p.next), (vec!["b", "c", "d", "e"].into_iter().map(String::from).collect(), None));
    let p = local_page(&e, &req(11, 30, 1), 0).unwrap();
    assert_eq!(p.next, Some(21));
    let p = local_page(&e, &req(30, 30, 1), 0).unwrap();
    assert_eq!((keys(&p), p.next), (vec!["e".to_string()], None), "stopped at the range's last hash");
}

/// Tombstones stay for the grace: each counts as a sixteenth of a live key towards a page's
/// COUNT, so a scan of the few keys left after many were deleted takes a sixteenth of the pages
/// (5 577 `SCAN` calls for 10 keys after 50 000 deletes until 2026-12-07, Redis 155).
#[test]
fn a_deleted_entry_counts_as_a_sixteenth_of_a_live_one_towards_a_pages_count() {
    let e = MemoryEngine::new();
    for h in 1..=1000u64 {
        e.apply(h, format!("gone{h}").as_bytes(), Entry::tombstone(v(2))).unwrap();
    }
    for h in [1001u64, 1002, 1003] {
        e.apply(h, format!("kept{h}").as_bytes(), Entry::value(v(1), "x".into())).unwrap();
    }
    // Only tombstones: 16 batches of 10, counted as 10 looked at.
    let p = local_page(&e, &req(0, u64::MAX, 10), 0).unwrap();
    assert_eq!((p.entries.len(), p.next, p.looked), (160, Some(161), 10));
    // Live keys weigh in full: six tombstones in three batches of two, then two live keys end
    // the page (6 + 2 × 16 sixteenths: 3 looked at).
    let p = local_page(&e, &req(995, u64::MAX, 2), 0).unwrap();
    assert_eq!((p.entries.len(), p.next, p.looked), (8, Some(1003), 3));
    assert_eq!(p.entries.iter().filter(|x| x.live).count(), 2);
    // A page of live keys looks at no more than it did.
    let p = local_page(&e, &req(1001, u64::MAX, 2), 0).unwrap();
    assert_eq!((p.entries.len(), p.next, p.looked), (2, Some(1003), 2));
}

/// A page holds at most COUNT live keys: the one that brings its weight there ends it, inside
/// the batch it came in (a tombstone and 99 live keys, then a second batch of 100 read whole,
/// made a page of 199 live keys for a COUNT of 100, found by a hunt, 2026-12-07).
#[test]
fn a_page_holds_at_most_count_live_keys_after_a_tombstone() {
    let e = MemoryEngine::new();
    e.apply(1, b"gone", Entry::tombstone(v(2))).unwrap();
    for h in 2..=400u64 {
        e.apply(h, format!("kept{h}").as_bytes(), Entry::value(v(1), "x".into())).unwrap();
    }
    let p = local_page(&e, &req(0, u64::MAX, 100), 0).unwrap();
    assert_eq!(p.entries.iter().filter(|x| x.live).count(), 100);
    assert_eq!((p.entries.len(), p.next, p.looked), (101, Some(102), 101));
    // The next page starts where it ended: every key once.
    let q = local_page(&e, &req(102, u64::MAX, 100), 0).unwrap();
    assert_eq!(q.entries.first().map(|x| &x.key[..]), Some(&b"kept102"[..]));
}

/// A page is keys and versions: it copies no value, and tells live keys from deleted and
/// expired ones by what the store keeps beside the value.
#[test]
fn a_replica_page_copies_no_value() {
    let e = testing::Counting::new();
    e.apply(1, b"plain", Entry::value(v(1), vec![7; 5000].into())).unwrap();
    e.apply(2, b"soon", Entry::expiring(v(1), vec![7; 5000].into(), Some(1_000))).unwrap();
    e.apply(3, b"gone", Entry::tombstone(v(2))).unwrap();
    let live =
        |now| local_page(&e, &req(0, u64::MAX, 100), now).unwrap().entries.iter().map(|x| x.live).collect::<Vec<_>>();
    assert_eq!(live(1_000), [true, true, false]);
    assert_eq!(live(1_001), [true, false, false], "past its deadline");
    assert_eq!(e.value_bytes.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn a_replica_page_filters_keys_but_counts_what_it_looked_at() {
    let e = MemoryEngine::new();
    for (i, key) in ["user:1", "user:2", "order:1", "user:10", "usr:3"].iter().enumerate() {
        e.apply(i as u64 + 1, key.as_bytes(), Entry::value(v(1), "x".into())).unwrap();
    }
    let mut r = req(0, u64::MAX, 100);
    r.filter = KeyFilter { prefix: Bytes::from_static(b"user:"), pattern: Some(Bytes::from_static(b"*:1?")) };
    let p = local_page(&e, &r, 0).unwrap();
    assert_eq!(p.entries.iter().map(|x| &x.key[..]).collect::<Vec<_>>(), [&b"user:10"[..]]);
    assert_eq!(p.looked, 5);
}

#[test]
fn a_merge_takes_the_newest_version_up_to_where_every_replica_reached() {
    // Keys sorted by their real hashes, as replicas send them.
    let mut keys: Vec<&str> = vec!["k1", "k2", "k3", "k4", "k5", "k6"];
    keys.sort_by_key(|k| key_hash(k.as_bytes()));
    let page = |picks: &[(usize, u64, bool)], next: Option<u64>| ScanReply {
        entries: picks.iter().map(|&(i, ts, live)| entry(keys[i], ts, live)).collect(),
        next,
        looked: picks.len() as u32,
        settled: true,
    };
    // a: everything up to (not with) keys[4]; b: missed keys[1], deleted keys[2] after a's
    // write, holds an older keys[3]; c: reached the end.
    let stop = key_hash(keys[4].as_bytes());
    let a = page(&[(0, 1, true), (1, 1, true), (2, 1, true), (3, 5, true)], Some(stop));
    let b = page(&[(0, 1, true), (2, 2, false), (3, 4, true), (4, 1, true), (5, 1, true)], None);
    let c = page(&[(3, 3, false), (5, 1, true)], None);
    let (merged, next, looked) = merge(&[a, b, c]);
    let want: Vec<Bytes> = [0, 1, 3].iter().map(|&i| Bytes::copy_from_slice(keys[i].as_bytes())).collect();
    assert_eq!(merged, want, "a key one replica missed still comes; a newer delete hides it; newest wins");
    assert_eq!((next, looked), (Some(stop), 5), "nothing past what replica a reached");
    let (merged, next, _) = merge(&[page(&[(5, 1, true)], None)]);
    assert_eq!((merged.len(), next), (1, None));
}

/// Three in-process nodes, one copy per key: pages of every size through every node return each
/// key exactly once, and no deleted key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_through_any_node_returns_every_key_exactly_once() {
    let config = crate::NodeConfig { replicas: 1, write_quorum: 1, read_quorum: 1, ..testing::config() };
    let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal, NodeState::Normal], config).await;
    let mut live = Vec::new();
    for i in 0..300 {
        let key = Bytes::from(format!("key-{i}"));
        nodes[i % 3].put(Api::Resp, key.clone(), Bytes::from_static(b"v"), None).await.unwrap();
        if i % 10 == 0 {
            nodes[(i + 1) % 3].delete(Api::Resp, key, None).await.unwrap();
        } else {
            live.push(key);
        }
    }
    live.sort();
    for (via, count) in [(0, 1), (1, 7), (2, 1000)] {
        let mut seen: BTreeMap<Bytes, usize> = BTreeMap::new();
        let (mut cursor, mut pages) = (0, 0);
        loop {
            let page = nodes[via].scan(cursor, count, &KeyFilter::default()).await.unwrap();
            for k in page.keys {
                *seen.entry(k).or_default() += 1;
            }
            pages += 1;
            if page.cursor == 0 {
                break;
            }
            assert!(page.cursor > cursor, "the cursor moves forward");
            cursor = page.cursor;
        }
        assert!(seen.values().all(|&n| n == 1), "count {count}: a key returned twice");
        assert_eq!(seen.into_keys().collect::<Vec<_>>(), live, "via node {via}, count {count}");
        assert!(count > 100 || pages > 30, "count {count}: {pages} pages");
    }
    let mut only = KeyFilter { prefix: Bytes::from_static(b"key-1"), pattern: Some(Bytes::from_static(b"*[05]")) };
    let page = nodes[0].scan(0, MAX_COUNT, &only).await.unwrap();
    let mut got: Vec<Bytes> = page.keys;
    got.sort();
    let want: Vec<Bytes> = live.iter().filter(|k| k.starts_with(b"key-1") && k.ends_with(b"5")).cloned().collect();
    assert_eq!((got, page.cursor), (want, 0), "key-1*5 (the ones ending in 0 were deleted)");
    only.pattern = Some(Bytes::from_static(b"nothing*"));
    assert!(nodes[1].scan(0, MAX_COUNT, &only).await.unwrap().keys.is_empty());

    let all = nodes[2].all_keys(b"key-2?", 1000, None).await.unwrap();
    assert_eq!(all.len(), 9, "key-21..key-29 (key-20 deleted): {all:?}");
    let refused = nodes[2].all_keys(b"*", 100, None).await.unwrap_err();
    assert!(matches!(&refused, NodeError::TooLarge(m) if m.contains("more than 100 keys")), "{refused}");
    // The members' count well over the limit: refused without a walk; near it, walked.
    let refused = nodes[2].all_keys(b"key-2?", 10, Some(16)).await.unwrap_err();
    assert!(matches!(&refused, NodeError::TooLarge(m) if m.contains("more than 10 keys")), "{refused}");
    assert_eq!(nodes[2].all_keys(b"key-2?", 1000, Some(1500)).await.unwrap().len(), 9);
}

/// A replica whose view is newer than the coordinator's refuses the page; the coordinator then
/// refreshes its view (here the seed is unreachable, so it keeps its own) and, after as many
/// attempts, fails with what each replica said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_view_refuses_the_page() {
    let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
    let mut r = req(0, u64::MAX, 10);
    r.epoch = 7;
    let refused = nodes[1].serve_scan(&r).unwrap_err();
    assert_eq!(refused.status(), Some(STATUS_STALE_EPOCH), "{refused}");
    r.epoch = 1;
    assert!(nodes[1].serve_scan(&r).is_ok());
}

/// A pattern that makes each key cost millions of steps (a long key of `a`, a pattern of 1 000
/// `a`s ending in `b`) ends a page early, on a hash boundary, and the next pages go on from
/// there: the scan still covers every key, a tenth of a second at a time, not minutes at once.
#[test]
fn a_costly_pattern_ends_a_page_early_and_the_scan_goes_on() {
    let e = MemoryEngine::new();
    let key = |i: u64| format!("{i:04}{}", "a".repeat(8 << 10));
    for i in 0..64u64 {
        e.apply(1 + i * 1000, key(i).as_bytes(), Entry::value(v(1), "x".into())).unwrap();
    }
    let pattern = format!("*{}b", "a".repeat(1000));
    let costly = |from| ScanRequest {
        filter: KeyFilter { pattern: Some(Bytes::from(pattern.clone())), ..KeyFilter::default() },
        ..req(from, u64::MAX, 10_000)
    };
    let (mut from, mut pages, mut looked) = (0, 0, 0);
    loop {
        let p = local_page(&e, &costly(from), 0).unwrap();
        assert!(p.entries.is_empty(), "nothing matches");
        looked += p.looked;
        pages += 1;
        match p.next {
            Some(next) => from = next,
            None => break,
        }
        assert!(pages <= 64, "every page looks at one key at least");
    }
    assert_eq!(looked, 64, "every key looked at once");
    assert!(pages > 1, "the pattern's cost ended pages early");
}

#[test]
fn keys_is_refused_at_once_only_when_the_count_says_so_for_sure() {
    assert!(surely_over(15_001, 10_000));
    assert!(!surely_over(15_000, 10_000), "near the limit: walked, then refused by what the walk finds");
    assert!(!surely_over(12_500, 10_000), "a join's count, a fourth high");
}
