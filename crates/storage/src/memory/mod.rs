//! The in-memory engine.
//!
//! 64 shards, each an [`Index`] behind its own `RwLock`, split by the top bits of the placement
//! hash. Splitting by the *top* bits keeps the global `(hash, key)` order — shard 0 holds the
//! lowest hashes — so a range scan walks shards in order and never needs a merge.
//!
//! The index is keyed by the 64-bit hash itself, so a lookup compares plain integers and
//! dereferences a key only once, to confirm the match; keying by the key bytes would chase a
//! pointer at every comparison (measured: 11% of a PUT's CPU time at 400k keys). The rare keys
//! that share a hash get an index entry each, side by side in key order. The index (`index.rs`)
//! is a sorted array cut into buckets by the hash's next bits: a lookup costs two cache misses at
//! any size, where the `BTreeMap` it replaced missed once per level.
//!
//! Each index entry holds its [`Record`] itself (`record.rs`): one heap buffer with the version,
//! the key, the value's deadline (for the keys that have one: a key without costs nothing more for
//! expiry) and the value. A lookup therefore misses the cache three times: the bucket's handle,
//! its entries, the record. An earlier layout kept a 40-byte record per key in an array beside
//! the index, which cost a fourth miss (measured: 7% of a pipelined SET's CPU time, in
//! `Slot::get_mut`).
//!
//! Memory: a key costs its index entry (24 bytes plus the buckets' spare room) and its buffer,
//! the key and value plus a 19-byte header (`bench/memory.sh` measures the result against
//! Redis). The price of one buffer is a copy of the value on every read, which is small next to
//! the work around it. An overwrite with a value of the same size reuses the record's buffer.
//!
//! Locks are std locks held for a lookup or one insert, never across an `.await`.

mod record;

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use bytes::Bytes;

use crate::engine::{Applied, Budget, Cursor, Engine, EngineStats, Expired, KeyVersion, StorageResult};
use crate::index::Index;
use crate::{Digests, Entry, Version};

use record::Record;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// What a scan does after showing a record to its visitor.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Next,
    /// Stop before this record: the scan resumes at it.
    Stop,
}

/// One shard: its records by hash, and their counts.
struct Shard {
    index: Index<Record>,
    stats: EngineStats,
}

impl Shard {
    fn new(number: usize) -> Shard {
        Shard { index: Index::new(SHARD_BITS, number as u64), stats: EngineStats::default() }
    }
}

/// Add (`sign > 0`) or remove a record's share of the shard's counters.
fn account(stats: &mut EngineStats, r: &Record, sign: i64) {
    let apply = |n: &mut u64, d: u64| {
        *n = if sign > 0 { *n + d } else { n.saturating_sub(d) };
    };
    if r.is_tombstone() {
        apply(&mut stats.tombstones, 1);
    } else {
        apply(&mut stats.keys, 1);
        apply(&mut stats.bytes, r.size() as u64);
        if r.deadline().is_some() {
            apply(&mut stats.expiring, 1);
        }
    }
}

pub struct MemoryEngine {
    shards: Vec<RwLock<Shard>>,
    /// See [`Engine::generation`].
    generation: AtomicU64,
    /// See [`Engine::digests`]; changed under the shard's lock, with the record.
    digests: Digests,
}

impl Default for MemoryEngine {
    fn default() -> Self {
        MemoryEngine {
            shards: (0..SHARDS).map(|i| RwLock::new(Shard::new(i))).collect(),
            generation: AtomicU64::new(0),
            digests: Digests::default(),
        }
    }
}

fn shard_of(hash: u64) -> usize {
    (hash >> (64 - SHARD_BITS)) as usize
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[shard_of(hash)]
    }

    /// After a change, once its shard lock is released.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

// A poisoned lock means a panic mid-update in this process; the maps are still structurally
// valid (index operations do not leave them half-done), so keep serving rather than cascade panics.
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
    fn get(&self, hash: u64, key: &[u8]) -> StorageResult<Option<Entry>> {
        Ok(read!(self.shard(hash)).index.find(hash, |r| r.key() == key).map(Record::entry))
    }

    fn apply(&self, hash: u64, key: &[u8], entry: Entry) -> StorageResult<Applied> {
        crate::engine::check_key(key)?;
        let applied = self.apply_infallible(hash, key, &entry);
        if applied == Applied::Stored {
            self.changed();
        }
        Ok(applied)
    }

    fn prefetch(&self, hash: u64) {
        read!(self.shard(hash)).index.prefetch(hash);
    }

    fn remove_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool> {
        let removed = self.remove_if_infallible(hash, key, version);
        if removed {
            self.changed();
        }
        Ok(removed)
    }

    fn scan(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> StorageResult<Option<Cursor>> {
        Ok(self.scan_infallible(start, end_hash, limit, out))
    }

    fn scan_where(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        max_bytes: usize,
        keep: &mut dyn FnMut(u64) -> bool,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> StorageResult<Option<Cursor>> {
        Ok(self.walk_kept(start, end_hash, limit, max_bytes, keep, &mut |hash, record| {
            out.push((hash, Bytes::copy_from_slice(record.key()), record.entry()));
        }))
    }

    fn scan_keys(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        max_bytes: usize,
        keep: &mut dyn FnMut(u64) -> bool,
        out: &mut Vec<KeyVersion>,
    ) -> StorageResult<Option<Cursor>> {
        Ok(self.walk_kept(start, end_hash, limit, max_bytes, keep, &mut |hash, record| {
            let tombstone = record.is_tombstone();
            out.push(KeyVersion {
                hash,
                key: Bytes::copy_from_slice(record.key()),
                version: record.version(),
                value_len: record.value().len(),
                tombstone,
                expires: record.deadline().filter(|_| !tombstone),
            });
        }))
    }

    fn scan_versions(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Version)>,
    ) -> StorageResult<Option<Cursor>> {
        Ok(self.walk(start, end_hash, limit, &mut |hash, record| {
            out.push((hash, record.version()));
            Step::Next
        }))
    }

    fn purge_tombstones(&self, before_ts: u64) -> StorageResult<u64> {
        let purged = self.purge_infallible(before_ts);
        if purged > 0 {
            self.changed();
        }
        Ok(purged)
    }

    fn expire_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool> {
        let expired = self.expire_if_infallible(hash, key, version);
        if expired {
            self.changed();
        }
        Ok(expired)
    }

    fn expire(&self, start: Option<&Cursor>, limit: usize, now_ms: u64) -> StorageResult<Expired> {
        // Found under the read locks, changed under the write lock one by one (re-checked there).
        let mut due = Vec::new();
        let next = self.walk(start, u64::MAX, limit, &mut |hash, record| {
            if record.is_expired_at(now_ms) {
                due.push((hash, Bytes::copy_from_slice(record.key()), record.version()));
            }
            Step::Next
        });
        let mut expired = 0;
        for (hash, key, version) in due {
            expired += u64::from(self.expire_if(hash, &key, version)?);
        }
        Ok(Expired { expired, next })
    }

    fn digests(&self) -> Option<&Digests> {
        Some(&self.digests)
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::Acquire))
    }

    fn stats(&self) -> EngineStats {
        let mut total = EngineStats::default();
        for shard in &self.shards {
            let s = read!(shard).stats;
            total.keys += s.keys;
            total.bytes += s.bytes;
            total.tombstones += s.tombstones;
            total.expiring += s.expiring;
        }
        total
    }
}

/// The engine's operations; nothing here can fail, the trait wraps them in `Ok`.
impl MemoryEngine {
    fn apply_infallible(&self, hash: u64, key: &[u8], entry: &Entry) -> Applied {
        let mut guard = write!(self.shard(hash));
        let Shard { index, stats } = &mut *guard;
        match index.find_mut(hash, |r| r.key() == key) {
            Some(old) if entry.version > old.version() => {
                self.digests.remove(hash, old.version());
                self.digests.add(hash, entry.version);
                account(stats, old, -1);
                old.overwrite(key, entry);
                account(stats, old, 1);
                Applied::Stored
            }
            Some(_) => Applied::Stale,
            None => {
                let record = Record::new(key, entry);
                self.digests.add(hash, entry.version);
                account(stats, &record, 1);
                index.insert(hash, record, |r| r.key() < key);
                Applied::Stored
            }
        }
    }

    fn expire_if_infallible(&self, hash: u64, key: &[u8], version: Version) -> bool {
        let mut guard = write!(self.shard(hash));
        let Shard { index, stats } = &mut *guard;
        let Some(record) = index.find_mut(hash, |r| r.key() == key) else { return false };
        if record.version() != version || record.is_tombstone() {
            return false;
        }
        let tombstone = Entry { version, value: None, expires: record.deadline() };
        account(stats, record, -1);
        *record = Record::new(key, &tombstone);
        account(stats, record, 1);
        true
    }

    fn remove_if_infallible(&self, hash: u64, key: &[u8], version: Version) -> bool {
        let mut guard = write!(self.shard(hash));
        let Shard { index, stats } = &mut *guard;
        match index.remove(hash, |r| r.key() == key && r.version() == version) {
            Some(old) => {
                self.digests.remove(hash, old.version());
                account(stats, &old, -1);
                true
            }
            None => false,
        }
    }

    fn scan_infallible(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> Option<Cursor> {
        self.walk(start, end_hash, limit, &mut |hash, record| {
            out.push((hash, Bytes::copy_from_slice(record.key()), record.entry()));
            Step::Next
        })
    }

    /// [`MemoryEngine::walk`] for the scans bounded by bytes: `take` gets the records whose hash
    /// `keep` accepts while their key and value bytes fit in `max_bytes` (the first always does).
    fn walk_kept(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        max_bytes: usize,
        keep: &mut dyn FnMut(u64) -> bool,
        take: &mut dyn FnMut(u64, &Record),
    ) -> Option<Cursor> {
        let mut budget = Budget::new(max_bytes);
        self.walk(start, end_hash, limit, &mut |hash, record| {
            if !keep(hash) {
                return Step::Next;
            }
            if !budget.take(record.size()) {
                return Step::Stop;
            }
            take(hash, record);
            Step::Next
        })
    }

    /// Show `visit` the records after `start` up to `end_hash` in order, at most `limit` of them;
    /// returns the cursor after the last one looked at, or `None` when the range is exhausted.
    /// `visit` copies what it keeps; [`Step::Stop`] ends the walk before the record shown.
    fn walk(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        visit: &mut dyn FnMut(u64, &Record) -> Step,
    ) -> Option<Cursor> {
        let cursor = |hash, record: &Record| Cursor { hash, key: Bytes::copy_from_slice(record.key()) };
        let first_shard = start.map_or(0, |c| shard_of(c.hash));
        if start.is_some_and(|c| c.hash > end_hash) {
            // An empty range (a peer's request may ask for one): nothing to walk.
            return None;
        }
        let mut looked = 0;
        // The last record looked at in an earlier shard (copied once per shard, not per record).
        let mut before: Option<Cursor> = None;
        for shard in &self.shards[first_shard..=shard_of(end_hash)] {
            let shard = read!(shard);
            let mut last: Option<(u64, &Record)> = None;
            let lower = start.map_or(Bound::Unbounded, |c| Bound::Included(c.hash));
            for (hash, record) in shard.index.range((lower, Bound::Included(end_hash))) {
                if start.is_some_and(|c| hash == c.hash && record.key() <= &c.key[..]) {
                    continue;
                }
                if visit(hash, record) == Step::Stop {
                    return match last {
                        Some((h, r)) => Some(cursor(h, r)),
                        None => before.or_else(|| start.cloned()),
                    };
                }
                looked += 1;
                if looked == limit {
                    return Some(cursor(hash, record));
                }
                last = Some((hash, record));
            }
            if let Some((h, r)) = last {
                before = Some(cursor(h, r));
            }
        }
        None
    }

    fn purge_infallible(&self, before_ts: u64) -> u64 {
        let old = |r: &Record| r.is_tombstone() && r.head().dead_since().is_some_and(|ts| ts < before_ts);
        let mut purged = 0;
        for shard in &self.shards {
            let mut guard = write!(shard);
            let Shard { index, stats } = &mut *guard;
            index.retain(|hash, r| {
                let keep = !old(r);
                if !keep {
                    self.digests.remove(hash, r.version());
                    purged += 1;
                    stats.tombstones -= 1;
                }
                keep
            });
        }
        purged
    }
}

// After the lock macros above, which the tests use too.
#[cfg(test)]
mod tests;
