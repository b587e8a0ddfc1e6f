//! The hash index of one memory-engine shard: placement hash → slot number, in hash order.
//!
//! Placement hashes are uniform, so the next bits of a hash say where it falls in the sorted
//! order. The index is a sorted array cut into buckets by those bits: bucket `b` holds, sorted,
//! the hashes whose bits below the shard's prefix start with `b`. A lookup goes straight to its
//! bucket, and within it straight to where the bits below the bucket's put the hash (it steps
//! from there to the hash, usually within one cache line): two cache misses (the bucket's handle,
//! then its entries), where the `BTreeMap` this replaces missed once per level, four or five
//! levels deep at a million keys. A binary search of the bucket touched two or three of its
//! lines; starting where the hash belongs made an overwrite at a million keys a fifth cheaper. Walking the buckets in turn visits every hash in
//! order, which range scans, movement and anti-entropy need.
//!
//! When the buckets hold [`MAX_AVERAGE`] entries on average their number doubles: each bucket
//! splits in two at the next bit, in one pass that keeps the order. That pass holds the shard's
//! write lock for about a microsecond per hundred entries (a millisecond at ten million keys in 64
//! shards); the number of buckets never shrinks. A bucket grows four entries at a time, so
//! it wastes about two entries' room, not the quarter to half that doubling a `Vec` wastes.
//!
//! Memory: 12 bytes an entry (the hash and a 4-byte slot, packed), plus its share of the bucket
//! handles (24 bytes over 8 to 16 entries) and of the spare room: about 15 bytes, against about
//! 21 for the `BTreeMap` (nodes of 11 entries about two thirds full, plus the inner nodes).

use std::ops::Bound;

/// Average entries per bucket at which the buckets double.
const MAX_AVERAGE: usize = 16;
/// Buckets of a new, empty index (as a power of two).
const FIRST_BITS: u32 = 4;
/// Room a full bucket grows by.
const GROW_BY: usize = 4;

/// One entry, packed to 12 bytes: the hash and the number of its slot.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
struct Pair {
    hash: u64,
    slot: u32,
}

impl Pair {
    fn hash(&self) -> u64 {
        self.hash
    }
}

pub(crate) struct Index {
    /// Bits of the hash above the bucket bits, the same for every hash in this index.
    prefix: u32,
    /// Those bits' value: the shard's number.
    shard: u64,
    /// log2 of the number of buckets.
    bits: u32,
    buckets: Vec<Vec<Pair>>,
    len: usize,
}

impl Index {
    /// An empty index for hashes whose top `prefix` bits are `shard`.
    pub fn new(prefix: u32, shard: u64) -> Index {
        assert!(prefix > 0 && prefix + FIRST_BITS < 64, "a prefix of {prefix} bits leaves no bits for buckets");
        let buckets = (0..1 << FIRST_BITS).map(|_| Vec::new()).collect();
        Index { prefix, shard, bits: FIRST_BITS, buckets, len: 0 }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The bucket `hash` falls in, when it shares the index's prefix.
    fn bucket(&self, hash: u64) -> usize {
        ((hash << self.prefix) >> (64 - self.bits)) as usize
    }

    /// The first bucket that may hold hashes at or above `hash`, whatever its prefix: for a hash
    /// below this index's range, the first; above it, one past the last.
    fn bucket_from(&self, hash: u64) -> usize {
        match (hash >> (64 - self.prefix)).cmp(&self.shard) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Equal => self.bucket(hash),
            std::cmp::Ordering::Greater => self.buckets.len(),
        }
    }

    pub fn get(&self, hash: u64) -> Option<u32> {
        let b = &self.buckets[self.bucket(hash)];
        Self::search(b, hash, self.prefix + self.bits).ok().map(|i| b[i].slot)
    }

    /// Where `hash` is in bucket `b`, or where it would go, as `binary_search` says it. The
    /// hashes are uniform, so the bits below the bucket's say where in the bucket a hash falls:
    /// the search starts there and steps to it, usually within the cache line it started in,
    /// where a binary search touches two or three of the bucket's lines.
    /// `used` is the number of the hash's top bits that chose the bucket (prefix and bucket bits).
    fn search(b: &[Pair], hash: u64, used: u32) -> Result<usize, usize> {
        let below = hash.checked_shl(used).unwrap_or(0);
        let mut i = ((u128::from(below) * b.len() as u128) >> 64) as usize;
        if b.get(i).is_some_and(|p| p.hash() < hash) {
            while b.get(i).is_some_and(|p| p.hash() < hash) {
                i += 1;
            }
        } else {
            while i > 0 && b[i - 1].hash() >= hash {
                i -= 1;
            }
        }
        if b.get(i).is_some_and(|p| p.hash() == hash) {
            Ok(i)
        } else {
            Err(i)
        }
    }

    /// Add `hash` (which must be absent) pointing at `slot`.
    pub fn insert(&mut self, hash: u64, slot: u32) {
        let (i, used) = (self.bucket(hash), self.prefix + self.bits);
        let b = &mut self.buckets[i];
        let at = Self::search(b, hash, used).unwrap_or_else(|at| at);
        debug_assert!(b.get(at).is_none_or(|p| p.hash() != hash), "hash {hash:#x} is in the index already");
        if b.len() == b.capacity() {
            b.reserve_exact(GROW_BY);
        }
        b.insert(at, Pair { hash, slot });
        self.len += 1;
        if self.len > self.buckets.len() * MAX_AVERAGE && self.prefix + self.bits < 64 {
            self.split();
        }
    }

    /// Remove `hash`; the slot it pointed at.
    pub fn remove(&mut self, hash: u64) -> Option<u32> {
        let (i, used) = (self.bucket(hash), self.prefix + self.bits);
        let b = &mut self.buckets[i];
        let at = Self::search(b, hash, used).ok()?;
        self.len -= 1;
        let slot = b.remove(at).slot;
        if b.is_empty() {
            *b = Vec::new(); // no allocation for an empty bucket
        }
        Some(slot)
    }

    /// `(hash, slot)` for the hashes within `(from, to)`, in order. The bounds may lie outside
    /// this index's shard.
    pub fn range(&self, (from, to): (Bound<u64>, Bound<u64>)) -> impl Iterator<Item = (u64, u32)> + '_ {
        let first = match from {
            Bound::Unbounded => 0,
            Bound::Included(h) | Bound::Excluded(h) => self.bucket_from(h),
        };
        let above = move |h: u64| match from {
            Bound::Unbounded => true,
            Bound::Included(f) => h >= f,
            Bound::Excluded(f) => h > f,
        };
        let below = move |h: u64| match to {
            Bound::Unbounded => true,
            Bound::Included(t) => h <= t,
            Bound::Excluded(t) => h < t,
        };
        self.buckets[first..]
            .iter()
            .flat_map(|b| b.iter())
            .skip_while(move |p| !above(p.hash()))
            .take_while(move |p| below(p.hash()))
            .map(|p| (p.hash(), p.slot))
    }

    /// Keep only the entries for which `keep(hash, slot)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, u32) -> bool) {
        for b in &mut self.buckets {
            b.retain(|p| keep(p.hash(), p.slot));
            if b.is_empty() {
                *b = Vec::new();
            } else if b.capacity() - b.len() > GROW_BY {
                b.shrink_to(b.len() + GROW_BY);
            }
        }
        self.len = self.buckets.iter().map(Vec::len).sum();
    }

    /// Twice the buckets: each splits at the next bit of the hash, keeping the order.
    fn split(&mut self) {
        self.bits += 1;
        let old = std::mem::take(&mut self.buckets);
        let mut buckets = Vec::with_capacity(old.len() * 2);
        for (i, b) in old.into_iter().enumerate() {
            let low = 2 * i;
            let at = b.partition_point(|p| self.bucket(p.hash()) == low);
            let half = |part: &[Pair]| {
                let mut v = Vec::with_capacity(if part.is_empty() { 0 } else { part.len() + GROW_BY / 2 });
                v.extend_from_slice(part);
                v
            };
            buckets.push(half(&b[..at]));
            buckets.push(half(&b[at..]));
        }
        self.buckets = buckets;
    }

    /// Heap bytes the index holds (for tests and estimates).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Vec<Pair>>()
            + self.buckets.iter().map(|b| b.capacity() * std::mem::size_of::<Pair>()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const PREFIX: u32 = 6;

    /// splitmix64: uniform hashes, as placement hashes are.
    fn hashes(seed: u64, n: usize, shard: u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let z = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                let z = z ^ (z >> 31);
                (z >> PREFIX) | (shard << (64 - PREFIX))
            })
            .collect()
    }

    #[test]
    fn behaves_as_an_ordered_map_through_growth_and_removal() {
        let shard = 5;
        let mut index = Index::new(PREFIX, shard);
        let mut model = BTreeMap::new();
        let all = hashes(1, 20_000, shard);
        for (i, &h) in all.iter().enumerate() {
            if model.insert(h, i as u32).is_none() {
                index.insert(h, i as u32);
            }
        }
        assert!(index.bits > FIRST_BITS, "it grew");
        for &h in all.iter().step_by(3) {
            assert_eq!(index.remove(h), model.remove(&h));
        }
        assert_eq!(index.remove(all[0]), None, "removed already");
        assert_eq!(index.len(), model.len());
        for &h in &all {
            assert_eq!(index.get(h), model.get(&h).copied());
        }
        let everything: Vec<(u64, u32)> = index.range((Bound::Unbounded, Bound::Unbounded)).collect();
        assert_eq!(everything, model.iter().map(|(&h, &s)| (h, s)).collect::<Vec<_>>());
        // Ranges with bounds inside, below and above the shard.
        let (lo, hi) = (all[10], all[20]);
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        let below_shard = (shard - 1) << (64 - PREFIX);
        let above_shard = (shard + 1) << (64 - PREFIX);
        for bounds in [
            (Bound::Included(lo), Bound::Included(hi)),
            (Bound::Excluded(lo), Bound::Excluded(hi)),
            (Bound::Included(below_shard), Bound::Included(hi)),
            (Bound::Included(lo), Bound::Included(above_shard)),
            (Bound::Included(above_shard), Bound::Unbounded),
            (Bound::Unbounded, Bound::Excluded(below_shard)),
        ] {
            let got: Vec<(u64, u32)> = index.range(bounds).collect();
            let want: Vec<(u64, u32)> = model.range(bounds).map(|(&h, &s)| (h, s)).collect();
            assert_eq!(got, want, "{bounds:?}");
        }
        index.retain(|h, _| h % 2 == 0);
        model.retain(|h, _| h % 2 == 0);
        assert_eq!(index.len(), model.len());
        let everything: Vec<(u64, u32)> = index.range((Bound::Unbounded, Bound::Unbounded)).collect();
        assert_eq!(everything, model.iter().map(|(&h, &s)| (h, s)).collect::<Vec<_>>());
    }

    /// The search starts where a uniform hash would be; hashes far from uniform (all crowded into
    /// one end of their buckets) are still found, and absent ones still go in order.
    #[test]
    fn hashes_crowded_in_their_buckets_are_found_exactly() {
        let shard = 2;
        let mut index = Index::new(PREFIX, shard);
        let base = shard << (64 - PREFIX);
        let crowded: Vec<u64> =
            (0..3_000u64).map(|i| base | (i * 7)).chain((0..50).map(|i| base | ((u64::MAX >> 8) - i))).collect();
        for (i, &h) in crowded.iter().enumerate() {
            index.insert(h, i as u32);
        }
        for (i, &h) in crowded.iter().enumerate() {
            assert_eq!(index.get(h), Some(i as u32), "{h:#x}");
        }
        for absent in (0..3_000u64).map(|i| base | (i * 7 + 3)) {
            assert_eq!(index.get(absent), None, "{absent:#x} is absent");
        }
        let mut sorted = crowded.clone();
        sorted.sort_unstable();
        let walked: Vec<u64> = index.range((Bound::Unbounded, Bound::Unbounded)).map(|(h, _)| h).collect();
        assert_eq!(walked, sorted);
        let removed = crowded.iter().step_by(2).filter(|&&h| index.remove(h).is_some()).count();
        assert_eq!((removed, index.len()), (crowded.len().div_ceil(2), crowded.len() / 2));
    }

    #[test]
    fn an_entry_costs_less_than_twenty_bytes() {
        let mut index = Index::new(PREFIX, 3);
        for (i, h) in hashes(2, 100_000, 3).into_iter().enumerate() {
            index.insert(h, i as u32);
        }
        let per_entry = index.heap_bytes() as f64 / index.len() as f64;
        assert!(per_entry < 20.0, "{per_entry:.1} bytes an entry");
    }
}
