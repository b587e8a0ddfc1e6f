//! The hash index of one memory-engine shard: placement hashes in order, each with its record.
//!
//! Placement hashes are uniform, so the next bits of a hash say where it falls in the sorted
//! order. The index is a sorted array cut into buckets by those bits: bucket `b` holds, sorted,
//! the hashes whose bits below the shard's prefix start with `b`. A lookup goes straight to its
//! bucket, and within it straight to where the bits below the bucket's put the hash; it steps
//! from there to the hash, usually within the cache line it started in. That is two cache
//! misses (the bucket's handle, then its entries), where the `BTreeMap` this replaces missed once
//! per level, four or five levels deep at a million keys. Walking the buckets in turn visits
//! every hash in order, which range scans, movement and anti-entropy need.
//!
//! Since a lookup does not search the bucket, buckets can be large: 32 to 64 entries. The fewer
//! buckets, the fewer handles, and the more of them stay in the cache. Measured at a million keys
//! (`examples/memory_engine.rs`): a binary search of the bucket touched two or three of its
//! lines, and starting where the hash belongs made an overwrite a fifth cheaper; buckets of 32 to
//! 64 entries rather than 8 to 16 then made a read about a tenth cheaper and filling the store
//! twice as fast (fewer splits).
//!
//! When the buckets hold [`MAX_AVERAGE`] entries on average their number doubles: each bucket
//! splits in two at the next bit, in one pass that keeps the order. That pass holds the shard's
//! write lock for about a microsecond per hundred entries (a millisecond at ten million keys in 64
//! shards); the number of buckets never shrinks. A bucket grows four entries at a time, so
//! it wastes about two entries' room, not the quarter to half that doubling a `Vec` wastes.
//!
//! Memory: an entry is the hash and what it holds (for the memory engine, its record's pointer and
//! length: 24 bytes), plus its share of the bucket handles (24 bytes over 32 to 64 entries) and of
//! the spare room, about 5% more.

use std::ops::Bound;

/// Average entries per bucket at which the buckets double.
const MAX_AVERAGE: usize = 64;
/// Buckets of a new, empty index (as a power of two).
const FIRST_BITS: u32 = 4;
/// Room a full bucket grows by.
const GROW_BY: usize = 4;

/// Ask the CPU to start loading the cache line of `at`; no effect where there is no such hint.
fn prefetch<T>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it cannot fault and changes nothing the program can
    // observe (and `at` is a valid reference anyway).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((at as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// One entry: a hash and what is stored under it.
struct Pair<T> {
    hash: u64,
    value: T,
}

/// Hashes in order, each with a `T`. A hash may appear more than once (keys whose hashes
/// collide); its entries sit together, in the order [`Index::insert`] was told.
pub(crate) struct Index<T> {
    /// Bits of the hash above the bucket bits, the same for every hash in this index.
    prefix: u32,
    /// Those bits' value: the shard's number.
    shard: u64,
    /// log2 of the number of buckets.
    bits: u32,
    buckets: Vec<Vec<Pair<T>>>,
    len: usize,
}

impl<T> Index<T> {
    /// An empty index for hashes whose top `prefix` bits are `shard`.
    pub fn new(prefix: u32, shard: u64) -> Index<T> {
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

    /// Where the entries of `hash` begin in bucket `b` (or where they would go). The hashes are
    /// uniform, so the bits below the bucket's say where in the bucket a hash falls: the search
    /// starts there and steps to it, usually within the cache line it started in, where a binary
    /// search touches two or three of the bucket's lines. `used` is the number of the hash's top
    /// bits that chose the bucket (prefix and bucket bits).
    fn first_of(b: &[Pair<T>], hash: u64, used: u32) -> usize {
        let below = hash.checked_shl(used).unwrap_or(0);
        let mut i = ((u128::from(below) * b.len() as u128) >> 64) as usize;
        // Forward past smaller hashes, or else back over hashes not smaller.
        while b.get(i).is_some_and(|p| p.hash < hash) {
            i += 1;
        }
        while i > 0 && b[i - 1].hash >= hash {
            i -= 1;
        }
        i
    }

    /// The entries of `hash`: the bucket, and the range of them in it.
    fn entries_of(&self, hash: u64) -> (usize, std::ops::Range<usize>) {
        let i = self.bucket(hash);
        let b = &self.buckets[i];
        let first = Self::first_of(b, hash, self.prefix + self.bits);
        let end = first + b[first..].iter().take_while(|p| p.hash == hash).count();
        (i, first..end)
    }

    /// Start bringing where the entries of `hash` are into the cache, for a lookup soon. Callers
    /// with many hashes at hand (a batch) prefetch a few ahead of the one they look up, so the
    /// cache misses of their lookups overlap instead of following one another.
    pub fn prefetch(&self, hash: u64) {
        let b = &self.buckets[self.bucket(hash)];
        if !b.is_empty() {
            // Where `first_of` starts looking (below the bucket's length, since `below` < 2^64).
            let below = hash.checked_shl(self.prefix + self.bits).unwrap_or(0);
            prefetch(&b[((u128::from(below) * b.len() as u128) >> 64) as usize]);
        }
    }

    /// The entry of `hash` for which `is` holds.
    pub fn find(&self, hash: u64, mut is: impl FnMut(&T) -> bool) -> Option<&T> {
        let (b, at) = self.entries_of(hash);
        self.buckets[b][at].iter().map(|p| &p.value).find(|v| is(v))
    }

    /// [`Index::find`], to change it in place.
    pub fn find_mut(&mut self, hash: u64, mut is: impl FnMut(&T) -> bool) -> Option<&mut T> {
        let (b, at) = self.entries_of(hash);
        self.buckets[b][at].iter_mut().map(|p| &mut p.value).find(|v| is(v))
    }

    /// Add `value` under `hash`, after the entries of the same hash for which `goes_after`
    /// holds (for keys that share a hash, kept in key order).
    pub fn insert(&mut self, hash: u64, value: T, mut goes_after: impl FnMut(&T) -> bool) {
        let (i, at) = self.entries_of(hash);
        let b = &mut self.buckets[i];
        let at = at.start + b[at].iter().take_while(|p| goes_after(&p.value)).count();
        if b.len() == b.capacity() {
            b.reserve_exact(GROW_BY);
        }
        b.insert(at, Pair { hash, value });
        self.len += 1;
        if self.len > self.buckets.len() * MAX_AVERAGE && self.prefix + self.bits < 64 {
            self.split();
        }
    }

    /// Remove the entry of `hash` for which `is` holds, and return it.
    pub fn remove(&mut self, hash: u64, mut is: impl FnMut(&T) -> bool) -> Option<T> {
        let (i, at) = self.entries_of(hash);
        let b = &mut self.buckets[i];
        let at = at.start + b[at].iter().position(|p| is(&p.value))?;
        self.len -= 1;
        let gone = b.remove(at).value;
        if b.is_empty() {
            *b = Vec::new(); // no allocation for an empty bucket
        }
        Some(gone)
    }

    /// `(hash, value)` for the hashes within `(from, to)`, in order. The bounds may lie outside
    /// this index's shard.
    pub fn range(&self, (from, to): (Bound<u64>, Bound<u64>)) -> impl Iterator<Item = (u64, &T)> + '_ {
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
            .skip_while(move |p| !above(p.hash))
            .take_while(move |p| below(p.hash))
            .map(|p| (p.hash, &p.value))
    }

    /// Keep only the entries for which `keep(hash, value)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &mut T) -> bool) {
        for b in &mut self.buckets {
            b.retain_mut(|p| keep(p.hash, &mut p.value));
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
        for (i, mut low) in old.into_iter().enumerate() {
            let at = low.partition_point(|p| self.bucket(p.hash) == 2 * i);
            let room = |n: usize| if n == 0 { 0 } else { n + GROW_BY / 2 };
            let mut high = Vec::with_capacity(room(low.len() - at));
            high.extend(low.drain(at..));
            low.shrink_to(room(low.len()));
            buckets.push(low);
            buckets.push(high);
        }
        self.buckets = buckets;
    }

    /// Heap bytes the index holds (for tests and estimates).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Vec<Pair<T>>>()
            + self.buckets.iter().map(|b| b.capacity() * std::mem::size_of::<Pair<T>>()).sum::<usize>()
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
                index.insert(h, i as u32, |_| true);
            }
        }
        assert!(index.bits > FIRST_BITS, "it grew");
        for &h in all.iter().step_by(3) {
            assert_eq!(index.remove(h, |_| true), model.remove(&h));
        }
        assert_eq!(index.remove(all[0], |_| true), None, "removed already");
        assert_eq!(index.len(), model.len());
        for &h in &all {
            assert_eq!(index.find(h, |_| true), model.get(&h));
        }
        let everything: Vec<(u64, u32)> =
            index.range((Bound::Unbounded, Bound::Unbounded)).map(|(h, &s)| (h, s)).collect();
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
            let got: Vec<(u64, u32)> = index.range(bounds).map(|(h, &s)| (h, s)).collect();
            let want: Vec<(u64, u32)> = model.range(bounds).map(|(&h, &s)| (h, s)).collect();
            assert_eq!(got, want, "{bounds:?}");
        }
        index.retain(|h, _| h % 2 == 0);
        model.retain(|h, _| h % 2 == 0);
        assert_eq!(index.len(), model.len());
        let everything: Vec<(u64, u32)> =
            index.range((Bound::Unbounded, Bound::Unbounded)).map(|(h, &s)| (h, s)).collect();
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
            index.insert(h, i as u32, |_| true);
        }
        for (i, &h) in crowded.iter().enumerate() {
            index.prefetch(h);
            assert_eq!(index.find(h, |_| true), Some(&(i as u32)), "{h:#x}");
        }
        for absent in (0..3_000u64).map(|i| base | (i * 7 + 3)) {
            assert_eq!(index.find(absent, |_| true), None, "{absent:#x} is absent");
        }
        let mut sorted = crowded.clone();
        sorted.sort_unstable();
        let walked: Vec<u64> = index.range((Bound::Unbounded, Bound::Unbounded)).map(|(h, _)| h).collect();
        assert_eq!(walked, sorted);
        let removed = crowded.iter().step_by(2).filter(|&&h| index.remove(h, |_| true).is_some()).count();
        assert_eq!((removed, index.len()), (crowded.len().div_ceil(2), crowded.len() / 2));
    }

    /// A prefetch looks only where a lookup would: in every bucket, empty or not, for hashes of
    /// this shard or any other, at either end of the hash space.
    #[test]
    fn prefetch_stays_within_the_buckets() {
        let mut index = Index::new(PREFIX, 3);
        let edges = [0, 1, u64::MAX, 3 << (64 - PREFIX), (4 << (64 - PREFIX)) - 1];
        for &h in &edges {
            index.prefetch(h);
        }
        for (i, h) in hashes(7, 2_000, 3).into_iter().enumerate() {
            index.insert(h, i as u32, |_| true);
        }
        for h in edges.into_iter().chain(hashes(8, 2_000, 3)) {
            index.prefetch(h);
        }
    }

    /// Several entries of one hash (keys whose hashes collide) sit together, in the order the
    /// inserts asked for, and are found and removed one by one.
    #[test]
    fn entries_sharing_a_hash_keep_their_order() {
        let mut index = Index::new(PREFIX, 0);
        let h = 42;
        for v in [5u32, 1, 3] {
            index.insert(h, v, |&other| other < v);
        }
        index.insert(h - 1, 0, |_| true);
        index.insert(h + 1, 9, |_| true);
        let walked: Vec<(u64, u32)> = index.range((Bound::Unbounded, Bound::Unbounded)).map(|(h, &v)| (h, v)).collect();
        assert_eq!(walked, [(h - 1, 0), (h, 1), (h, 3), (h, 5), (h + 1, 9)]);
        assert_eq!(index.find(h, |&v| v > 1), Some(&3));
        *index.find_mut(h, |&v| v == 3).unwrap() = 4;
        assert_eq!(index.remove(h, |&v| v == 4), Some(4));
        assert_eq!(index.remove(h, |&v| v == 4), None);
        assert_eq!(index.find(h, |_| true), Some(&1));
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn handles_and_spare_room_cost_under_a_tenth_of_an_entry() {
        // Entries the size of the memory engine's (a hash and a record's pointer and length).
        let mut index = Index::new(PREFIX, 3);
        for h in hashes(2, 100_000, 3) {
            index.insert(h, [h, h], |_| true);
        }
        let per_entry = index.heap_bytes() as f64 / index.len() as f64;
        let pair = std::mem::size_of::<Pair<[u64; 2]>>() as f64;
        assert_eq!(pair, 24.0);
        assert!(per_entry < pair * 1.1, "{per_entry:.1} bytes an entry of {pair}");
    }
}
