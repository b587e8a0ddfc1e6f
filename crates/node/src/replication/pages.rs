//! Pages of the local store for the passes that ship entries to other nodes: range pulls,
//! hand-offs and anti-entropy buckets.
//!
//! A page is bounded twice: by the entries looked at, so a page over a range this node mostly
//! does not share still ends promptly, and by the key and value bytes kept ([`BATCH_BYTES`]; a
//! single larger entry comes alone), so a page of values of megabytes fits in a frame as a page
//! of small ones does. It is scanned in short steps, so no engine lock is held for long. Scanning
//! blocks: callers run it off the async runtime (`block_in_place`).

use bytes::Bytes;
use dkv_storage::{Cursor, Engine, Entry, KeyVersion, StorageResult};

use crate::transport::wire::{KeyEntry, BATCH_BYTES};

/// Entries looked at per engine call.
const STEP: usize = 512;

/// One page: entries with their values (`(hash, key, entry)`), or keys and versions alone
/// ([`KeyVersion`]).
#[derive(Debug)]
pub struct Page<T = (u64, Bytes, Entry)> {
    pub entries: Vec<T>,
    /// Key and value bytes of `entries`.
    pub bytes: usize,
    /// Where the next page starts; `None` once the range is exhausted.
    pub next: Option<Cursor>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page { entries: Vec::new(), bytes: 0, next: None }
    }
}

impl Page {
    pub fn into_key_entries(self) -> Vec<KeyEntry> {
        self.entries.into_iter().map(|(_, key, entry)| KeyEntry { key, entry }).collect()
    }
}

/// What a page's byte bound counts of an item: its key and value bytes.
pub trait Bounded {
    fn size(&self) -> usize;
}

impl Bounded for (u64, Bytes, Entry) {
    fn size(&self) -> usize {
        self.1.len() + self.2.value_len()
    }
}

impl Bounded for KeyVersion {
    fn size(&self) -> usize {
        self.key.len() + self.value_len
    }
}

/// The entries after `after` (from the start when `None`) with hashes up to `end_hash` that
/// `keep` accepts: at most `max_looked` looked at and [`BATCH_BYTES`] kept.
pub fn page(
    engine: &dyn Engine,
    after: Option<Cursor>,
    end_hash: u64,
    max_looked: usize,
    keep: &mut dyn FnMut(u64) -> bool,
) -> StorageResult<Page> {
    page_of(engine, after, end_hash, max_looked, BATCH_BYTES, keep)
}

/// [`page`] with its own byte bound.
pub fn page_of(
    engine: &dyn Engine,
    after: Option<Cursor>,
    end_hash: u64,
    max_looked: usize,
    max_bytes: usize,
    keep: &mut dyn FnMut(u64) -> bool,
) -> StorageResult<Page> {
    paged(after, max_looked, max_bytes, &mut |cursor, step, left, out| {
        engine.scan_where(cursor, end_hash, step, left, keep, out)
    })
}

/// [`page`] of keys and versions alone: the same entries, bounded by the same bytes, with no
/// value copied. For comparisons that read the few values that must go afterwards.
pub fn key_page(
    engine: &dyn Engine,
    after: Option<Cursor>,
    end_hash: u64,
    max_looked: usize,
    keep: &mut dyn FnMut(u64) -> bool,
) -> StorageResult<Page<KeyVersion>> {
    paged(after, max_looked, BATCH_BYTES, &mut |cursor, step, left, out| {
        engine.scan_keys(cursor, end_hash, step, left, keep, out)
    })
}

/// One step of a page's scan: `(cursor, entries to look at, bytes left, out)`, as the engine's scans.
type Scan<'a, T> = dyn FnMut(Option<&Cursor>, usize, usize, &mut Vec<T>) -> StorageResult<Option<Cursor>> + 'a;

/// A page scanned by `scan(cursor, step, bytes_left, out)` in steps of at most [`STEP`] entries.
fn paged<T: Bounded>(
    after: Option<Cursor>,
    max_looked: usize,
    max_bytes: usize,
    scan: &mut Scan<'_, T>,
) -> StorageResult<Page<T>> {
    let mut out = Page::default();
    let (mut cursor, mut looked) = (after, 0);
    loop {
        let step = STEP.min(max_looked - looked).max(1);
        let (before, from) = (cursor.clone(), out.entries.len());
        let left = max_bytes.saturating_sub(out.bytes);
        cursor = scan(cursor.as_ref(), step, left, &mut out.entries)?;
        looked += step;
        let added: usize = out.entries[from..].iter().map(Bounded::size).sum();
        if from > 0 && out.bytes + added > max_bytes {
            // The engine always takes the first entry it keeps: here one larger than what is
            // left of the page. It starts the next page instead.
            out.entries.truncate(from);
            out.next = before;
            return Ok(out);
        }
        out.bytes += added;
        if cursor.is_none() || looked >= max_looked || out.bytes >= max_bytes {
            out.next = cursor;
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use dkv_storage::{MemoryEngine, Version};

    use super::*;

    #[test]
    fn pages_are_bounded_by_bytes_and_a_larger_entry_comes_alone() {
        let e = MemoryEngine::new();
        // Sizes in units of 1/4 of the bound; keys are 4 bytes.
        let q = BATCH_BYTES / 4;
        let sizes = [q, q, q, 5 * q, q, 10, 10, 3 * q, 2 * q];
        for (i, &len) in sizes.iter().enumerate() {
            let entry = Entry::value(Version { ts: 1, node: 1 }, vec![1; len].into());
            e.apply(i as u64, format!("k{i:03}").as_bytes(), entry).unwrap();
        }
        for i in 0..3000u64 {
            e.apply(1000 + i, format!("s{i:03}").as_bytes(), Entry::value(Version { ts: 1, node: 1 }, "x".into()))
                .unwrap();
        }
        let (mut after, mut pages) = (None, Vec::new());
        loop {
            let p = page(&e, after, u64::MAX, 1000, &mut |h| h != 6).unwrap();
            assert!(p.bytes <= BATCH_BYTES || p.entries.len() == 1, "{} bytes in {} entries", p.bytes, p.entries.len());
            assert_eq!(p.bytes, p.entries.iter().map(Bounded::size).sum::<usize>());
            pages.push(p.entries.iter().map(|x| x.0).collect::<Vec<_>>());
            after = p.next;
            if after.is_none() {
                break;
            }
        }
        let want: Vec<u64> = (0..9).filter(|&h| h != 6).chain(1000..4000).collect();
        assert_eq!(pages.concat(), want, "every kept entry once, in order");
        assert_eq!(&pages[..4], &[vec![0, 1, 2], vec![3], vec![4, 5], vec![7]], "{:?}", &pages[..5]);
        assert!(pages.iter().all(|p| p.len() <= 1000), "at most 1000 looked at per page");
        // Keys and versions alone: the same pages.
        let (mut after, mut key_pages) = (None, Vec::new());
        loop {
            let p = key_page(&e, after, u64::MAX, 1000, &mut |h| h != 6).unwrap();
            assert_eq!(p.bytes, p.entries.iter().map(Bounded::size).sum::<usize>());
            key_pages.push(p.entries.iter().map(|kv| kv.hash).collect::<Vec<_>>());
            after = p.next;
            if after.is_none() {
                break;
            }
        }
        assert_eq!(key_pages, pages);
    }
}
