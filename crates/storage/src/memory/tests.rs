//! The in-memory engine against its contract: versions, overwrites, removals, purges and scans,
//! and against a model under random operations on colliding hashes.

use super::*;

fn v(ts: u64) -> Version {
    Version { ts, node: 1 }
}

fn val(ts: u64, s: &'static str) -> Entry {
    Entry::value(v(ts), Bytes::from_static(s.as_bytes()))
}

#[test]
fn apply_keeps_the_highest_version() {
    let e = MemoryEngine::new();
    assert_eq!(e.apply(7, b"k", val(2, "new")).unwrap(), Applied::Stored);
    assert_eq!(e.apply(7, b"k", val(1, "old")).unwrap(), Applied::Stale);
    assert_eq!(e.get(7, b"k").unwrap(), Some(val(2, "new")));
    assert_eq!(e.apply(7, b"k", Entry::tombstone(v(3))).unwrap(), Applied::Stored);
    assert_eq!(e.apply(7, b"k", val(2, "new")).unwrap(), Applied::Stale, "a delete is never undone by an older value");
    let s = e.stats();
    assert_eq!((s.keys, s.bytes, s.tombstones), (0, 0, 1));
}

#[test]
fn overwrites_of_every_shape_read_back_exactly() {
    let e = MemoryEngine::new();
    let expiring = |ts, s: &'static str, at| Entry { expires: Some(at), ..val(ts, s) };
    // Same length (the buffer is reused), longer, with a deadline of the same total length,
    // shorter, a tombstone, and a value again.
    let steps = [
        val(1, "abcd"),
        val(2, "wxyz"),
        val(3, "a longer value"),
        expiring(4, "abcdef", 99),
        val(5, "a value of fourteen"),
        Entry::tombstone(v(6)),
        val(7, "back"),
    ];
    for step in steps {
        assert_eq!(e.apply(9, b"key", step.clone()).unwrap(), Applied::Stored);
        assert_eq!(e.get(9, b"key").unwrap(), Some(step.clone()));
        let s = e.stats();
        let live = step.value.as_ref().map_or(0, |v| 3 + v.len() as u64);
        assert_eq!((s.keys, s.bytes, s.expiring), (u64::from(live > 0), live, u64::from(step.expires.is_some())));
    }
}

#[test]
fn purge_drops_only_old_tombstones() {
    let e = MemoryEngine::new();
    e.apply(1, b"old-del", Entry::tombstone(v(10))).unwrap();
    e.apply(2, b"new-del", Entry::tombstone(v(30))).unwrap();
    e.apply(3, b"old-val", val(10, "x")).unwrap();
    assert_eq!(e.purge_tombstones(20).unwrap(), 1);
    assert_eq!(e.get(1, b"old-del").unwrap(), None);
    assert!(e.get(2, b"new-del").unwrap().is_some());
    assert!(e.get(3, b"old-val").unwrap().is_some(), "values are never purged");
    assert_eq!(e.stats(), EngineStats { keys: 1, bytes: 8, tombstones: 1, expiring: 0 });
}

#[test]
fn remove_if_only_removes_the_given_version() {
    let e = MemoryEngine::new();
    e.apply(1, b"k", val(5, "x")).unwrap();
    assert!(!e.remove_if(1, b"k", v(4)).unwrap());
    assert!(e.remove_if(1, b"k", v(5)).unwrap());
    assert_eq!(e.get(1, b"k").unwrap(), None);
    assert_eq!(e.stats(), EngineStats::default());
}

#[test]
fn scan_walks_hash_order_across_shards_in_pages() {
    let e = MemoryEngine::new();
    let hashes: Vec<u64> = (0..200u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    for (i, h) in hashes.iter().enumerate() {
        e.apply(*h, format!("k{i}").as_bytes(), val(1, "v")).unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let mut page = Vec::new();
        cursor = e.scan(cursor.as_ref(), u64::MAX, 7, &mut page).unwrap();
        seen.extend(page.into_iter().map(|(h, _, _)| h));
        if cursor.is_none() {
            break;
        }
    }
    let mut sorted = hashes.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    let mut bounded = Vec::new();
    let mid = sorted[100];
    assert_eq!(e.scan(None, mid, usize::MAX, &mut bounded).unwrap(), None);
    assert_eq!(bounded.len(), 101);

    // scan_where: the same walk, only the kept entries come out, pages end on the limit of
    // entries looked at even when none is kept.
    let mut kept = Vec::new();
    let (mut cursor, mut pages) = (None, 0);
    loop {
        let mut page = Vec::new();
        cursor = e.scan_where(cursor.as_ref(), u64::MAX, 7, usize::MAX, &mut |h| h % 3 == 0, &mut page).unwrap();
        assert!(page.len() <= 7);
        kept.extend(page.into_iter().map(|(h, _, _)| h));
        pages += 1;
        if cursor.is_none() {
            break;
        }
    }
    let want: Vec<u64> = sorted.iter().copied().filter(|h| h % 3 == 0).collect();
    assert_eq!(kept, want);
    assert_eq!(pages, 200usize.div_ceil(7));
}

#[test]
fn removals_and_purges_keep_the_index_consistent() {
    let e = MemoryEngine::new();
    let v = |ts| Version { ts, node: 1 };
    // All in shard 0 (top bits zero).
    for h in 0..100u64 {
        e.apply(h, format!("k{h}").as_bytes(), val1(v(1))).unwrap();
    }
    for h in (0..100u64).step_by(2) {
        assert!(e.remove_if(h, format!("k{h}").as_bytes(), v(1)).unwrap());
    }
    e.apply(1000, b"t", Entry::tombstone(v(1))).unwrap(); // purged below
    assert_eq!(e.purge_tombstones(2).unwrap(), 1);
    for h in 200..251u64 {
        e.apply(h, format!("k{h}").as_bytes(), val1(v(1))).unwrap();
    }
    assert_eq!(read!(e.shards[0]).stats.keys, 50 + 51);
    for h in (1..100u64).step_by(2).chain(200..251) {
        assert!(e.get(h, format!("k{h}").as_bytes()).unwrap().is_some(), "{h}");
    }
    for h in (0..100u64).step_by(2).chain([1000]) {
        assert_eq!(e.get(h, format!("k{h}").as_bytes()).unwrap(), None);
    }
    let mut out = Vec::new();
    assert_eq!(e.scan(None, u64::MAX, usize::MAX, &mut out).unwrap(), None);
    let hashes: Vec<u64> = out.iter().map(|(h, _, _)| *h).collect();
    let want: Vec<u64> = (1..100u64).step_by(2).chain(200..251).collect();
    assert_eq!(hashes, want, "scans still walk hash order");
}

/// Random applies, removals, expiries and purges over few hashes (so keys share them),
/// checked against a map of `(hash, key)` after every step, and by paged scans at the end.
#[test]
fn random_operations_on_colliding_hashes_match_a_model() {
    use std::collections::BTreeMap;
    let e = MemoryEngine::new();
    let mut model: BTreeMap<(u64, Vec<u8>), Entry> = BTreeMap::new();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for step in 1..=20_000u64 {
        // 40 hashes (some in the last shard) over 200 keys: most hashes hold several keys.
        let k = next(200);
        let hash = (k % 40).wrapping_mul(0x0400_0000_0000_0001) | if k % 3 == 0 { u64::MAX << 58 } else { 0 };
        let key = format!("k{k}").into_bytes();
        let version = Version { ts: next(50), node: next(2) };
        let held = model.get(&(hash, key.clone())).cloned();
        match next(10) {
            0..=5 => {
                let entry = match next(4) {
                    0 => Entry::tombstone(version),
                    1 => Entry { expires: Some(next(100)), ..val1(version) },
                    n => Entry::value(version, Bytes::from(vec![b'v'; n as usize * 7])),
                };
                let newer = held.as_ref().is_none_or(|h| entry.version > h.version);
                let want = if newer { Applied::Stored } else { Applied::Stale };
                assert_eq!(e.apply(hash, &key, entry.clone()).unwrap(), want, "step {step}");
                if newer {
                    model.insert((hash, key.clone()), entry);
                }
            }
            6 | 7 => {
                let at = held.as_ref().map_or(version, |h| if next(2) == 0 { h.version } else { version });
                let gone = held.as_ref().is_some_and(|h| h.version == at);
                assert_eq!(e.remove_if(hash, &key, at).unwrap(), gone, "step {step}");
                if gone {
                    model.remove(&(hash, key.clone()));
                }
            }
            8 => {
                let at = held.as_ref().map_or(version, |h| h.version);
                let expired = held.as_ref().is_some_and(|h| h.version == at && !h.is_tombstone());
                assert_eq!(e.expire_if(hash, &key, at).unwrap(), expired, "step {step}");
                if expired {
                    let h = held.clone().unwrap();
                    model.insert((hash, key.clone()), Entry { value: None, ..h });
                }
            }
            _ => {
                let before = next(30) << 16;
                let old: Vec<_> = model
                    .iter()
                    .filter(|(_, en)| en.is_tombstone() && en.dead_since().is_some_and(|ts| ts < before))
                    .map(|(k, _)| k.clone())
                    .collect();
                assert_eq!(e.purge_tombstones(before).unwrap(), old.len() as u64, "step {step}");
                for k in old {
                    model.remove(&k);
                }
            }
        }
        assert_eq!(e.get(hash, &key).unwrap(), model.get(&(hash, key.clone())).cloned(), "step {step}");
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let mut page = Vec::new();
        cursor = e.scan(cursor.as_ref(), u64::MAX, 13, &mut page).unwrap();
        seen.extend(page.into_iter().map(|(h, k, en)| ((h, k.to_vec()), en)));
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, model.into_iter().collect::<Vec<_>>(), "scans walk (hash, key) order");
}

fn val1(version: Version) -> Entry {
    Entry::value(version, Bytes::from_static(b"v"))
}

#[test]
fn keys_sharing_a_hash_and_long_keys_are_kept_apart_in_key_order() {
    let e = MemoryEngine::new();
    let long = vec![b'z'; 10_000];
    e.apply(5, &long, Entry::value(Version { ts: 1, node: 1 }, Bytes::from_static(b"L"))).unwrap();
    e.apply(5, b"a", Entry::value(Version { ts: 1, node: 1 }, Bytes::from_static(b"S"))).unwrap();
    e.apply(4, &long, Entry::value(Version { ts: 1, node: 1 }, Bytes::from_static(b"H"))).unwrap();
    assert_eq!(e.get(5, &long).unwrap().unwrap().value.unwrap(), Bytes::from_static(b"L"));
    assert!(e.remove_if(5, &long, Version { ts: 1, node: 1 }).unwrap());
    let mut out = Vec::new();
    e.scan(None, u64::MAX, 10, &mut out).unwrap();
    let order: Vec<(u64, usize)> = out.iter().map(|(h, k, _)| (*h, k.len())).collect();
    assert_eq!(order, vec![(4, 10_000), (5, 1)]);

    // Three keys on one hash: each kept, scanned in key order, removable one by one.
    let v = |ts| Version { ts, node: 1 };
    for k in [&b"c"[..], b"a", b"b"] {
        e.apply(9, k, Entry::value(v(1), Bytes::copy_from_slice(k))).unwrap();
    }
    assert_eq!(e.apply(9, b"b", Entry::tombstone(v(2))).unwrap(), Applied::Stored);
    let mut out = Vec::new();
    let cursor = e.scan(Some(&Cursor { hash: 9, key: Bytes::from_static(b"a") }), 9, 10, &mut out).unwrap();
    assert_eq!(cursor, None);
    let keys: Vec<&[u8]> = out.iter().map(|(_, k, _)| &k[..]).collect();
    assert_eq!(keys, vec![&b"b"[..], b"c"]);
    assert!(e.remove_if(9, b"a", v(1)).unwrap());
    assert!(e.remove_if(9, b"c", v(1)).unwrap());
    assert!(!e.remove_if(9, b"b", v(1)).unwrap(), "b is at version 2 now");
    assert!(e.remove_if(9, b"b", v(2)).unwrap());
    assert_eq!(e.get(9, b"b").unwrap(), None);
    assert_eq!(e.stats(), EngineStats { keys: 2, bytes: 10_001 + 2, tombstones: 0, expiring: 0 });
}
