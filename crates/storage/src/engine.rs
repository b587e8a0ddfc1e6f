//! The storage engine interface.

use bytes::Bytes;

use crate::{Digests, Entry, Version};

/// Position in an engine's `(hash, key)` order: scanning resumes strictly after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub hash: u64,
    pub key: Bytes,
}

/// Outcome of [`Engine::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The entry was newer and is now stored.
    Stored,
    /// An equal or newer version was already stored; nothing changed.
    Stale,
}

/// A storage failure: an I/O error or corrupt data on disk. The text says which file or operation
/// failed; the node answers the request with a 500 and keeps running.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

pub type StorageResult<T> = Result<T, StorageError>;

/// Refuse a key over [`crate::MAX_KEY_BYTES`]: every engine checks it before it stores, so a key
/// no front end would take (one from a peer, say) is refused rather than stored wrong.
pub(crate) fn check_key(key: &[u8]) -> StorageResult<()> {
    if key.len() > crate::MAX_KEY_BYTES {
        return Err(StorageError(format!(
            "a key of {} bytes is over the limit of {} bytes",
            key.len(),
            crate::MAX_KEY_BYTES
        )));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Keys with a live value (tombstones not counted).
    pub keys: u64,
    /// Bytes of live keys plus values.
    pub bytes: u64,
    pub tombstones: u64,
    /// Of `keys`, those with a deadline (expired ones included until the sweep gets them).
    pub expiring: u64,
}

/// An entry as [`Engine::scan_keys`] sees it: where it is, its version, whether it is live and
/// how large its value is, with no value copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVersion {
    pub hash: u64,
    pub key: Bytes,
    pub version: Version,
    /// Bytes of the value (0 for a tombstone): what the scan's byte bound counted.
    pub value_len: usize,
    /// A delete, or a value turned into its tombstone at its deadline.
    pub tombstone: bool,
    /// A value's deadline (ms since the Unix epoch), if it has one.
    pub expires: Option<u64>,
}

impl KeyVersion {
    /// The entry's key and version, without its value.
    pub fn of(hash: u64, key: Bytes, entry: &Entry) -> KeyVersion {
        let (tombstone, value_len) = (entry.is_tombstone(), entry.value_len());
        let expires = entry.expires.filter(|_| !tombstone);
        KeyVersion { hash, key, version: entry.version, value_len, tombstone, expires }
    }

    /// Whether a client sees the key at `now_ms`, as [`Entry::live_value`] says.
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        !self.tombstone && self.expires.is_none_or(|t| now_ms <= t)
    }
}

/// What one page of [`Engine::expire`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Values turned into tombstones.
    pub expired: u64,
    /// Where the next page starts; `None` once the whole store was looked at.
    pub next: Option<Cursor>,
}

/// The byte bound of one [`Engine::scan_where`] call.
pub struct Budget {
    left: usize,
    first: bool,
}

impl Budget {
    pub fn new(max_bytes: usize) -> Self {
        Budget { left: max_bytes, first: true }
    }

    /// Whether an entry of `size` bytes still fits (the first one always does); if so, count it.
    pub fn take(&mut self, size: usize) -> bool {
        if !std::mem::take(&mut self.first) && size > self.left {
            return false;
        }
        self.left = self.left.saturating_sub(size);
        true
    }
}

/// A node's local store of versioned entries, ordered by `(hash, key)` where `hash` is the
/// placement hash the caller passes in (the engine does not know how keys are placed).
///
/// Every mutation is version-checked, so callers never need a read-modify-write cycle:
/// concurrent writers, moves and hand-offs of the same key resolve to the highest version.
///
/// Calls are blocking but short (a lookup, one insert, one page of a scan); [`Engine::sync`] is
/// the one call that waits for the disk, and callers batch it (group commit, see `dkv-node`).
pub trait Engine: Send + Sync + 'static {
    fn get(&self, hash: u64, key: &[u8]) -> StorageResult<Option<Entry>>;

    /// Store `entry` if it supersedes what is stored (or nothing is). A durable engine has the
    /// write in its log when this returns, but not necessarily on disk: see [`Engine::sync`].
    /// The engine keeps a copy of what it stores, never `entry.value` itself: callers pass slices
    /// of network buffers, which a kept `Bytes` would pin whole.
    fn apply(&self, hash: u64, key: &[u8], entry: Entry) -> StorageResult<Applied>;

    /// A hint that `hash` is about to be looked up or applied: an engine may start bringing what
    /// the lookup reads into the cache. A caller with many keys at hand (a batch) hints each a few
    /// keys before it gets to it, so their cache misses overlap.
    fn prefetch(&self, _hash: u64) {}

    /// Remove the key only if its stored version is still `version` — used after a key was handed
    /// to its new owner, so a write that landed meanwhile is not thrown away.
    fn remove_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool>;

    /// Up to `limit` entries with `start < (hash, key)` and `hash <= end_hash`, in order.
    /// Returns the cursor to resume from, or `None` when the range is exhausted.
    fn scan(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> StorageResult<Option<Cursor>>;

    /// Like [`Engine::scan`], but only the entries whose hash `keep` accepts reach `out`; `limit`
    /// counts the entries looked at, so a page over entries `keep` mostly refuses still ends. For
    /// passes that need a few entries out of many (what to hand off, what a joining node pulls):
    /// an engine that can, decides before copying a value.
    ///
    /// `max_bytes` bounds the key and value bytes kept: the scan stops before an entry that would
    /// take them past it, unless it has kept nothing yet (one larger entry then comes alone). So a
    /// page of values of megabytes is as bounded in memory, and on the wire, as one of small ones.
    fn scan_where(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        max_bytes: usize,
        keep: &mut dyn FnMut(u64) -> bool,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> StorageResult<Option<Cursor>> {
        // Generic and unbounded in what it copies: one page of `scan`, cut to the bounds after.
        let from = out.len();
        let mut cursor = self.scan(start, end_hash, limit, out)?;
        let mut budget = Budget::new(max_bytes);
        let mut kept = Vec::with_capacity(out.len() - from);
        for i in from..out.len() {
            let keep = keep(out[i].0);
            if keep && !budget.take(out[i].1.len() + out[i].2.value_len()) {
                // Resume after the last entry looked at before this one (never the first: the
                // first entry kept always fits).
                cursor = Some(Cursor { hash: out[i - 1].0, key: out[i - 1].1.clone() });
                out.truncate(i);
                break;
            }
            kept.push(keep);
        }
        let mut i = 0;
        out.retain(|_| {
            i += 1;
            i <= from || kept[i - 1 - from]
        });
        Ok(cursor)
    }

    /// Like [`Engine::scan`], but only each entry's hash and version — what a digest of the store
    /// needs — so an engine that can skips copying keys and values.
    fn scan_versions(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Version)>,
    ) -> StorageResult<Option<Cursor>> {
        let mut page = Vec::new();
        let cursor = self.scan(start, end_hash, limit, &mut page)?;
        out.extend(page.into_iter().map(|(hash, _, entry)| (hash, entry.version)));
        Ok(cursor)
    }

    /// Like [`Engine::scan_where`], but keys and versions without their values: what comparing
    /// two stores needs before it knows which values must go (anti-entropy reads the few values
    /// that differ afterwards, with [`Engine::get`]). `max_bytes` bounds the key and value bytes
    /// of the entries kept, as in [`Engine::scan_where`], so the values a page's comparison asks
    /// for fit in a message as a page of entries does.
    fn scan_keys(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        max_bytes: usize,
        keep: &mut dyn FnMut(u64) -> bool,
        out: &mut Vec<KeyVersion>,
    ) -> StorageResult<Option<Cursor>> {
        // Generic: the values are copied, then dropped.
        let mut page = Vec::new();
        let cursor = self.scan_where(start, end_hash, limit, max_bytes, keep, &mut page)?;
        out.extend(page.into_iter().map(|(hash, key, entry)| KeyVersion::of(hash, key, &entry)));
        Ok(cursor)
    }

    /// Drop tombstones that count as gone since before `before_ts` (see [`Entry::dead_since`]:
    /// a delete's version, an expiry's deadline); returns how many.
    fn purge_tombstones(&self, before_ts: u64) -> StorageResult<u64>;

    /// Turn the value stored under the key at exactly `version` into its tombstone (the same
    /// version, the deadline kept: [`Entry::expired`]); `false` if the key holds anything else
    /// now. What the expiry sweep does to a value past its deadline: the tombstone still beats
    /// any older value of the key, as the value did.
    fn expire_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool>;

    /// One page of the expiry sweep: look at up to `limit` entries after `start` (from the
    /// beginning when `None`) and turn every value expired at `now_ms` into its tombstone.
    /// An engine that can, looks at deadlines without copying values.
    fn expire(&self, start: Option<&Cursor>, limit: usize, now_ms: u64) -> StorageResult<Expired> {
        let mut page = Vec::new();
        let next = self.scan(start, u64::MAX, limit, &mut page)?;
        let mut expired = 0;
        for (hash, key, entry) in page {
            // Re-checked by version: a write that landed since the scan stays.
            if entry.is_expired_at(now_ms) && self.expire_if(hash, &key, entry.version)? {
                expired += 1;
            }
        }
        Ok(Expired { expired, next })
    }

    fn stats(&self) -> EngineStats;

    /// A number that changes whenever an entry is stored or removed (bumped after the change is
    /// visible to scans), so what was computed from a scan can be reused while it stays the same.
    /// `None`: the engine does not keep one, and nothing computed from it is reused.
    fn generation(&self) -> Option<u64> {
        None
    }

    /// The digests of the store's segments, kept up to date with every entry stored or removed
    /// (see [`crate::digests`]). `None`: the engine keeps none, and anti-entropy scans instead.
    fn digests(&self) -> Option<&Digests> {
        None
    }

    /// Why the store takes no more writes, once a write, removal or sync failed in a way it does
    /// not recover from without being reopened (a full disk, a directory it may no longer
    /// write): the first failure. The node then stops, to be started again (`life/store_watch.rs`).
    fn failed(&self) -> Option<String> {
        None
    }

    /// Whether writes survive a crash of the process (and, after [`Engine::sync`], of the machine).
    fn is_durable(&self) -> bool {
        false
    }

    /// Make every write applied so far durable on disk (fsync). Blocking; a no-op in memory.
    fn sync(&self) -> StorageResult<()> {
        Ok(())
    }
}

/// What every engine's scans must do, run against each of them.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    fn v(ts: u64) -> Version {
        Version { ts, node: 1 }
    }

    /// Pages bounded by bytes (a larger entry alone), resuming where they stopped, in order;
    /// versions alone walk the same entries.
    pub fn byte_bounded_scans(e: &dyn Engine) {
        // A key over the limit is refused, and nothing stored.
        let long = vec![b'k'; crate::MAX_KEY_BYTES + 1];
        let err = e.apply(5, &long, Entry::value(v(1), "x".into())).unwrap_err();
        assert!(err.0.contains("over the limit"), "{err}");
        assert_eq!(e.get(5, &long).unwrap(), None);
        assert!(e.apply(5, &long[1..], Entry::value(v(1), "x".into())).is_ok(), "a key at the limit is stored");
        assert!(e.remove_if(5, &long[1..], v(1)).unwrap());
        // An empty range, its start past its end (a peer may ask for one): nothing, no panic.
        let past = Cursor { hash: u64::MAX, key: Bytes::new() };
        let mut page = Vec::new();
        assert_eq!(e.scan_where(Some(&past), 0, 10, usize::MAX, &mut |_| true, &mut page).unwrap(), None);
        assert!(page.is_empty());
        let sizes = [10usize, 10, 100, 10, 1000, 10, 10, 50, 10, 10, 0];
        for (i, &len) in sizes.iter().enumerate() {
            let entry =
                if len == 0 { Entry::tombstone(v(i as u64)) } else { Entry::value(v(i as u64), vec![7; len].into()) };
            e.apply(i as u64 * 1000, format!("k{i}").as_bytes(), entry).unwrap();
        }
        // Keys are 2 bytes: entry i is sizes[i] + 2 bytes; the entry of hash 3000 is never kept.
        let keep = |h: u64| h != 3000;
        let want: Vec<u64> = (0..sizes.len() as u64).map(|i| i * 1000).filter(|&h| keep(h)).collect();
        let (mut cursor, mut got, mut pages) = (None, Vec::new(), Vec::new());
        loop {
            let mut page = Vec::new();
            cursor = e.scan_where(cursor.as_ref(), u64::MAX, 100, 120, &mut |h| keep(h), &mut page).unwrap();
            let bytes: usize = page.iter().map(|(_, k, e)| k.len() + e.value_len()).sum();
            assert!(bytes <= 120 || page.len() == 1, "page of {bytes} bytes: {page:?}");
            pages.push(page.iter().map(|(h, _, _)| *h).collect::<Vec<_>>());
            got.extend(page.into_iter().map(|(h, _, _)| h));
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(got, want);
        assert!(pages.contains(&vec![4000]), "the 1000-byte entry comes alone: {pages:?}");
        // Keys and versions alone: the same pages, each entry's version and value length.
        let (mut cursor, mut key_pages) = (None, Vec::new());
        loop {
            let mut page = Vec::new();
            cursor = e.scan_keys(cursor.as_ref(), u64::MAX, 100, 120, &mut |h| keep(h), &mut page).unwrap();
            for kv in &page {
                let i = (kv.hash / 1000) as usize;
                assert_eq!(
                    (&kv.key[..], kv.version, kv.value_len),
                    (format!("k{i}").as_bytes(), v(i as u64), sizes[i])
                );
                assert_eq!(kv.tombstone, sizes[i] == 0, "entry {i}");
            }
            key_pages.push(page.iter().map(|kv| kv.hash).collect::<Vec<_>>());
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(key_pages, pages, "keys alone are paged as entries are");
        // Pages end on the entries looked at, too.
        let mut page = Vec::new();
        let c = e.scan_where(None, u64::MAX, 2, usize::MAX, &mut |h| h > 5000, &mut page).unwrap();
        assert_eq!((page.len(), c.map(|c| c.hash)), (0, Some(1000)));

        let (mut cursor, mut versions) = (None, Vec::new());
        loop {
            cursor = e.scan_versions(cursor.as_ref(), u64::MAX, 3, &mut versions).unwrap();
            if cursor.is_none() {
                break;
            }
        }
        let all: Vec<(u64, Version)> = (0..sizes.len() as u64).map(|i| (i * 1000, v(i))).collect();
        assert_eq!(versions, all);
    }

    /// An engine with only the required methods, to run the trait's default scans.
    struct Plain(crate::MemoryEngine);

    impl Engine for Plain {
        fn get(&self, h: u64, k: &[u8]) -> StorageResult<Option<Entry>> {
            self.0.get(h, k)
        }
        fn apply(&self, h: u64, k: &[u8], e: Entry) -> StorageResult<Applied> {
            self.0.apply(h, k, e)
        }
        fn remove_if(&self, h: u64, k: &[u8], v: Version) -> StorageResult<bool> {
            self.0.remove_if(h, k, v)
        }
        fn scan(
            &self,
            s: Option<&Cursor>,
            e: u64,
            l: usize,
            o: &mut Vec<(u64, Bytes, Entry)>,
        ) -> StorageResult<Option<Cursor>> {
            self.0.scan(s, e, l, o)
        }
        fn purge_tombstones(&self, b: u64) -> StorageResult<u64> {
            self.0.purge_tombstones(b)
        }
        fn expire_if(&self, h: u64, k: &[u8], v: Version) -> StorageResult<bool> {
            self.0.expire_if(h, k, v)
        }
        fn stats(&self) -> EngineStats {
            self.0.stats()
        }
    }

    #[test]
    fn the_default_scans_keep_the_contract() {
        byte_bounded_scans(&Plain(crate::MemoryEngine::new()));
        expiry_sweeps(&Plain(crate::MemoryEngine::new()));
    }

    #[test]
    fn the_memory_engine_keeps_the_contract() {
        byte_bounded_scans(&crate::MemoryEngine::new());
        expiry_sweeps(&crate::MemoryEngine::new());
    }

    #[test]
    fn the_durable_engine_keeps_the_contract() {
        let dir = std::env::temp_dir().join(format!("dkv-scan-contract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        byte_bounded_scans(&crate::DurableEngine::open(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        let dir = std::env::temp_dir().join(format!("dkv-expiry-contract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        expiry_sweeps(&crate::DurableEngine::open(&dir).unwrap());
        // Deadlines, and the tombstones expiry left, survive a reopen.
        let e = crate::DurableEngine::open(&dir).unwrap();
        assert_eq!(e.get(3, b"t").unwrap().unwrap().expires, Some(2_000));
        assert_eq!(e.get(1, b"a").unwrap(), Some(Entry { version: v(1), value: None, expires: Some(1_000) }));
        assert_eq!(e.stats(), EngineStats { keys: 3, bytes: 7, tombstones: 2, expiring: 1 });
        drop(e);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The sweep turns expired values, and only those, into tombstones of the same version, in
    /// pages; the counters follow; the purge counts an expiry's grace from its deadline.
    pub fn expiry_sweeps(e: &dyn Engine) {
        let val = |ts, s: &'static str, t| Entry::expiring(v(ts), Bytes::from_static(s.as_bytes()), t);
        e.apply(1, b"a", val(1, "x", Some(1_000))).unwrap();
        e.apply(2, b"b", val(1, "y", Some(1_500))).unwrap();
        e.apply(3, b"t", val(1, "z", Some(2_000))).unwrap();
        e.apply(4, b"n", val(1, "w", None)).unwrap();
        assert_eq!(e.stats(), EngineStats { keys: 4, bytes: 8, tombstones: 0, expiring: 3 });
        // A newer write of b without a deadline lands between the page's scan and its change.
        let first = e.expire(None, 1, 1_600).unwrap();
        assert_eq!((first.expired, first.next.as_ref().map(|c| c.hash)), (1, Some(1)));
        e.apply(2, b"b", val(2, "y2", None)).unwrap();
        assert!(!e.expire_if(2, b"b", v(1)).unwrap(), "the newer write stays");
        let mut cursor = first.next;
        let mut expired = first.expired;
        loop {
            let page = e.expire(cursor.as_ref(), 1, 1_600).unwrap();
            expired += page.expired;
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(expired, 1, "a only: b was written again, t and n are not due");
        assert_eq!(e.get(1, b"a").unwrap(), Some(Entry { version: v(1), value: None, expires: Some(1_000) }));
        assert_eq!(e.get(2, b"b").unwrap().unwrap().value.as_deref(), Some(&b"y2"[..]));
        assert_eq!(e.stats(), EngineStats { keys: 3, bytes: 7, tombstones: 1, expiring: 1 });
        assert_eq!(e.apply(1, b"a", val(1, "x", Some(1_000))).unwrap(), Applied::Stale, "the same write again");
        assert_eq!(e.apply(1, b"a", Entry::value(v(0), Bytes::from_static(b"old"))).unwrap(), Applied::Stale);
        // The tombstone of an expiry is gone from its deadline, not from its version.
        let ts = |ms| crate::Hlc::ts_at_ms(ms);
        e.apply(5, b"d", Entry::tombstone(Version { ts: ts(1_200), node: 1 })).unwrap();
        assert_eq!(e.purge_tombstones(ts(1_000)).unwrap(), 0, "a's deadline is 1000 ms, its version 1");
        assert_eq!(e.purge_tombstones(ts(1_100)).unwrap(), 1);
        assert_eq!(e.get(1, b"a").unwrap(), None);
        assert!(e.get(5, b"d").unwrap().is_some());
        e.apply(1, b"a", val(1, "x", Some(1_000))).unwrap();
        assert!(e.expire_if(1, b"a", v(1)).unwrap());
        assert!(!e.expire_if(1, b"a", v(1)).unwrap(), "already a tombstone");
        assert!(!e.expire_if(9, b"none", v(1)).unwrap());
        assert_eq!(e.stats(), EngineStats { keys: 3, bytes: 7, tombstones: 2, expiring: 1 });
        // Keys alone say what the entries say: tombstones, deadlines, and so what a client sees.
        let (mut entries, mut keys) = (Vec::new(), Vec::new());
        e.scan(None, u64::MAX, 100, &mut entries).unwrap();
        e.scan_keys(None, u64::MAX, 100, usize::MAX, &mut |_| true, &mut keys).unwrap();
        let want: Vec<KeyVersion> = entries.iter().map(|(h, k, entry)| KeyVersion::of(*h, k.clone(), entry)).collect();
        assert_eq!(keys, want);
        assert!(keys.iter().any(|k| k.expires.is_some()) && keys.iter().filter(|k| k.tombstone).count() == 2);
        for now in [1_000, 2_000, 2_001] {
            for ((_, key, entry), kv) in entries.iter().zip(&keys) {
                assert_eq!(kv.is_live_at(now), entry.live_value(now).is_some(), "{key:?} at {now}");
            }
        }
    }
}

#[cfg(test)]
mod generation_tests {
    use super::*;

    fn changes_with_every_store_and_removal(e: &dyn Engine) {
        let v = |ts| Version { ts, node: 1 };
        let g0 = e.generation().expect("kept");
        e.apply(1, b"k", Entry::value(v(2), "x".into())).unwrap();
        let g1 = e.generation().unwrap();
        assert_ne!(g0, g1, "stored");
        e.apply(1, b"k", Entry::value(v(1), "old".into())).unwrap();
        assert_eq!(e.generation().unwrap(), g1, "a stale version changes nothing");
        e.remove_if(1, b"k", v(1)).unwrap();
        assert_eq!(e.generation().unwrap(), g1, "nothing removed");
        e.apply(2, b"t", Entry::tombstone(v(1))).unwrap();
        let g2 = e.generation().unwrap();
        assert!(e.remove_if(1, b"k", v(2)).unwrap());
        let g3 = e.generation().unwrap();
        assert_ne!(g2, g3, "removed");
        assert_eq!(e.purge_tombstones(5).unwrap(), 1);
        assert_ne!(e.generation().unwrap(), g3, "purged");
    }

    #[test]
    fn both_engines_count_changes() {
        changes_with_every_store_and_removal(&crate::MemoryEngine::new());
        let dir = std::env::temp_dir().join(format!("dkv-generation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        changes_with_every_store_and_removal(&crate::DurableEngine::open(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod digest_tests {
    use super::*;
    use crate::digests::{entry_digest, segment_of, SEGMENTS};

    /// The digests a scan of `e` computes: what the kept ones must equal.
    fn scanned(e: &dyn Engine) -> Vec<u64> {
        let mut out = vec![0u64; SEGMENTS];
        let mut page = Vec::new();
        e.scan_versions(None, u64::MAX, usize::MAX, &mut page).unwrap();
        for (hash, version) in page {
            out[segment_of(hash)] = out[segment_of(hash)].wrapping_add(entry_digest(hash, version));
        }
        out
    }

    fn kept(e: &dyn Engine) -> Vec<u64> {
        let d = e.digests().expect("kept");
        (0..SEGMENTS).map(|s| d.segment(s)).collect()
    }

    /// Stores, overwrites, stale writes, expiry, removals and purges, over keys that share
    /// segments and hashes: after each, the kept digests are those of a scan.
    fn follow_every_change(e: &dyn Engine) {
        let v = |ts| Version { ts, node: 1 };
        let far = u64::MAX - 3;
        type Change<'a> = Box<dyn Fn(&dyn Engine) + 'a>;
        let steps: Vec<Change<'_>> = vec![
            Box::new(|e| drop(e.apply(1, b"a", Entry::value(v(2), "x".into())))),
            Box::new(|e| drop(e.apply(1, b"b", Entry::value(v(3), "y".into())))),
            Box::new(move |e| drop(e.apply(far, b"c", Entry { expires: Some(10), ..Entry::value(v(4), "z".into()) }))),
            Box::new(|e| drop(e.apply(1, b"a", Entry::value(v(1), "stale".into())))),
            Box::new(|e| drop(e.apply(1, b"a", Entry::value(v(5), "newer".into())))),
            Box::new(|e| drop(e.expire(None, 100, 1_000))),
            Box::new(|e| drop(e.apply(2, b"d", Entry::tombstone(v(1))))),
            Box::new(|e| drop(e.remove_if(1, b"b", v(2)))),
            Box::new(|e| drop(e.remove_if(1, b"b", v(3)))),
            Box::new(|e| drop(e.purge_tombstones(5))),
        ];
        assert_eq!(kept(e), scanned(e));
        for (i, step) in steps.iter().enumerate() {
            step(e);
            assert_eq!(kept(e), scanned(e), "after step {i}");
        }
        assert_ne!(kept(e), vec![0; SEGMENTS], "entries remain");
    }

    #[test]
    fn both_engines_keep_their_digests_with_every_change() {
        follow_every_change(&crate::MemoryEngine::new());
        let dir = std::env::temp_dir().join(format!("dkv-digests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        follow_every_change(&crate::DurableEngine::open(&dir).unwrap());
        // Counted again from the store when it opens.
        let e = crate::DurableEngine::open(&dir).unwrap();
        assert_eq!(kept(&e), scanned(&e));
        assert_ne!(kept(&e), vec![0; SEGMENTS]);
        drop(e);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
