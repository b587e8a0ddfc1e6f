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
//! Each index entry holds its [`Record`] itself: one heap buffer with the version, the key, the
//! value's deadline (for the keys that have one: a key without costs nothing more for expiry) and
//! the value. A lookup therefore misses the cache three times: the bucket's handle, its entries,
//! the record. An earlier layout kept a 40-byte record per key in an array beside the index,
//! which cost a fourth miss (measured: 7% of a pipelined SET's CPU time, in `Slot::get_mut`).
//!
//! Memory: a key costs its index entry (24 bytes plus the buckets' spare room) and its buffer,
//! the key and value plus a 19-byte header (`bench/memory.sh` measures the result against
//! Redis). The price of one buffer is a copy of the value on every read, which is small next to
//! the work around it. An overwrite with a value of the same size reuses the record's buffer.
//!
//! Locks are std locks held for a lookup or one insert, never across an `.await`.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use bytes::Bytes;

use crate::engine::{Applied, Budget, Cursor, Engine, EngineStats, Expired, KeyVersion, StorageError, StorageResult};
use crate::index::Index;
use crate::{Digests, Entry, Version};

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// [`Record`]'s flags: a tombstone (the buffer holds no value).
const TOMBSTONE: u8 = 1;
/// [`Record`]'s flags: the buffer holds a deadline after the key.
const DEADLINE: u8 = 2;
/// Bytes of a deadline in the buffer.
const DEADLINE_LEN: usize = 8;
/// The buffer's header: the version's timestamp and node (8 bytes each), the key's length (2) and
/// the flags (1), all little-endian. Every byte counts: with the header, a 9-byte key and a
/// 100-byte value fill a 128-byte allocation exactly, and a byte more would take 160.
const HEADER: usize = 19;
const KEY_LEN_AT: usize = 16;
const FLAGS_AT: usize = 18;

/// One stored key, in a single allocation: the header, the key, the deadline (if any) and the
/// value, in that order.
struct Record(Box<[u8]>);

/// What a record of `entry` holds after its key: the deadline's bytes if any, the value, the
/// flags, and the length of its buffer for a key of `key_len` bytes.
fn contents(key_len: usize, entry: &Entry) -> (Option<[u8; DEADLINE_LEN]>, &[u8], u8, usize) {
    let value = entry.value.as_deref().unwrap_or_default();
    let deadline = entry.expires.map(u64::to_le_bytes);
    let mut flags = if entry.is_tombstone() { TOMBSTONE } else { 0 };
    if deadline.is_some() {
        flags |= DEADLINE;
    }
    (deadline, value, flags, HEADER + key_len + deadline.map_or(0, |d| d.len()) + value.len())
}

/// The 8 bytes at `at`, as a little-endian number.
fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

impl Record {
    fn new(key: &[u8], entry: &Entry) -> Record {
        let (deadline, value, flags, len) = contents(key.len(), entry);
        let key_len = u16::try_from(key.len()).expect("key lengths are checked in apply");
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(&entry.version.ts.to_le_bytes());
        buf.extend_from_slice(&entry.version.node.to_le_bytes());
        buf.extend_from_slice(&key_len.to_le_bytes());
        buf.push(flags);
        buf.extend_from_slice(key);
        if let Some(d) = &deadline {
            buf.extend_from_slice(d);
        }
        buf.extend_from_slice(value);
        Record(buf.into_boxed_slice())
    }

    /// Hold `entry` instead, for the same key. When the new contents are as long as the old
    /// (an overwrite with a value of the same size, the common case) the buffer is reused: no
    /// allocation, and no free of a buffer that is cold in the cache.
    fn overwrite(&mut self, key: &[u8], entry: &Entry) {
        let (deadline, value, flags, len) = contents(key.len(), entry);
        if len != self.0.len() {
            *self = Record::new(key, entry);
            return;
        }
        let buf = &mut self.0;
        buf[..8].copy_from_slice(&entry.version.ts.to_le_bytes());
        buf[8..KEY_LEN_AT].copy_from_slice(&entry.version.node.to_le_bytes());
        buf[FLAGS_AT] = flags;
        let mut at = HEADER + key.len();
        if let Some(d) = &deadline {
            buf[at..at + DEADLINE_LEN].copy_from_slice(d);
            at += DEADLINE_LEN;
        }
        buf[at..].copy_from_slice(value);
    }

    fn version(&self) -> Version {
        Version { ts: u64_at(&self.0, 0), node: u64_at(&self.0, 8) }
    }

    fn key_len(&self) -> usize {
        usize::from(u16::from_le_bytes(self.0[KEY_LEN_AT..FLAGS_AT].try_into().expect("2 bytes")))
    }

    fn flags(&self) -> u8 {
        self.0[FLAGS_AT]
    }

    fn key(&self) -> &[u8] {
        &self.0[HEADER..HEADER + self.key_len()]
    }

    fn is_tombstone(&self) -> bool {
        self.flags() & TOMBSTONE != 0
    }

    fn deadline(&self) -> Option<u64> {
        (self.flags() & DEADLINE != 0).then(|| u64_at(&self.0, HEADER + self.key_len()))
    }

    fn value(&self) -> &[u8] {
        let skip = if self.flags() & DEADLINE != 0 { DEADLINE_LEN } else { 0 };
        &self.0[HEADER + self.key_len() + skip..]
    }

    /// Key and value bytes, what a scan's byte bound counts.
    fn size(&self) -> usize {
        self.key_len() + self.value().len()
    }

    fn is_expired_at(&self, now_ms: u64) -> bool {
        !self.is_tombstone() && self.deadline().is_some_and(|t| now_ms > t)
    }

    /// The entry without its value: what [`Entry::dead_since`] needs.
    fn head(&self) -> Entry {
        Entry { version: self.version(), value: (!self.is_tombstone()).then(Bytes::new), expires: self.deadline() }
    }

    /// The entry, with its value copied out.
    fn entry(&self) -> Entry {
        let value = (!self.is_tombstone()).then(|| Bytes::copy_from_slice(self.value()));
        Entry { version: self.version(), value, expires: self.deadline() }
    }
}

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
        if key.len() > crate::MAX_KEY_BYTES {
            return Err(StorageError(format!(
                "a key of {} bytes is over the limit of {} bytes",
                key.len(),
                crate::MAX_KEY_BYTES
            )));
        }
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
        assert_eq!(e.apply(7, b"k", val(2, "new")).unwrap(), Applied::Stored);
        assert_eq!(e.apply(7, b"k", val(1, "old")).unwrap(), Applied::Stale);
        assert_eq!(e.get(7, b"k").unwrap(), Some(val(2, "new")));
        assert_eq!(e.apply(7, b"k", Entry::tombstone(v(3))).unwrap(), Applied::Stored);
        assert_eq!(
            e.apply(7, b"k", val(2, "new")).unwrap(),
            Applied::Stale,
            "a delete is never undone by an older value"
        );
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
}

#[cfg(test)]
mod record_tests {
    use super::*;

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
    fn a_record_is_one_pointer_wide() {
        // The index holds a record per key: keep it from growing unnoticed.
        assert_eq!(std::mem::size_of::<Record>(), 16);
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
}
