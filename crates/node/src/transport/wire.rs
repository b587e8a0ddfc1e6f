//! Internal wire format between nodes: postcard bodies behind a one-byte format version.
//!
//! Every message starts with [`WIRE_VERSION`] so a node never misreads a peer of another release;
//! a mismatch is refused with a message that says so. Keys travel as raw bytes, entries with their
//! versions, so every internal transfer is idempotent (see `dkv_storage::Entry::supersedes`).
//! The transport (HTTP/1.1 with pooled keep-alive connections today) lives in `peer.rs` only.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use dkv_storage::Entry;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const WIRE_VERSION: u8 = 1;

/// Header carrying how many times a public request was already forwarded.
pub const HOP_HEADER: &str = "x-dkv-hop";
/// Header carrying the sender's membership epoch on forwarded requests.
pub const EPOCH_HEADER: &str = "x-dkv-epoch";

/// HTTP status a node answers when the sender's membership epoch is older than its own: the
/// sender must refresh its view and re-plan (the targets may have changed).
pub const STATUS_STALE_EPOCH: u16 = 409;
/// HTTP status a leaving node answers to a hand-off: it cannot take keys it is about to give away.
pub const STATUS_LEAVING: u16 = 423;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyEntry {
    pub key: Bytes,
    pub entry: Entry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyKind {
    /// A coordinated client write to a replica.
    Write,
    /// Keys handed over by a node that no longer owns them (rebalance or leave).
    Handoff,
    /// A write this replica missed, delivered later by the coordinator that kept it.
    Hint,
    /// A newer version found by a read, sent to a replica that answered with an older one.
    Repair,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub epoch: u64,
    pub kind: ApplyKind,
    pub entries: Vec<KeyEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadRequest {
    pub epoch: u64,
    pub key: Bytes,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadResponse {
    pub entry: Option<Entry>,
}

/// Ask a data holder for every entry whose future replicas include `for_node` (a join).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RangeRequest {
    pub epoch: u64,
    pub for_node: u64,
}

/// Anti-entropy, step 1: the sender's digest of every bucket of the keys both nodes replicate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncSummary {
    pub epoch: u64,
    pub from: u64,
    pub digests: Vec<u64>,
}

/// The buckets whose digests differ.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncDiff {
    pub buckets: Vec<u32>,
}

/// Anti-entropy, step 2: the sender's entries of one differing bucket; the answer carries the
/// receiver's entries of that bucket that the sender lacks or has older.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncBucket {
    pub epoch: u64,
    pub from: u64,
    pub bucket: u32,
    pub entries: Vec<KeyEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncBucketReply {
    pub entries: Vec<KeyEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub epoch: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty internal message")]
    Empty,
    #[error("internal message format {0}, this node speaks {WIRE_VERSION}: run one dkv release across the cluster")]
    Version(u8),
    #[error("undecodable internal message: {0}")]
    Decode(#[from] postcard::Error),
}

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let out = vec![WIRE_VERSION];
    postcard::to_extend(msg, out).expect("encoding into a Vec cannot fail")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    match bytes.split_first() {
        None => Err(WireError::Empty),
        Some((&WIRE_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&v, _)) => Err(WireError::Version(v)),
    }
}

/// One frame of a range stream: a little-endian `u32` length, then an encoded `Vec<KeyEntry>`.
pub fn encode_frame(batch: &[KeyEntry]) -> Bytes {
    let body = encode(&batch);
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32_le(body.len() as u32);
    out.extend_from_slice(&body);
    out.freeze()
}

/// Largest frame a receiver accepts (bounds memory if a peer misbehaves).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Split complete frames off the front of `buf`; leaves a partial frame in place.
pub fn next_frame(buf: &mut BytesMut) -> Result<Option<Vec<KeyEntry>>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(WireError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    let frame = buf.split_to(len);
    decode(&frame).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_storage::Version;

    #[test]
    fn messages_round_trip_and_versions_are_checked() {
        let req = ReadRequest { epoch: 3, key: Bytes::from_static(b"k") };
        let bytes = encode(&req);
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(decode::<ReadRequest>(&bytes).unwrap().epoch, 3);
        let mut other = bytes.clone();
        other[0] = 99;
        assert!(matches!(decode::<ReadRequest>(&other), Err(WireError::Version(99))));
        assert!(matches!(decode::<ReadRequest>(&[]), Err(WireError::Empty)));
    }

    #[test]
    fn frames_split_across_reads() {
        let e = KeyEntry { key: Bytes::from_static(b"a"), entry: Entry::tombstone(Version { ts: 1, node: 2 }) };
        let f = encode_frame(&[e.clone(), e]);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&f[..3]);
        assert!(next_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&f[3..]);
        assert_eq!(next_frame(&mut buf).unwrap().unwrap().len(), 2);
        assert!(buf.is_empty());
    }
}

/// Most key and value bytes sent in one internal batch; a single larger entry goes alone.
pub const BATCH_BYTES: usize = 4 << 20;

/// Split `entries` into batches of at most [`BATCH_BYTES`] of keys and values each.
pub fn split_batches(entries: Vec<KeyEntry>) -> Vec<Vec<KeyEntry>> {
    let mut out = Vec::new();
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for kv in entries {
        let size = kv.key.len() + kv.entry.value_len();
        if !batch.is_empty() && bytes + size > BATCH_BYTES {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.push(kv);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use bytes::Bytes;
    use dkv_storage::{Entry, Version};

    #[test]
    fn batches_stay_under_the_byte_limit_and_big_entries_go_alone() {
        let kv = |n: usize| KeyEntry {
            key: Bytes::from_static(b"k"),
            entry: Entry::value(Version::default(), Bytes::from(vec![0; n])),
        };
        let sizes = [BATCH_BYTES / 2, BATCH_BYTES / 2, 10, BATCH_BYTES * 2, 10];
        let batches = split_batches(sizes.iter().map(|&n| kv(n)).collect());
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![1, 2, 1, 1]);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 5, "nothing lost");
    }
}
