//! The token ring and preference lists.
//!
//! The ring is a single sorted `Vec<(Token, N)>`: a lookup is one binary search plus a short
//! clockwise walk, with no pointer chasing. A membership change makes a new ring rather than
//! mutate this one: from the one before, by one merge of the nodes that came into the nodes that
//! stayed ([`Ring::changed`]). That keeps it an immutable value that the layers above can share
//! behind an `Arc` and swap atomically.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use smallvec::SmallVec;

use crate::hash::Token;

/// A preference list in a buffer of the caller's that holds this many nodes without allocating:
/// every replication factor in use, and the joining nodes of a write set besides.
pub const INLINE_REPLICAS: usize = 6;

/// The nodes of one preference list, in order.
pub type Replicas<N> = SmallVec<[N; INLINE_REPLICAS]>;

/// Above this many wanted replicas, the walk tracks seen nodes in a `HashSet` instead of scanning
/// `out`; below it a linear scan of a few elements is faster and allocates nothing.
const LINEAR_SEEN_LIMIT: usize = 16;

/// A consistent-hash ring over node handles `N`.
///
/// Generic over `N` (a member id, an index, ...) so that placement knows nothing about
/// membership. Entries are sorted by token; when two nodes claim the same token the tie is
/// broken by `N`'s `Ord`, so the ring, and every preference list, depends only on the *set* of
/// `(node, token)` pairs and never on the order in which members were supplied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring<N> {
    /// `(token, node)` sorted ascending, exact duplicates removed.
    pub(crate) entries: Vec<(Token, N)>,
    /// Distinct nodes that hold at least one token, sorted.
    pub(crate) nodes: Vec<N>,
}

impl<N: Copy + Ord + Eq + Hash + Debug> Ring<N> {
    /// Builds a ring from each node's tokens.
    ///
    /// A node listed twice contributes the union of its tokens; a node with no tokens is not on
    /// the ring at all (it owns nothing and is not counted by [`Ring::node_count`]).
    pub fn new<I, T>(nodes: I) -> Self
    where
        I: IntoIterator<Item = (N, T)>,
        T: IntoIterator<Item = Token>,
    {
        let (mut entries, mut nodes) = entries_of(nodes);
        entries.sort_unstable();
        entries.dedup();
        nodes.sort_unstable();
        nodes.dedup();
        Ring { entries, nodes }
    }

    /// This ring with the nodes in `gone` taken off and `coming`'s tokens put on: the ring
    /// [`Ring::new`] builds from the nodes that remain plus `coming`, in one merge instead of a
    /// sort of the whole ring. A node that stays but changes its tokens is in both.
    ///
    /// Every node rebuilds its rings for every membership change, and while a hundred nodes
    /// start together there are hundreds of changes: sorting 100 × 128 tokens twice a change was
    /// a fifth of the cluster's start-up CPU (`bench/membership.sh`).
    pub fn changed<I, T>(&self, gone: &[N], coming: I) -> Self
    where
        I: IntoIterator<Item = (N, T)>,
        T: IntoIterator<Item = Token>,
    {
        let (mut added, mut nodes) = entries_of(coming);
        added.sort_unstable();
        added.dedup();
        // The old entries between two added ones are copied as one run: a join (nothing gone)
        // copies the ring in as many pieces as it adds tokens, instead of comparing every entry.
        let keep = |entries: &mut Vec<(Token, N)>, run: &[(Token, N)]| {
            if gone.is_empty() {
                entries.extend_from_slice(run);
            } else {
                entries.extend(run.iter().filter(|(_, n)| !gone.contains(n)));
            }
        };
        let mut entries = Vec::with_capacity(self.entries.len() + added.len());
        let mut rest = &self.entries[..];
        for a in added {
            let at = rest.partition_point(|e| *e < a);
            keep(&mut entries, &rest[..at]);
            entries.push(a);
            // An old entry equal to an added one is the same pair: it goes in once.
            rest = &rest[at..];
            if rest.first() == Some(&a) {
                rest = &rest[1..];
            }
        }
        keep(&mut entries, rest);
        nodes.extend(self.nodes.iter().filter(|n| !gone.contains(n)));
        nodes.sort_unstable();
        nodes.dedup();
        Ring { entries, nodes }
    }

    /// True when no node holds a token: every lookup then returns nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct physical nodes on the ring (the cap on any preference list's length).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Distinct nodes on the ring, sorted.
    pub fn nodes(&self) -> Vec<N> {
        self.nodes.clone()
    }

    /// Index of the entry owning `hash`: the first token `>= hash`, wrapping to index 0.
    /// Caller guarantees the ring is non-empty.
    #[inline]
    fn owner_index(&self, hash: u64) -> usize {
        let i = self.entries.partition_point(|&(t, _)| t < hash);
        if i == self.entries.len() {
            0
        } else {
            i
        }
    }

    /// Whether a token lies in `[lo, hi)`. When none does, every hash from `lo` to `hi` has the
    /// same first token at or after it, so the same preference list.
    pub fn has_token_in(&self, lo: u64, hi: u64) -> bool {
        let i = self.entries.partition_point(|&(t, _)| t < lo);
        self.entries.get(i).is_some_and(|&(t, _)| t < hi)
    }

    /// Writes the preference list of `hash` into `out` (cleared first): walking clockwise from
    /// the first token `>= hash` (wrapping), the first `n` *distinct* nodes, or every node if the
    /// ring has fewer.
    ///
    /// This runs on every request, so it takes a caller-owned buffer, which holds
    /// [`INLINE_REPLICAS`] nodes without allocating: one binary search, then a walk that usually stops
    /// after a few entries.
    pub fn preference_list_into(&self, hash: u64, n: usize, out: &mut Replicas<N>) {
        out.clear();
        if n == 0 || self.entries.is_empty() {
            return;
        }
        let start = self.owner_index(hash);
        if n == 1 {
            out.push(self.entries[start].1);
            return;
        }
        let want = n.min(self.nodes.len());
        out.reserve(want);
        let walk = self.entries[start..].iter().chain(&self.entries[..start]).map(|&(_, node)| node);
        if want <= LINEAR_SEEN_LIMIT {
            for node in walk {
                if !out.contains(&node) {
                    out.push(node);
                    if out.len() == want {
                        break;
                    }
                }
            }
        } else {
            let mut seen = HashSet::with_capacity(want);
            for node in walk {
                if seen.insert(node) {
                    out.push(node);
                    if out.len() == want {
                        break;
                    }
                }
            }
        }
    }

    /// Allocating convenience over [`Ring::preference_list_into`].
    pub fn preference_list(&self, hash: u64, n: usize) -> Vec<N> {
        let mut out = Replicas::new();
        self.preference_list_into(hash, n, &mut out);
        out.into_vec()
    }

    /// The node owning `hash`: the first node of its preference list, `None` on an empty ring.
    #[inline]
    pub fn primary(&self, hash: u64) -> Option<N> {
        match self.nodes[..] {
            [] => None,
            // One node owns every range: no search (a one-node cluster asks for every request).
            [only] => Some(only),
            _ => Some(self.entries[self.owner_index(hash)].1),
        }
    }

    /// The last hash position (inclusive) of the run of ranges that starts with the one holding
    /// `hash` and whose preference lists hold the same nodes as `hash`'s (in any order): every
    /// position from `hash` to it is stored by the same `n` nodes. Never wraps: the run ends at
    /// `u64::MAX` at the latest, so a walk over the hash space in order can take it run by run
    /// (a key scan asks each run's replicas once). `u64::MAX` on an empty ring.
    pub fn span_end(&self, hash: u64, n: usize) -> u64 {
        if self.entries.is_empty() {
            return u64::MAX;
        }
        let sorted = |h: u64| {
            let mut list = self.preference_list(h, n);
            list.sort_unstable();
            list
        };
        let mine = sorted(hash);
        let i = self.entries.partition_point(|&(t, _)| t < hash);
        if i == self.entries.len() {
            return u64::MAX; // past the last token: the run is the rest of the space
        }
        let mut end = self.entries[i].0;
        for &(token, _) in &self.entries[i + 1..] {
            // The range (end, token] is held by `token`'s preference list (empty when tied).
            if token != end && sorted(token) != mine {
                return end;
            }
            end = token;
        }
        // (last token, u64::MAX] wraps to the first token's list.
        if end == u64::MAX || sorted(u64::MAX) == mine {
            u64::MAX
        } else {
            end
        }
    }

    /// Fraction of the 2^64 hash space for which each node is the primary; sums to 1.0 for a
    /// non-empty ring. Every node on the ring appears, with 0.0 if it owns nothing (possible only
    /// when all its tokens are tied with a smaller node's).
    ///
    /// Used to report balance; it measures ranges exactly rather than sampling keys.
    pub fn ownership(&self) -> BTreeMap<N, f64> {
        let mut owned: BTreeMap<N, u128> = self.nodes.iter().map(|&n| (n, 0)).collect();
        let (Some(&(first, _)), Some(&(last, _))) = (self.entries.first(), self.entries.last()) else {
            return BTreeMap::new();
        };
        let mut prev: Option<Token> = None;
        for &(token, node) in &self.entries {
            *owned.entry(node).or_default() += owned_range(prev, token, (first, last));
            prev = Some(token);
        }
        owned.into_iter().map(|(n, size)| (n, share(size))).collect()
    }
}

/// The size of the hash space.
pub(crate) const SPACE: u128 = 1 << 64;

/// What the entry at `token` owns on a ring whose first and last tokens are `ends`, after the
/// entry at `prev` (none for the first entry): `(prev, token]`; the first entry also owns the
/// wrap-around arc `(last, u64::MAX]`, so its range is 2^64 - (last - first). A token tied with
/// the previous one owns an empty range.
pub(crate) fn owned_range(prev: Option<Token>, token: Token, (first, last): (Token, Token)) -> u128 {
    match prev {
        None => SPACE - u128::from(last - first),
        Some(p) => u128::from(token - p),
    }
}

/// A part of the hash space as a fraction of it.
pub(crate) fn share(owned: u128) -> f64 {
    owned as f64 / SPACE as f64
}

/// Every node's `(token, node)` entries, unsorted, and the nodes that have at least one.
fn entries_of<N: Copy, I, T>(nodes: I) -> (Vec<(Token, N)>, Vec<N>)
where
    I: IntoIterator<Item = (N, T)>,
    T: IntoIterator<Item = Token>,
{
    let (mut entries, mut holders) = (Vec::new(), Vec::new());
    for (node, tokens) in nodes {
        let before = entries.len();
        entries.extend(tokens.into_iter().map(|t| (t, node)));
        if entries.len() > before {
            holders.push(node);
        }
    }
    (entries, holders)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(nodes: &[(u32, &[Token])]) -> Ring<u32> {
        Ring::new(nodes.iter().map(|&(n, t)| (n, t.iter().copied())))
    }

    #[test]
    fn empty_ring_returns_nothing() {
        let r = ring(&[]);
        assert!(r.is_empty());
        assert_eq!(r.node_count(), 0);
        assert!(r.nodes().is_empty());
        assert_eq!(r.primary(5), None);
        assert!(r.preference_list(5, 3).is_empty());
        assert!(r.ownership().is_empty());
    }

    #[test]
    fn a_run_without_a_token_has_one_preference_list() {
        let r = ring(&[(1, &[100, 300]), (2, &[200])]);
        assert!(r.has_token_in(100, 101) && r.has_token_in(50, 250) && r.has_token_in(250, u64::MAX));
        assert!(!r.has_token_in(101, 200) && !r.has_token_in(301, u64::MAX) && !r.has_token_in(0, 100));
        for (lo, hi) in [(101, 200), (301, u64::MAX), (0, 100)] {
            assert_eq!(r.preference_list(lo, 2), r.preference_list(hi, 2), "{lo}..{hi}");
        }
        assert_ne!(r.preference_list(100, 2), r.preference_list(101, 2));
        assert!(!ring(&[]).has_token_in(0, u64::MAX));
    }

    #[test]
    fn node_without_tokens_is_not_on_the_ring() {
        let r = ring(&[(1, &[]), (2, &[])]);
        assert!(r.is_empty());
        assert_eq!(r.node_count(), 0);
    }

    #[test]
    fn one_node_owns_everything() {
        let r = ring(&[(7, &[100])]);
        for h in [0, 100, 101, u64::MAX] {
            assert_eq!(r.primary(h), Some(7));
            assert_eq!(r.preference_list(h, 3), vec![7]);
        }
        assert_eq!(r.ownership()[&7], 1.0);
    }

    #[test]
    fn key_goes_to_first_token_at_or_after_its_hash_and_wraps() {
        let r = ring(&[(1, &[10, 40]), (2, &[20]), (3, &[30])]);
        assert_eq!(r.primary(0), Some(1));
        assert_eq!(r.primary(10), Some(1));
        assert_eq!(r.primary(11), Some(2));
        assert_eq!(r.primary(30), Some(3));
        assert_eq!(r.primary(40), Some(1));
        assert_eq!(r.primary(41), Some(1)); // wraps to token 10
        assert_eq!(r.primary(u64::MAX), Some(1));
        // The walk wraps too: from 35 -> 40(1), 10(1, skipped), 20(2), 30(3).
        assert_eq!(r.preference_list(35, 3), vec![1, 2, 3]);
        assert_eq!(r.preference_list(25, 2), vec![3, 1]);
    }

    #[test]
    fn n_larger_than_node_count_returns_every_node_once() {
        let r = ring(&[(1, &[10, 11, 12]), (2, &[20])]);
        assert_eq!(r.preference_list(0, 5), vec![1, 2]);
        assert_eq!(r.preference_list(15, 5), vec![2, 1]);
        assert!(r.preference_list(0, 0).is_empty());
    }

    #[test]
    fn tied_tokens_are_broken_by_node_order_regardless_of_input_order() {
        let a = ring(&[(2, &[50]), (1, &[50]), (3, &[60])]);
        let b = ring(&[(3, &[60]), (1, &[50]), (2, &[50])]);
        for r in [&a, &b] {
            assert_eq!(r.primary(50), Some(1));
            assert_eq!(r.preference_list(50, 3), vec![1, 2, 3]);
            let own = r.ownership();
            assert_eq!(own[&2], 0.0);
            assert_eq!(own.values().sum::<f64>(), 1.0);
        }
    }

    #[test]
    fn changed_is_the_ring_new_builds_from_what_remains() {
        let (a, b, c): (&[Token], &[Token], &[Token]) = (&[10, 50, 90], &[20, 50, 70], &[5, 50, 95]);
        let before = ring(&[(1, a), (2, b)]);
        let after = before.changed(&[1], [(3, c.iter().copied()), (1, [30u64].iter().copied())]);
        assert_eq!(after, ring(&[(2, b), (3, c), (1, &[30])]));
        assert_eq!(after.nodes(), vec![1, 2, 3]);
        assert_eq!(before.changed(&[2], std::iter::empty::<(u32, Vec<Token>)>()), ring(&[(1, a)]));
    }

    proptest::proptest! {
        /// Whatever goes and comes (tokens shared between nodes, a node that goes and comes back
        /// with other tokens, tokens listed twice), the changed ring is the one built anew.
        #[test]
        fn changed_is_always_the_ring_built_anew(
            before in proptest::collection::vec((0u32..6, proptest::collection::vec(0u64..40, 0..6)), 0..6),
            gone in proptest::collection::vec(0u32..6, 0..3),
            coming in proptest::collection::vec((0u32..8, proptest::collection::vec(0u64..40, 0..6)), 0..4),
        ) {
            let old = Ring::new(before.iter().map(|(n, t)| (*n, t.iter().copied())));
            let changed = old.changed(&gone, coming.iter().map(|(n, t)| (*n, t.iter().copied())));
            let remaining = before.iter().filter(|(n, _)| !gone.contains(n));
            let anew = Ring::new(remaining.chain(&coming).map(|(n, t)| (*n, t.iter().copied())));
            proptest::prop_assert_eq!(changed, anew);
        }
    }

    #[test]
    fn repeated_member_merges_tokens() {
        let r = ring(&[(1, &[10]), (1, &[10, 20]), (2, &[30])]);
        assert_eq!(r.node_count(), 2);
        assert_eq!(r.nodes(), vec![1, 2]);
        assert_eq!(r.primary(15), Some(1));
    }

    #[test]
    fn ownership_measures_ranges_exactly() {
        let half = 1u64 << 63;
        let r = ring(&[(1, &[0]), (2, &[half])]);
        let own = r.ownership();
        assert_eq!(own[&1], 0.5);
        assert_eq!(own[&2], 0.5);
        let r = ring(&[(1, &[u64::MAX]), (2, &[0])]);
        assert_eq!(r.ownership()[&1], 1.0 - 1.0 / 2f64.powi(64));
    }

    #[test]
    fn into_reuses_and_clears_the_buffer() {
        let r = ring(&[(1, &[10]), (2, &[20]), (3, &[30])]);
        let mut out: Replicas<u32> = [9; 8].into_iter().collect();
        r.preference_list_into(15, 2, &mut out);
        assert_eq!(out.as_slice(), [2, 3]);
        r.preference_list_into(15, 1, &mut out);
        assert_eq!(out.as_slice(), [2]);
    }

    #[test]
    fn a_span_is_a_run_of_ranges_with_the_same_replicas() {
        // Ranges: (40, MAX] and [0, 10] -> 1, (10, 20] -> 2, (20, 30] -> 3, (30, 40] -> 1.
        let r = ring(&[(1, &[10, 40]), (2, &[20]), (3, &[30])]);
        assert_eq!(r.span_end(0, 1), 10);
        assert_eq!(r.span_end(10, 1), 10);
        assert_eq!(r.span_end(11, 1), 20);
        assert_eq!(r.span_end(21, 1), 30);
        assert_eq!(r.span_end(31, 1), u64::MAX, "(30, 40] and (40, MAX] are both node 1's");
        assert_eq!(r.span_end(41, 1), u64::MAX, "past the last token: the rest of the space");
        // With two copies: {1,2} for [0,10], {2,3} for (10,20], {3,1} for (20,30], {1,2} after.
        assert_eq!(r.span_end(5, 2), 10);
        assert_eq!(r.span_end(35, 2), u64::MAX, "(30,40] and (40,MAX] are both held by 1 and 2");
        // Every node holds everything: one span.
        assert_eq!(r.span_end(0, 3), u64::MAX);
        assert_eq!(ring(&[]).span_end(7, 3), u64::MAX);
        // Tied tokens make an empty range that ends nothing.
        let tied = ring(&[(1, &[10]), (2, &[10, 20])]);
        assert_eq!(tied.span_end(0, 1), 10);
        assert_eq!(tied.span_end(11, 1), 20);
    }

    #[test]
    fn every_position_of_a_span_has_the_span_replicas_and_the_next_does_not() {
        let nodes: Vec<(u32, Vec<Token>)> = (0..5u32).map(|n| (n, crate::tokens_for(u64::from(n), 16))).collect();
        let r = Ring::new(nodes);
        for n in 1..=5 {
            let set = |h: u64| {
                let mut l = r.preference_list(h, n);
                l.sort_unstable();
                l
            };
            let mut pos = 0u64;
            let mut spans = 0;
            loop {
                let end = r.span_end(pos, n);
                assert!(end >= pos);
                for probe in [pos, pos + (end - pos) / 3, pos + (end - pos) / 2, end] {
                    assert_eq!(set(probe), set(pos), "n={n}: {probe} in the span [{pos}, {end}]");
                }
                spans += 1;
                if end == u64::MAX {
                    break;
                }
                assert_ne!(set(end + 1), set(pos), "n={n}: a span ends where its replicas change");
                pos = end + 1;
            }
            assert!((1..=81).contains(&spans), "n={n}: {spans} spans for 80 tokens");
            if n == 5 {
                assert_eq!(spans, 1, "every node holds everything");
            }
        }
    }

    #[test]
    fn large_n_uses_the_same_walk() {
        let nodes: Vec<(u32, Vec<Token>)> =
            (0..40u32).map(|n| (n, vec![u64::from(n) * 1000, u64::from(n) * 1000 + 1])).collect();
        let r = Ring::new(nodes);
        let list = r.preference_list(5_500, 40);
        let expected: Vec<u32> = (6..40).chain(0..6).collect();
        assert_eq!(list, expected);
    }
}
