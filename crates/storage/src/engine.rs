//! The storage engine interface.

use bytes::Bytes;

use crate::{Entry, Version};

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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Keys with a live value (tombstones not counted).
    pub keys: u64,
    /// Bytes of live keys plus values.
    pub bytes: u64,
    pub tombstones: u64,
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
    fn apply(&self, hash: u64, key: &[u8], entry: Entry) -> StorageResult<Applied>;

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
    fn scan_where(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        keep: &mut dyn FnMut(u64) -> bool,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> StorageResult<Option<Cursor>> {
        let from = out.len();
        let cursor = self.scan(start, end_hash, limit, out)?;
        let mut i = from;
        while i < out.len() {
            if keep(out[i].0) {
                i += 1;
            } else {
                out.swap_remove(i);
            }
        }
        out[from..].sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(cursor)
    }

    /// Drop tombstones whose version timestamp is below `before_ts`; returns how many.
    fn purge_tombstones(&self, before_ts: u64) -> StorageResult<u64>;

    fn stats(&self) -> EngineStats;

    /// Whether writes survive a crash of the process (and, after [`Engine::sync`], of the machine).
    fn is_durable(&self) -> bool {
        false
    }

    /// Make every write applied so far durable on disk (fsync). Blocking; a no-op in memory.
    fn sync(&self) -> StorageResult<()> {
        Ok(())
    }
}
