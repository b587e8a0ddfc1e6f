//! What each node would own if one more node's tokens were added to a ring, without building
//! that ring.
//!
//! The seed scores [`TOKEN_CANDIDATES`](crate::TOKEN_CANDIDATES) token sets for every node that
//! joins. Building each candidate's ring sorted every member's tokens again: half a second of
//! the seed's CPU per join at a thousand members, seven seconds at ten thousand
//! (`examples/registry_bench.rs`), and a cluster's cold start joins every node in turn. But
//! adding tokens changes only a few ranges: each added token takes the start of the range it
//! lands in (the ring's first entry owns the arc that wraps around), and every other entry owns
//! what it owned. So the ring's ranges are measured once, and a candidate
//! costs a binary search per token and a pass over the nodes.

use std::fmt::Debug;
use std::hash::Hash;

use crate::ring::{owned_range, Ring};
use crate::Token;

/// A ring's ranges, measured once to score many candidates for one newcomer.
pub(crate) struct Ownership<'r, N> {
    ring: &'r Ring<N>,
    /// What each entry owns, as [`Ring::ownership`] measures it.
    ranges: Vec<u128>,
    /// What each of the ring's nodes owns, in the order of `ring.nodes`.
    owned: Vec<u128>,
}

impl<'r, N: Copy + Ord + Eq + Hash + Debug> Ownership<'r, N> {
    /// `None` for an empty ring, where there is nothing to measure.
    pub fn of(ring: &'r Ring<N>) -> Option<Self> {
        let e = &ring.entries;
        let ends = (e.first()?.0, e.last()?.0);
        let ranges: Vec<u128> =
            (0..e.len()).map(|i| owned_range(i.checked_sub(1).map(|p| e[p].0), e[i].0, ends)).collect();
        let mut owned = vec![0; ring.nodes.len()];
        for (&(_, node), range) in e.iter().zip(&ranges) {
            owned[node_at(ring, node)] += range;
        }
        Some(Ownership { ring, ranges, owned })
    }

    /// What every node would own with `new`'s `tokens` added to the ring (the ring's nodes in
    /// order, then `new` if it has a token): the ownership of `ring.changed(&[], [(new, tokens)])`.
    /// `new` must not be on the ring already.
    pub fn with(&self, new: N, tokens: &[Token]) -> Vec<u128> {
        debug_assert!(self.ring.nodes.binary_search(&new).is_err(), "{new:?} is on the ring already");
        let e = &self.ring.entries;
        let mut added: Vec<(Token, N)> = tokens.iter().map(|&t| (t, new)).collect();
        added.sort_unstable();
        added.dedup();
        let mut owned = self.owned.clone();
        let (Some(&first), Some(&last)) = (added.first(), added.last()) else { return owned };
        let ends = (first.min(e[0]).0, last.max(e[e.len() - 1]).0);
        // The token of the entry before `x` on the ring with the added entries.
        let before = |x: (Token, N)| {
            let on_ring = e.partition_point(|y| *y < x).checked_sub(1).map(|i| e[i]);
            let from_added = added.partition_point(|y| *y < x).checked_sub(1).map(|i| added[i]);
            on_ring.max(from_added).map(|(t, _)| t)
        };
        let mine: u128 = added.iter().map(|&a| owned_range(before(a), a.0, ends)).sum();
        // The entries whose range changed: each one right after an added entry. After the last
        // entry comes the first, which owns the wrap-around: its ends move only with an entry
        // added before the first or after the last, so it is among them when they do.
        let mut changed: Vec<usize> = added.iter().map(|a| e.partition_point(|y| y < a) % e.len()).collect();
        changed.sort_unstable();
        changed.dedup();
        for i in changed {
            let node = node_at(self.ring, e[i].1);
            owned[node] = owned[node] - self.ranges[i] + owned_range(before(e[i]), e[i].0, ends);
        }
        owned.push(mine);
        owned
    }
}

/// Where `node` is in `ring.nodes`.
fn node_at<N: Ord + Debug>(ring: &Ring<N>, node: N) -> usize {
    ring.nodes.binary_search(&node).unwrap_or_else(|_| panic!("{node:?} holds an entry of the ring"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::share;

    proptest::proptest! {
        /// Tokens tied with the ring's, before its first or after its last, repeated, or none:
        /// what `with` measures is what the ring with them added owns.
        #[test]
        fn with_is_the_ownership_of_the_ring_with_the_tokens_added(
            ring in proptest::collection::vec((0u32..6, proptest::collection::vec(0u64..60, 1..6)), 1..6),
            tokens in proptest::collection::vec(proptest::prop_oneof![0u64..60, proptest::strategy::Just(u64::MAX)], 0..8),
            new in 0u32..8,
        ) {
            let ring = Ring::new(ring.iter().filter(|(n, _)| *n != new).map(|(n, t)| (*n, t.iter().copied())));
            proptest::prop_assume!(!ring.is_empty());
            let owned = Ownership::of(&ring).expect("a ring with entries").with(new, &tokens);
            let mut nodes = ring.nodes();
            if !tokens.is_empty() {
                nodes.push(new);
            }
            let got: std::collections::BTreeMap<u32, f64> =
                nodes.into_iter().zip(owned).map(|(n, o)| (n, share(o))).collect();
            let want = ring.changed(&[], [(new, tokens.iter().copied())]).ownership();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
