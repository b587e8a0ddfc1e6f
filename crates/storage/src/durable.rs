//! The durable engine: an LSM tree (fjall) in the data directory's `store/`.
//!
//! Chosen over redb by measurement on dkv's workload (see `bench/engines/`): an LSM takes
//! concurrent writes without a single-writer transaction, and its journal gives group commit for
//! free — many writes appended, one `fdatasync` ([`Engine::sync`]) makes all of them durable.
//!
//! Every `apply` is appended to fjall's journal and handed to the OS before it returns, so a write
//! survives the *process* being killed; surviving a machine crash takes a [`Engine::sync`], which
//! the node runs per write batch (`--fsync always`) or on a timer (`--fsync periodic`).
//!
//! Records are laid out by [`crate::codec`], ordered by `(hash, key)` like the memory engine. The
//! version check and the write of one key happen under one of 256 striped locks, so two
//! concurrent writers of a key cannot both pass the check; the stripes are short-held std locks.
//! Live key, byte and tombstone counts are kept in memory and rebuilt by one scan at open.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::codec::{
    decode_deadline, decode_entry, decode_store_key, decode_stub, decode_version, encode_entry, encoded_value_len,
    hash_upper_bound, store_key,
};
use crate::engine::{Applied, Budget, Cursor, Engine, EngineStats, Expired, KeyVersion, StorageError, StorageResult};
use crate::journal_cut::{self, JournalCut};
use crate::{Digests, Entry, Version};

const STRIPES: usize = 256;

/// What a scan shows each record: its hash, key and encoded entry.
type Visit<'a> = dyn FnMut(u64, &[u8], &[u8]) -> StorageResult<Step> + 'a;
/// What [`DurableEngine::walk_kept`] hands each record it keeps: hash, key, encoded entry.
type Take<'a> = dyn FnMut(u64, &[u8], &[u8]) -> StorageResult<()> + 'a;

/// What a scan does after showing a record to its visitor.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Next,
    /// Stop before this record: the scan resumes at it.
    Stop,
}

pub struct DurableEngine {
    path: PathBuf,
    db: Database,
    data: Keyspace,
    stripes: Vec<Mutex<()>>,
    keys: AtomicU64,
    bytes: AtomicU64,
    tombstones: AtomicU64,
    expiring: AtomicU64,
    /// See [`Engine::generation`]; bumped after each insert or removal.
    generation: AtomicU64,
    /// See [`Engine::digests`]; changed under the key's stripe, with the entry.
    digests: Digests,
    /// The first write the store failed (see [`Engine::failed`]).
    failed: OnceLock<String>,
    /// The journals whose written records the open cut off (see [`crate::journal_cut`]).
    cut_at_open: Vec<JournalCut>,
}

/// How the store's keyspace is laid out, fixed when it is created (fjall keeps the options with
/// the keyspace, and a store opened again keeps its own).
///
/// fjall's defaults give a table below level 3 one index block and one filter block, each read
/// whole through a block cache whose shards are a few MiB. Values that compress well make big
/// tables: 1 KiB values that lz4 shrinks tenfold put about 1.3 million keys in one 64 MiB table,
/// whose index block is then 7.9 MB, too big for any shard; so every lookup read it again from
/// the file and hashed it for its checksum (found by a hunt, 2026-12-07: 3 300 GETs/s on one
/// node holding 2 million such values, 90% of its CPU in that read and that hash, against 30 000
/// with values that do not compress). Index and filter blocks are partitioned from level 1 on:
/// a lookup reads a small top-level index, then one partition of 4 KiB, each cached.
fn keyspace_options() -> KeyspaceCreateOptions {
    use fjall::config::PartitioningPolicy;
    KeyspaceCreateOptions::default()
        .index_block_partitioning_policy(PartitioningPolicy::new([false, true]))
        .filter_block_partitioning_policy(PartitioningPolicy::new([false, true]))
}

impl DurableEngine {
    /// Open (or create) the store at `path` and count what it holds.
    pub fn open(path: &Path) -> StorageResult<DurableEngine> {
        // fjall's words (`Unrecoverable`, `InvalidVersion(None)`) name no file and no way out.
        let err = |e: fjall::Error| {
            if let fjall::Error::Io(e) = e {
                return StorageError(format!("opening the store in {}: {e}", path.display()));
            }
            StorageError(format!(
                "opening the store in {}: {e}: its files are damaged or not a dkv store's; move the data directory \
                 aside and start the node on an empty one: it joins as a new member and copies its ranges from \
                 their replicas",
                path.display()
            ))
        };
        let written = journal_cut::written_ends(path);
        let db = Database::builder(path).cache_size(64 << 20).open().map_err(err)?;
        let cut_at_open = journal_cut::cuts(written);
        let data = db.keyspace("data", keyspace_options).map_err(err)?;
        let engine = DurableEngine {
            path: path.to_path_buf(),
            db,
            data,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            keys: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            tombstones: AtomicU64::new(0),
            expiring: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            digests: Digests::default(),
            failed: OnceLock::new(),
            cut_at_open,
        };
        engine.count()?;
        Ok(engine)
    }

    /// The journals that lost written records as the store opened: damage in their middle, or a
    /// crash's torn last write (see [`crate::journal_cut`]). Empty when every record was read.
    pub fn cut_at_open(&self) -> &[JournalCut] {
        &self.cut_at_open
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError(format!("{what} in {}: {e}", self.path.display()))
    }

    /// The error of a write, a removal or a sync of the journal, which fjall answers by taking no
    /// write again ("poisoned": its journal may hold a record it could not finish, and it asks to
    /// be reopened). The first such error is kept (a full disk, a directory it may not write) and
    /// every later one says it, since fjall's own only says "Poisoned".
    fn write_failed(&self, what: &str, e: impl std::fmt::Display) -> StorageError {
        let first = self.failed.get_or_init(|| {
            // The store failed in fjall's own background work (a flush of its memtable hit a full
            // disk, say) before any write of ours did: ours then meets only "Poisoned", and the
            // reason is in fjall's log lines (found by trying, 2026-12-06).
            let e = e.to_string();
            let why = match e.contains("Poisoned") {
                true => format!(
                    "{e} (fjall failed an earlier write of its own, such as a flush: its ERROR line in this log says \
                     why; usually a full disk or a directory it may no longer write)"
                ),
                false => e,
            };
            format!("{what} in {}: {why}", self.path.display())
        });
        StorageError(format!("the store takes no writes since {first}"))
    }

    /// One pass over the store to rebuild the counters (and to find corruption at open, not at
    /// the first unlucky read).
    fn count(&self) -> StorageResult<()> {
        for item in self.data.iter() {
            let (k, v) = item.into_inner().map_err(|e| self.err("reading", e))?;
            let (hash, key) = decode_store_key(&k).map_err(|e| self.err("decoding a key", e))?;
            // Not decoded whole: that copied every value of the store at each start.
            let (version, tombstone, expires) = decode_stub(&v).map_err(|e| self.err("decoding a value", e))?;
            let held = Held { tombstone, value_len: encoded_value_len(&v), expiring: expires.is_some() };
            self.account_held(key.len(), held, true);
            self.digests.add(hash, version);
        }
        Ok(())
    }

    fn account(&self, key_len: usize, entry: &Entry, add: bool) {
        let held =
            Held { tombstone: entry.is_tombstone(), value_len: entry.value_len(), expiring: entry.expires.is_some() };
        self.account_held(key_len, held, add);
    }

    fn account_held(&self, key_len: usize, held: Held, add: bool) {
        let change = |n: &AtomicU64, d: u64| {
            if add {
                n.fetch_add(d, Ordering::Relaxed);
            } else {
                n.fetch_sub(d, Ordering::Relaxed);
            }
        };
        if held.tombstone {
            change(&self.tombstones, 1);
        } else {
            change(&self.keys, 1);
            change(&self.bytes, (key_len + held.value_len) as u64);
            if held.expiring {
                change(&self.expiring, 1);
            }
        }
    }

    fn stripe(&self, hash: u64) -> std::sync::MutexGuard<'_, ()> {
        self.stripes[(hash as usize) % STRIPES].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`DurableEngine::walk`] for the scans bounded by bytes: `take` gets the records whose hash
    /// `keep` accepts while their key and value bytes fit in `max_bytes` (the first always does).
    fn walk_kept(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        max_bytes: usize,
        keep: &mut dyn FnMut(u64) -> bool,
        take: &mut Take<'_>,
    ) -> StorageResult<Option<Cursor>> {
        let mut budget = Budget::new(max_bytes);
        self.walk(start, end_hash, limit, &mut |hash, key, v| {
            if !keep(hash) {
                return Ok(Step::Next);
            }
            if !budget.take(key.len() + encoded_value_len(v)) {
                return Ok(Step::Stop);
            }
            take(hash, key, v)?;
            Ok(Step::Next)
        })
    }

    /// Show `visit` the records (hash, key, encoded entry) after `start` up to `end_hash` in
    /// order, at most `limit` of them; returns the cursor after the last one looked at, or `None`
    /// when the range is exhausted.
    fn walk(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        visit: &mut Visit<'_>,
    ) -> StorageResult<Option<Cursor>> {
        let lower = match start {
            Some(c) => Bound::Excluded(store_key(c.hash, &c.key)),
            None => Bound::Unbounded,
        };
        let upper = match hash_upper_bound(end_hash) {
            Some(b) => Bound::Excluded(b.to_vec()),
            None => Bound::Unbounded,
        };
        let cursor = |k: &[u8]| -> StorageResult<Cursor> {
            let (hash, key) = decode_store_key(k).map_err(|e| self.err("decoding a key", e))?;
            Ok(Cursor { hash, key: Bytes::copy_from_slice(key) })
        };
        let mut looked = 0;
        let mut last: Option<fjall::Slice> = None;
        for item in self.data.range::<Vec<u8>, _>((lower, upper)) {
            let (k, v) = item.into_inner().map_err(|e| self.err("scanning", e))?;
            let (hash, key) = decode_store_key(&k).map_err(|e| self.err("decoding a key", e))?;
            if visit(hash, key, &v)? == Step::Stop {
                return match &last {
                    Some(k) => cursor(k).map(Some),
                    None => Ok(start.cloned()),
                };
            }
            looked += 1;
            if looked == limit {
                return cursor(&k).map(Some);
            }
            last = Some(k);
        }
        Ok(None)
    }

    fn read(&self, store_key: &[u8]) -> StorageResult<Option<Entry>> {
        match self.data.get(store_key).map_err(|e| self.err("reading", e))? {
            Some(v) => decode_entry(&v).map(Some).map_err(|e| self.err("decoding a value", e)),
            None => Ok(None),
        }
    }
}

impl Engine for DurableEngine {
    fn get(&self, hash: u64, key: &[u8]) -> StorageResult<Option<Entry>> {
        self.read(&store_key(hash, key))
    }

    fn apply(&self, hash: u64, key: &[u8], entry: Entry) -> StorageResult<Applied> {
        // Also the store's own bound: its journal records a key's length in 16 bits.
        crate::engine::check_key(key)?;
        let sk = store_key(hash, key);
        let _stripe = self.stripe(hash);
        let old = self.read(&sk)?;
        if old.as_ref().is_some_and(|old| !entry.supersedes(old)) {
            return Ok(Applied::Stale);
        }
        self.data.insert(sk, encode_entry(&entry)).map_err(|e| self.write_failed("writing", e))?;
        if let Some(old) = &old {
            self.account(key.len(), old, false);
            self.digests.remove(hash, old.version);
        }
        self.account(key.len(), &entry, true);
        self.digests.add(hash, entry.version);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(Applied::Stored)
    }

    fn remove_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool> {
        let sk = store_key(hash, key);
        let _stripe = self.stripe(hash);
        match self.read(&sk)? {
            Some(old) if old.version == version => {
                self.data.remove(sk).map_err(|e| self.write_failed("removing", e))?;
                self.account(key.len(), &old, false);
                self.digests.remove(hash, old.version);
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn scan(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> StorageResult<Option<Cursor>> {
        self.walk(start, end_hash, limit, &mut |hash, key, v| {
            let entry = decode_entry(v).map_err(|e| self.err("decoding a value", e))?;
            out.push((hash, Bytes::copy_from_slice(key), entry));
            Ok(Step::Next)
        })
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
        self.walk_kept(start, end_hash, limit, max_bytes, keep, &mut |hash, key, v| {
            let entry = decode_entry(v).map_err(|e| self.err("decoding a value", e))?;
            out.push((hash, Bytes::copy_from_slice(key), entry));
            Ok(())
        })
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
        self.walk_kept(start, end_hash, limit, max_bytes, keep, &mut |hash, key, v| {
            let (version, tombstone, expires) = decode_stub(v).map_err(|e| self.err("decoding a value", e))?;
            let value_len = encoded_value_len(v);
            out.push(KeyVersion { hash, key: Bytes::copy_from_slice(key), version, value_len, tombstone, expires });
            Ok(())
        })
    }

    fn scan_versions(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Version)>,
    ) -> StorageResult<Option<Cursor>> {
        self.walk(start, end_hash, limit, &mut |hash, _, v| {
            out.push((hash, decode_version(v).map_err(|e| self.err("decoding a value", e))?));
            Ok(Step::Next)
        })
    }

    fn purge_tombstones(&self, before_ts: u64) -> StorageResult<u64> {
        // Removed a batch at a time as the scan finds them (the scan reads a snapshot), so a
        // mass delete's millions of tombstones are never held at once.
        const BATCH: usize = 4096;
        let mut old = Vec::with_capacity(BATCH);
        let mut purged = 0;
        let mut remove = |old: &mut Vec<(u64, Vec<u8>, Version)>| -> StorageResult<()> {
            for (hash, key, version) in old.drain(..) {
                // Re-checked under the stripe: a newer write may have landed since the scan.
                if self.remove_if(hash, &key, version)? {
                    purged += 1;
                }
            }
            Ok(())
        };
        for item in self.data.iter() {
            let (k, v) = item.into_inner().map_err(|e| self.err("scanning", e))?;
            // Only a tombstone is decoded whole (it has no value to copy): decoding every entry
            // copied every value of the store, each time the purge ran (found by reading,
            // 2026-12-08).
            let (_, tombstone, _) = decode_stub(&v).map_err(|e| self.err("decoding a value", e))?;
            if !tombstone {
                continue;
            }
            let entry = decode_entry(&v).map_err(|e| self.err("decoding a value", e))?;
            if entry.is_tombstone() && entry.dead_since().is_some_and(|ts| ts < before_ts) {
                let (hash, key) = decode_store_key(&k).map_err(|e| self.err("decoding a key", e))?;
                old.push((hash, key.to_vec(), entry.version));
                if old.len() == BATCH {
                    remove(&mut old)?;
                }
            }
        }
        remove(&mut old)?;
        Ok(purged)
    }

    fn expire_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool> {
        let sk = store_key(hash, key);
        let _stripe = self.stripe(hash);
        match self.read(&sk)? {
            Some(old) if old.version == version && !old.is_tombstone() => {
                let tombstone = old.clone().expired();
                self.data.insert(sk, encode_entry(&tombstone)).map_err(|e| self.write_failed("writing", e))?;
                self.account(key.len(), &old, false);
                self.account(key.len(), &tombstone, true);
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn expire(&self, start: Option<&Cursor>, limit: usize, now_ms: u64) -> StorageResult<Expired> {
        // Deadlines are read from the records' headers; values are not copied.
        let mut due = Vec::new();
        let next = self.walk(start, u64::MAX, limit, &mut |hash, key, v| {
            if let Some((version, deadline)) = decode_deadline(v).map_err(|e| self.err("decoding a value", e))? {
                if now_ms > deadline {
                    due.push((hash, key.to_vec(), version));
                }
            }
            Ok(Step::Next)
        })?;
        let mut expired = 0;
        for (hash, key, version) in due {
            expired += u64::from(self.expire_if(hash, &key, version)?);
        }
        Ok(Expired { expired, next })
    }

    fn digests(&self) -> Option<&Digests> {
        Some(&self.digests)
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            keys: self.keys.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            tombstones: self.tombstones.load(Ordering::Relaxed),
            expiring: self.expiring.load(Ordering::Relaxed),
        }
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::Acquire))
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn failed(&self) -> Option<String> {
        self.failed.get().cloned()
    }

    fn sync(&self) -> StorageResult<()> {
        self.db.persist(PersistMode::SyncData).map_err(|e| self.write_failed("syncing the journal", e))
    }
}

/// What the counts of the store see of one entry.
#[derive(Clone, Copy)]
struct Held {
    tombstone: bool,
    value_len: usize,
    expiring: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ts: u64) -> Version {
        Version { ts, node: 1 }
    }

    /// Tombstones are purged a batch at a time as the scan finds them: more than one batch, with
    /// values and fresh tombstones among them, which stay.
    #[test]
    fn a_purge_of_many_tombstones_takes_every_old_one_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("dkv-durable-purge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let e = DurableEngine::open(&dir).unwrap();
        for i in 0..10_000u64 {
            let entry = match i % 10 {
                0 => Entry::value(v(1), Bytes::from_static(b"x")),
                1 => Entry::tombstone(v(1_000_000)),
                _ => Entry::tombstone(v(1)),
            };
            e.apply(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), &i.to_be_bytes(), entry).unwrap();
        }
        assert_eq!(e.purge_tombstones(1_000).unwrap(), 8_000);
        assert_eq!(e.stats(), EngineStats { keys: 1_000, bytes: 9_000, tombstones: 1_000, expiring: 0 });
        drop(e);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn versions_scans_and_counts_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("dkv-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let e = DurableEngine::open(&dir).unwrap();
            assert_eq!(e.apply(7, b"k", Entry::value(v(2), Bytes::from_static(b"new"))).unwrap(), Applied::Stored);
            assert_eq!(e.apply(7, b"k", Entry::value(v(1), Bytes::from_static(b"old"))).unwrap(), Applied::Stale);
            e.apply(u64::MAX, b"last", Entry::tombstone(v(5))).unwrap();
            e.apply(0, b"first", Entry::value(v(1), Bytes::from_static(b"x"))).unwrap();
            e.apply(7, b"j", Entry::tombstone(v(1))).unwrap();
            e.sync().unwrap();
        }
        let e = DurableEngine::open(&dir).unwrap();
        assert_eq!(e.get(7, b"k").unwrap().unwrap().value.unwrap(), Bytes::from_static(b"new"));
        assert_eq!(e.stats(), EngineStats { keys: 2, bytes: 4 + 6, tombstones: 2, expiring: 0 });
        let mut out = Vec::new();
        let next = e.scan(None, 7, 2, &mut out).unwrap();
        assert_eq!(next, Some(Cursor { hash: 7, key: Bytes::from_static(b"j") }));
        e.scan(next.as_ref(), 7, 10, &mut out).unwrap();
        let order: Vec<(u64, &[u8])> = out.iter().map(|(h, k, _)| (*h, &k[..])).collect();
        assert_eq!(order, vec![(0, &b"first"[..]), (7, b"j"), (7, b"k")], "u64::MAX is past end_hash 7");
        assert_eq!(e.purge_tombstones(3).unwrap(), 1);
        assert!(!e.remove_if(7, b"k", v(1)).unwrap());
        assert!(e.remove_if(7, b"k", v(2)).unwrap());
        assert_eq!(e.stats(), EngineStats { keys: 1, bytes: 6, tombstones: 1, expiring: 0 });
        drop(e);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A journal zeroed in its middle opens without an error and without the records after the
    /// damage (fjall stops reading there): the engine says what was cut. A clean reopen cuts
    /// nothing (found by the durability hunt, 2026-12-07).
    #[test]
    fn a_journal_damaged_in_its_middle_is_reported_as_cut_at_open() {
        let dir = std::env::temp_dir().join(format!("dkv-durable-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let write = |from: u64, to: u64| {
            let e = DurableEngine::open(&dir).unwrap();
            assert_eq!(e.cut_at_open(), [], "every record read");
            for i in from..to {
                e.apply(
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    &i.to_be_bytes(),
                    Entry::value(v(1), vec![7; 100].into()),
                )
                .unwrap();
            }
            e.sync().unwrap();
        };
        write(0, 1_000);
        write(1_000, 2_000);
        let journal = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "jnl") && std::fs::metadata(p).unwrap().len() > 100_000);
        let journal = journal.expect("a journal holding the writes");
        let len = std::fs::metadata(&journal).unwrap().len();
        std::os::unix::fs::FileExt::write_all_at(
            &std::fs::File::options().write(true).open(&journal).unwrap(),
            &[0; 4096],
            len / 2,
        )
        .unwrap();
        let e = DurableEngine::open(&dir).unwrap();
        let cut = e.cut_at_open();
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert!(cut[0].file == journal && cut[0].kept <= len / 2 && cut[0].written == len, "{cut:?}");
        assert!(e.stats().keys < 1_500, "the records after the damage are gone: {:?}", e.stats());
        drop(e);
        let e = DurableEngine::open(&dir).unwrap();
        assert_eq!(e.cut_at_open(), [], "once cut, the journal opens whole");
        drop(e);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
