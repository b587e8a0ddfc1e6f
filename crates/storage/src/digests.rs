//! Digests of the store kept up to date on every write: what anti-entropy compares.
//!
//! The hash space is cut into [`SEGMENTS`] segments (the top bits of the key hash). A segment's
//! digest is the wrapping sum of [`entry_digest`] over the entries in it, so storing, replacing
//! or removing an entry changes it by one addition and one subtraction, under the lock that
//! already orders the change. Two replicas holding the same entries of a segment hold the same
//! digest, whatever order the writes came in.
//!
//! Why kept, not computed: a digest computed by a scan is a scan of the whole store, and two
//! nodes scan at different moments — a million keys apart. Under writes, a key overwritten between
//! the two scans makes its bucket differ, and at 50 000 writes/s that was every bucket of every
//! round. Kept digests are read by both nodes within a round trip of each other: only the writes
//! of that moment differ.

use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::Version;

/// Bits of the hash that name a segment.
pub const SEGMENT_BITS: u32 = 16;
/// Segments of the hash space.
pub const SEGMENTS: usize = 1 << SEGMENT_BITS;

/// The segment holding `hash`.
pub fn segment_of(hash: u64) -> usize {
    (hash >> (64 - SEGMENT_BITS)) as usize
}

/// The first and last hash of `segment`.
pub fn segment_range(segment: usize) -> (u64, u64) {
    let lo = (segment as u64) << (64 - SEGMENT_BITS);
    (lo, lo | (u64::MAX >> SEGMENT_BITS))
}

/// One entry's share of a digest: its hash and version (not its value: two entries of the same
/// version are the same write).
pub fn entry_digest(hash: u64, version: Version) -> u64 {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&version.ts.to_le_bytes());
    v[8..].copy_from_slice(&version.node.to_le_bytes());
    xxh3_64_with_seed(&v, hash)
}

/// The digests of every segment, changed with every entry stored or removed.
pub struct Digests {
    segments: Box<[AtomicU64]>,
}

impl Default for Digests {
    fn default() -> Self {
        Digests { segments: (0..SEGMENTS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl Digests {
    /// An entry of version `version` was stored at `hash`.
    pub fn add(&self, hash: u64, version: Version) {
        self.segments[segment_of(hash)].fetch_add(entry_digest(hash, version), Ordering::Relaxed);
    }

    /// The entry of version `version` at `hash` was replaced or removed.
    pub fn remove(&self, hash: u64, version: Version) {
        self.segments[segment_of(hash)].fetch_sub(entry_digest(hash, version), Ordering::Relaxed);
    }

    /// The digest of `segment` now.
    pub fn segment(&self, segment: usize) -> u64 {
        self.segments[segment].load(Ordering::Relaxed)
    }

    /// The digest of the whole store: the wrapping sum of every segment's. Equal for two stores
    /// holding the same entries; read while writes land, it mixes before and after.
    pub fn total(&self) -> u64 {
        self.segments.iter().fold(0u64, |sum, s| sum.wrapping_add(s.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_tile_the_hash_space_in_order() {
        assert_eq!(segment_range(0).0, 0);
        assert_eq!(segment_range(SEGMENTS - 1).1, u64::MAX);
        for s in [0, 1, 77, SEGMENTS - 1] {
            let (lo, hi) = segment_range(s);
            assert_eq!((segment_of(lo), segment_of(hi)), (s, s));
            if s + 1 < SEGMENTS {
                assert_eq!(segment_range(s + 1).0, hi + 1);
            }
        }
    }

    #[test]
    fn a_digest_is_the_same_whatever_order_entries_came_in() {
        let v = |ts| Version { ts, node: 1 };
        let (a, b) = (Digests::default(), Digests::default());
        a.add(5, v(1));
        a.add(6, v(1));
        a.remove(5, v(1));
        a.add(5, v(2));
        b.add(6, v(1));
        b.add(5, v(2));
        assert_eq!(a.segment(0), b.segment(0));
        assert_ne!(a.segment(0), 0);
        b.remove(6, v(1));
        assert_ne!(a.segment(0), b.segment(0));
    }
}
