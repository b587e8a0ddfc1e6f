//! Key hashing and token derivation. Both must stay bit-for-bit stable forever: changing them
//! relocates every key in every existing cluster (the property tests pin known values).

use std::collections::BTreeSet;

use xxhash_rust::xxh3::xxh3_64;

/// A position on the ring: the whole `u64` space, wrapping at `u64::MAX`.
pub type Token = u64;

/// Default number of virtual nodes (tokens) per physical node. 128 keeps the max/mean load
/// within a few tens of percent for small clusters while the ring stays small enough
/// (nodes × 128 entries) to binary-search in a handful of cache lines.
pub const DEFAULT_VNODES: usize = 128;

/// Stable 64-bit placement hash of key bytes: xxh3-64 with seed 0.
///
/// Never `DefaultHasher` (unstable across Rust releases) or ahash (randomly seeded): every node
/// and every future version must map a key to the same ring position.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Deterministic initial tokens for a node: xxh3-64 of `format!("{node:016x}#{i}")`, sorted and
/// deduplicated.
///
/// Indices `0..count` are hashed first; should two of them collide (astronomically unlikely, but
/// the node must still get exactly `count` tokens) hashing continues with `count`, `count + 1`,
/// ... until `count` distinct tokens exist. The result is meant to be stored in the member record
/// once, not recomputed, so a better scheme can replace this for new nodes at any time.
pub fn tokens_for(node: u64, count: usize) -> Vec<Token> {
    let mut tokens = BTreeSet::new();
    let mut i: u64 = 0;
    while tokens.len() < count {
        tokens.insert(xxh3_64(format!("{node:016x}#{i}").as_bytes()));
        i += 1;
    }
    tokens.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_xxh3() {
        assert_eq!(key_hash(b"abc"), xxh3_64(b"abc"));
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
    }

    #[test]
    fn tokens_are_sorted_distinct_and_counted() {
        for count in [0, 1, 7, DEFAULT_VNODES] {
            let t = tokens_for(42, count);
            assert_eq!(t.len(), count);
            assert!(t.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn tokens_follow_the_documented_formula() {
        let mut expected: Vec<u64> = (0..4).map(|i| xxh3_64(format!("{:016x}#{i}", 0xabcu64).as_bytes())).collect();
        expected.sort_unstable();
        assert_eq!(tokens_for(0xabc, 4), expected);
        // A prefix of indices: more tokens keep the earlier ones.
        let small = tokens_for(9, 8);
        let big = tokens_for(9, 16);
        assert!(small.iter().all(|t| big.contains(t)));
    }

    #[test]
    fn different_nodes_get_different_tokens() {
        assert_ne!(tokens_for(1, 8), tokens_for(2, 8));
    }
}
