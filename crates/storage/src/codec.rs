//! On-disk layout of one record (data format 1, see [`crate::FORMAT_VERSION`]).
//!
//! ```text
//! key:   hash (u64, big-endian) ++ user key
//! value: kind (u8: 0 value, 1 tombstone) ++ version.ts (u64 BE) ++ version.node (u64 BE) ++ value
//! ```
//!
//! Big-endian hashes first make the store's byte order the ring's `(hash, key)` order, so a ring
//! range is one contiguous key range on disk.

use bytes::Bytes;

use crate::{Entry, Version};

const HEADER: usize = 17;
const VALUE: u8 = 0;
const TOMBSTONE: u8 = 1;

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
    let mut v = Vec::with_capacity(HEADER + entry.value_len());
    v.push(if entry.is_tombstone() { TOMBSTONE } else { VALUE });
    v.extend_from_slice(&entry.version.ts.to_be_bytes());
    v.extend_from_slice(&entry.version.node.to_be_bytes());
    if let Some(value) = &entry.value {
        v.extend_from_slice(value);
    }
    v
}

/// The version of an encoded entry, without copying its value.
pub fn decode_version(v: &[u8]) -> Result<Version, String> {
    let header =
        v.first_chunk::<HEADER>().ok_or_else(|| format!("record of {} bytes is shorter than its header", v.len()))?;
    let ts = u64::from_be_bytes(header[1..9].try_into().expect("8 bytes"));
    let node = u64::from_be_bytes(header[9..17].try_into().expect("8 bytes"));
    Ok(Version { ts, node })
}

/// Value bytes of an encoded entry (0 for a tombstone).
pub fn encoded_value_len(v: &[u8]) -> usize {
    v.len().saturating_sub(HEADER)
}

pub fn decode_entry(v: &[u8]) -> Result<Entry, String> {
    let (header, value) = v
        .split_first_chunk::<HEADER>()
        .ok_or_else(|| format!("record of {} bytes is shorter than its header", v.len()))?;
    let ts = u64::from_be_bytes(header[1..9].try_into().expect("8 bytes"));
    let node = u64::from_be_bytes(header[9..17].try_into().expect("8 bytes"));
    let version = Version { ts, node };
    match header[0] {
        VALUE => Ok(Entry::value(version, Bytes::copy_from_slice(value))),
        TOMBSTONE if value.is_empty() => Ok(Entry::tombstone(version)),
        kind => Err(format!("record kind {kind} with {} value bytes is not one dkv writes", value.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(store_key(1, b"zz") < store_key(2, b"a"));
        assert!(store_key(2, b"a") < store_key(2, b"b"));
        assert_eq!(decode_store_key(&store_key(5, b"k")).unwrap(), (5, &b"k"[..]));
        assert_eq!(hash_upper_bound(u64::MAX), None);
    }
}
