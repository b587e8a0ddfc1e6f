//! The in-memory engine.
//!
//! 64 shards, each a `BTreeMap` behind its own `RwLock`, split by the top bits of the placement
//! hash. Splitting by the *top* bits keeps the global `(hash, key)` order — shard 0 holds the
//! lowest hashes — so a range scan walks shards in order and never needs a merge.
//! A map key is one buffer: the 8-byte big-endian hash followed by the key bytes, whose byte order
//! is exactly `(hash, key)` order and which costs one allocation per key.
//!
//! Locks are std locks held for a lookup or one insert, never across an `.await`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use bytes::Bytes;

use crate::engine::{Applied, Cursor, Engine, EngineStats};
use crate::{Entry, Version};

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

#[derive(Default)]
struct Shard {
    map: BTreeMap<Box<[u8]>, Entry>,
    stats: EngineStats,
}

impl Shard {
    fn account(&mut self, key_len: usize, entry: &Entry, sign: i64) {
        let apply = |n: &mut u64, d: u64| {
            *n = if sign > 0 { *n + d } else { n.saturating_sub(d) };
        };
        if entry.is_tombstone() {
            apply(&mut self.stats.tombstones, 1);
        } else {
            apply(&mut self.stats.keys, 1);
            apply(&mut self.stats.bytes, (key_len + entry.value_len()) as u64);
        }
    }
}

pub struct MemoryEngine {
    shards: Vec<RwLock<Shard>>,
}

impl Default for MemoryEngine {
    fn default() -> Self {
        MemoryEngine { shards: (0..SHARDS).map(|_| RwLock::default()).collect() }
    }
}

fn shard_of(hash: u64) -> usize {
    (hash >> (64 - SHARD_BITS)) as usize
}

fn map_key(hash: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&hash.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn split_map_key(k: &[u8]) -> (u64, &[u8]) {
    let (h, key) = k.split_at(8);
    (u64::from_be_bytes(h.try_into().expect("map keys start with an 8-byte hash")), key)
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[shard_of(hash)]
    }
}

// A poisoned lock means a panic mid-update in this process; the maps are still structurally
// valid (BTreeMap ops do not leave them half-done), so keep serving rather than cascade panics.
macro_rules! read {
    ($l:expr) => {
        $l.read().unwrap_or_else(|e| e.into_inner())
    };
}
macro_rules! write {
    ($l:expr) => {
        $l.write().unwrap_or_else(|e| e.into_inner())
    };
}

impl Engine for MemoryEngine {
    fn get(&self, hash: u64, key: &[u8]) -> Option<Entry> {
        read!(self.shard(hash)).map.get(map_key(hash, key).as_slice()).cloned()
    }

    fn apply(&self, hash: u64, key: &[u8], entry: Entry) -> Applied {
        let mk = map_key(hash, key);
        let mut shard = write!(self.shard(hash));
        if let Some(old) = shard.map.get(mk.as_slice()) {
            if !entry.supersedes(old) {
                return Applied::Stale;
            }
            let old = old.clone();
            shard.account(key.len(), &old, -1);
        }
        shard.account(key.len(), &entry, 1);
        shard.map.insert(mk.into_boxed_slice(), entry);
        Applied::Stored
    }

    fn remove_if(&self, hash: u64, key: &[u8], version: Version) -> bool {
        let mk = map_key(hash, key);
        let mut shard = write!(self.shard(hash));
        match shard.map.get(mk.as_slice()) {
            Some(e) if e.version == version => {
                let old = shard.map.remove(mk.as_slice()).expect("entry just seen");
                shard.account(key.len(), &old, -1);
                true
            }
            _ => false,
        }
    }

    fn scan(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> Option<Cursor> {
        let mut lower = start.map(|c| map_key(c.hash, &c.key));
        let first_shard = start.map_or(0, |c| shard_of(c.hash));
        let mut taken = 0;
        for shard in &self.shards[first_shard..=shard_of(end_hash)] {
            let shard = read!(shard);
            let range = match &lower {
                Some(l) => shard.map.range::<[u8], _>((Bound::Excluded(l.as_slice()), Bound::Unbounded)),
                None => shard.map.range::<[u8], _>(..),
            };
            for (k, entry) in range {
                let (hash, key) = split_map_key(k);
                if hash > end_hash {
                    return None;
                }
                out.push((hash, Bytes::copy_from_slice(key), entry.clone()));
                taken += 1;
                if taken == limit {
                    return Some(Cursor { hash, key: Bytes::copy_from_slice(key) });
                }
            }
            lower = None;
        }
        None
    }

    fn stats(&self) -> EngineStats {
        let mut total = EngineStats::default();
        for shard in &self.shards {
            let s = read!(shard).stats;
            total.keys += s.keys;
            total.bytes += s.bytes;
            total.tombstones += s.tombstones;
        }
        total
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(e.apply(7, b"k", val(2, "new")), Applied::Stored);
        assert_eq!(e.apply(7, b"k", val(1, "old")), Applied::Stale);
        assert_eq!(e.get(7, b"k"), Some(val(2, "new")));
        assert_eq!(e.apply(7, b"k", Entry::tombstone(v(3))), Applied::Stored);
        assert_eq!(e.apply(7, b"k", val(2, "new")), Applied::Stale, "a delete is never undone by an older value");
        let s = e.stats();
        assert_eq!((s.keys, s.bytes, s.tombstones), (0, 0, 1));
    }

    #[test]
    fn remove_if_only_removes_the_given_version() {
        let e = MemoryEngine::new();
        e.apply(1, b"k", val(5, "x"));
        assert!(!e.remove_if(1, b"k", v(4)));
        assert!(e.remove_if(1, b"k", v(5)));
        assert_eq!(e.get(1, b"k"), None);
        assert_eq!(e.stats(), EngineStats::default());
    }

    #[test]
    fn scan_walks_hash_order_across_shards_in_pages() {
        let e = MemoryEngine::new();
        let hashes: Vec<u64> = (0..200u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        for (i, h) in hashes.iter().enumerate() {
            e.apply(*h, format!("k{i}").as_bytes(), val(1, "v"));
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let mut page = Vec::new();
            cursor = e.scan(cursor.as_ref(), u64::MAX, 7, &mut page);
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
        assert_eq!(e.scan(None, mid, usize::MAX, &mut bounded), None);
        assert_eq!(bounded.len(), 101);
    }
}
