//! One stored key of the in-memory engine, in a single allocation: the header (version, key
//! length, flags), the key, the deadline if the key has one, and the value. Pure: bytes in and
//! out, no locks; `mod.rs` keeps records in its shards' indexes.

use bytes::Bytes;

use crate::{Entry, Version};

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
pub(super) struct Record(Box<[u8]>);

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
    pub(super) fn new(key: &[u8], entry: &Entry) -> Record {
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
    pub(super) fn overwrite(&mut self, key: &[u8], entry: &Entry) {
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

    pub(super) fn version(&self) -> Version {
        Version { ts: u64_at(&self.0, 0), node: u64_at(&self.0, 8) }
    }

    fn key_len(&self) -> usize {
        usize::from(u16::from_le_bytes(self.0[KEY_LEN_AT..FLAGS_AT].try_into().expect("2 bytes")))
    }

    fn flags(&self) -> u8 {
        self.0[FLAGS_AT]
    }

    pub(super) fn key(&self) -> &[u8] {
        &self.0[HEADER..HEADER + self.key_len()]
    }

    pub(super) fn is_tombstone(&self) -> bool {
        self.flags() & TOMBSTONE != 0
    }

    pub(super) fn deadline(&self) -> Option<u64> {
        (self.flags() & DEADLINE != 0).then(|| u64_at(&self.0, HEADER + self.key_len()))
    }

    pub(super) fn value(&self) -> &[u8] {
        let skip = if self.flags() & DEADLINE != 0 { DEADLINE_LEN } else { 0 };
        &self.0[HEADER + self.key_len() + skip..]
    }

    /// Key and value bytes, what a scan's byte bound counts.
    pub(super) fn size(&self) -> usize {
        self.key_len() + self.value().len()
    }

    pub(super) fn is_expired_at(&self, now_ms: u64) -> bool {
        !self.is_tombstone() && self.deadline().is_some_and(|t| now_ms > t)
    }

    /// The entry without its value: what [`Entry::dead_since`] needs.
    pub(super) fn head(&self) -> Entry {
        Entry { version: self.version(), value: (!self.is_tombstone()).then(Bytes::new), expires: self.deadline() }
    }

    /// The entry, with its value copied out.
    pub(super) fn entry(&self) -> Entry {
        let value = (!self.is_tombstone()).then(|| Bytes::copy_from_slice(self.value()));
        Entry { version: self.version(), value, expires: self.deadline() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_pointer_wide() {
        // The index holds a record per key: keep it from growing unnoticed.
        assert_eq!(std::mem::size_of::<Record>(), 16);
    }
}
