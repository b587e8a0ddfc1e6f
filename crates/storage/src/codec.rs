//! On-disk layout of one record (data format 2, see [`crate::FORMAT_VERSION`]).
//!
//! ```text
//! key:   hash (u64, big-endian) ++ user key
//! value: kind (u8) ++ version.ts (u64 BE) ++ version.node (u64 BE) ++ rest, by kind:
//!        0 value                         rest = value
//!        1 tombstone                     rest = nothing
//!        2 value with a deadline         rest = expires (u64 BE, ms since the epoch) ++ value
//!        3 tombstone of an expired value rest = expires (u64 BE)
//! ```
//!
//! Kinds 0 and 1 are all that data format 1 had, byte for byte: a store written before expiry
//! existed reads as it was, and an entry without a deadline is still written that way. Kinds 2
//! and 3 are new in format 2; a release that reads only format 1 refuses the directory from
//! `dkv.json` (see [`crate::DataDir`]) before it could meet one.
//!
//! Big-endian hashes first make the store's byte order the ring's `(hash, key)` order, so a ring
//! range is one contiguous key range on disk.

use bytes::Bytes;

use crate::{Entry, Version};

const HEADER: usize = 17;
const VALUE: u8 = 0;
const TOMBSTONE: u8 = 1;
const EXPIRING: u8 = 2;
const EXPIRED: u8 = 3;
/// Bytes of a deadline after the header.
const DEADLINE: usize = 8;

pub fn store_key(hash: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&hash.to_be_bytes());
    k.extend_from_slice(key);
    k
}

pub fn decode_store_key(k: &[u8]) -> Result<(u64, &[u8]), String> {
    let (hash, key) =
        k.split_first_chunk::<8>().ok_or_else(|| format!("record key of {} bytes is too short", k.len()))?;
    Ok((u64::from_be_bytes(*hash), key))
}

/// The first store key past every key of hash `end_hash`, or `None` past the last hash.
pub fn hash_upper_bound(end_hash: u64) -> Option<[u8; 8]> {
    end_hash.checked_add(1).map(u64::to_be_bytes)
}

pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let deadline = if entry.expires.is_some() { DEADLINE } else { 0 };
    let mut v = Vec::with_capacity(HEADER + deadline + entry.value_len());
    v.push(match (entry.is_tombstone(), entry.expires.is_some()) {
        (false, false) => VALUE,
        (true, false) => TOMBSTONE,
        (false, true) => EXPIRING,
        (true, true) => EXPIRED,
    });
    v.extend_from_slice(&entry.version.ts.to_be_bytes());
    v.extend_from_slice(&entry.version.node.to_be_bytes());
    if let Some(t) = entry.expires {
        v.extend_from_slice(&t.to_be_bytes());
    }
    if let Some(value) = &entry.value {
        v.extend_from_slice(value);
    }
    v
}

fn header(v: &[u8]) -> Result<(&[u8; HEADER], &[u8]), String> {
    v.split_first_chunk::<HEADER>().ok_or_else(|| format!("record of {} bytes is shorter than its header", v.len()))
}

/// The version of an encoded entry, without copying its value.
pub fn decode_version(v: &[u8]) -> Result<Version, String> {
    let (header, _) = header(v)?;
    Ok(version_of(header))
}

fn version_of(header: &[u8; HEADER]) -> Version {
    let ts = u64::from_be_bytes(header[1..9].try_into().expect("8 bytes"));
    let node = u64::from_be_bytes(header[9..17].try_into().expect("8 bytes"));
    Version { ts, node }
}

/// Value bytes of an encoded entry (0 for a tombstone).
pub fn encoded_value_len(v: &[u8]) -> usize {
    match v.first() {
        Some(&EXPIRING) => v.len().saturating_sub(HEADER + DEADLINE),
        Some(&VALUE) => v.len().saturating_sub(HEADER),
        _ => 0,
    }
}

/// The version and deadline of an encoded entry that is a value with a deadline; `None` for
/// anything else. Copies nothing: what the expiry sweep looks at.
pub fn decode_deadline(v: &[u8]) -> Result<Option<(Version, u64)>, String> {
    let (header, rest) = header(v)?;
    if header[0] != EXPIRING {
        return Ok(None);
    }
    let deadline = rest.first_chunk::<DEADLINE>().ok_or("a record with a deadline is too short for it")?;
    Ok(Some((version_of(header), u64::from_be_bytes(*deadline))))
}

/// The version of an encoded entry, whether it is a tombstone, and a value's deadline: the entry
/// without its value, as a scan of keys needs it. Copies nothing.
pub fn decode_stub(v: &[u8]) -> Result<(Version, bool, Option<u64>), String> {
    let (header, rest) = header(v)?;
    let expires = decode_deadline(v)?.map(|(_, t)| t);
    // Checked as `decode_entry` checks it: the store's opening count reads every record this
    // way, and a record of no kind dkv writes must fail it, not count as a tombstone.
    match (header[0], rest.len()) {
        (VALUE | EXPIRING, _) | (TOMBSTONE, 0) | (EXPIRED, DEADLINE) => {}
        (kind, n) => return Err(format!("record kind {kind} with {n} bytes after its header is not one dkv writes")),
    }
    Ok((version_of(header), !matches!(header[0], VALUE | EXPIRING), expires))
}

pub fn decode_entry(v: &[u8]) -> Result<Entry, String> {
    let (header, rest) = header(v)?;
    let version = version_of(header);
    let deadline = |rest: &[u8]| -> Result<(u64, usize), String> {
        let d = rest.first_chunk::<DEADLINE>().ok_or("a record with a deadline is too short for it")?;
        Ok((u64::from_be_bytes(*d), DEADLINE))
    };
    match header[0] {
        VALUE => Ok(Entry::value(version, Bytes::copy_from_slice(rest))),
        TOMBSTONE if rest.is_empty() => Ok(Entry::tombstone(version)),
        EXPIRING => {
            let (t, skip) = deadline(rest)?;
            Ok(Entry::expiring(version, Bytes::copy_from_slice(&rest[skip..]), Some(t)))
        }
        EXPIRED if rest.len() == DEADLINE => {
            let (t, _) = deadline(rest)?;
            Ok(Entry { version, value: None, expires: Some(t) })
        }
        kind => Err(format!("record kind {kind} with {} bytes after its header is not one dkv writes", rest.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of no kind dkv writes fails the stub's decoding as the whole entry's: the store's
    /// opening count reads records so, and counted them as tombstones (the review, 2026-12-08).
    #[test]
    fn a_stub_of_a_record_dkv_does_not_write_is_refused() {
        let tombstone = encode_entry(&Entry::tombstone(Version { ts: 5, node: 1 }));
        assert!(decode_stub(&tombstone).expect("a tombstone").1);
        let mut bad_kind = tombstone.clone();
        bad_kind[0] = 9;
        assert!(decode_stub(&bad_kind).is_err() && decode_entry(&bad_kind).is_err());
        let mut long_tombstone = tombstone;
        long_tombstone.push(0);
        assert!(decode_stub(&long_tombstone).is_err() && decode_entry(&long_tombstone).is_err());
    }

    #[test]
    fn records_round_trip_and_order_by_hash_then_key() {
        let e = Entry::value(Version { ts: 9, node: 3 }, Bytes::from_static(b"val"));
        assert_eq!(decode_entry(&encode_entry(&e)).unwrap(), e);
        let t = Entry::tombstone(Version { ts: 1, node: 2 });
        assert_eq!(decode_entry(&encode_entry(&t)).unwrap(), t);
        assert_eq!(decode_version(&encode_entry(&e)).unwrap(), Version { ts: 9, node: 3 });
        assert_eq!((encoded_value_len(&encode_entry(&e)), encoded_value_len(&encode_entry(&t))), (3, 0));
        assert!(decode_entry(&[0; 5]).is_err());
        assert!(decode_entry(&[7; 17]).is_err());
        assert!(decode_entry(&[EXPIRING; 20]).is_err(), "a deadline cut short");
        assert!(store_key(1, b"zz") < store_key(2, b"a"));
        assert!(store_key(2, b"a") < store_key(2, b"b"));
        assert_eq!(decode_store_key(&store_key(5, b"k")).unwrap(), (5, &b"k"[..]));
        assert_eq!(hash_upper_bound(u64::MAX), None);
    }

    #[test]
    fn deadlines_round_trip_and_records_of_format_1_read_as_they_were() {
        let v = Version { ts: 0x0102_0304, node: 5 };
        let e = Entry::expiring(v, Bytes::from_static(b"val"), Some(1_700_000_000_123));
        let bytes = encode_entry(&e);
        assert_eq!(bytes[0], EXPIRING);
        assert_eq!(decode_entry(&bytes).unwrap(), e);
        assert_eq!(encoded_value_len(&bytes), 3);
        assert_eq!(decode_deadline(&bytes).unwrap(), Some((v, 1_700_000_000_123)));
        let t = e.expired();
        let bytes = encode_entry(&t);
        assert_eq!((bytes[0], bytes.len(), encoded_value_len(&bytes)), (EXPIRED, HEADER + DEADLINE, 0));
        assert_eq!(decode_entry(&bytes).unwrap(), t);
        assert_eq!(decode_deadline(&bytes).unwrap(), None, "already a tombstone");

        // Format 1, written by the release before expiry: kind, ts, node, value.
        let mut old = vec![0u8];
        old.extend_from_slice(&9u64.to_be_bytes());
        old.extend_from_slice(&3u64.to_be_bytes());
        old.extend_from_slice(b"old value");
        let read = decode_entry(&old).unwrap();
        assert_eq!(read, Entry::value(Version { ts: 9, node: 3 }, Bytes::from_static(b"old value")));
        assert_eq!(read.expires, None);
        assert_eq!(encode_entry(&read), old, "an entry without a deadline is written as format 1 wrote it");
        let mut old_tombstone = vec![1u8];
        old_tombstone.extend_from_slice(&[0; 16]);
        assert_eq!(decode_entry(&old_tombstone).unwrap(), Entry::tombstone(Version::default()));
        assert_eq!(decode_deadline(&old).unwrap(), None);
    }
}
