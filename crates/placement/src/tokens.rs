//! Choosing a new node's tokens.
//!
//! Hashing `id#i` gives 128 random positions, and random positions give a random share of the
//! ring: with 128 tokens the newcomer's share typically lands within about ±9% of the ideal
//! `1/(n+1)`, and the keys it takes over follow that share. Since tokens are chosen once and
//! stored in the member record, the choice can afford to be careful: we draw several candidate
//! token sets and keep the one whose resulting ring is the most balanced (the smallest worst
//! deviation of any node's share from the ideal). That bounds both what a join moves and the
//! max/mean load afterwards, and costs nothing at lookup time.

use std::hash::Hash;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::ownership::Ownership;
use crate::ring::share;
use crate::{tokens_for, Ring, Token};

/// Candidate token sets drawn by [`choose_tokens`].
pub const TOKEN_CANDIDATES: usize = 64;

/// Tokens for `new` (whose stable identity is `seed`) joining a ring of `members`: the most
/// balanced of `candidates` draws. Deterministic for the same inputs. Candidate 0 is
/// `tokens_for(seed, count)`, so with one candidate this is exactly the plain scheme.
pub fn choose_tokens<N, T: AsRef<[Token]>>(
    members: &[(N, T)],
    new: N,
    seed: u64,
    count: usize,
    candidates: usize,
) -> Vec<Token>
where
    N: Copy + Ord + Eq + Hash + std::fmt::Debug,
{
    let draw = |i: usize| {
        if i == 0 {
            tokens_for(seed, count)
        } else {
            tokens_for(xxh3_64_with_seed(&seed.to_le_bytes(), i as u64), count)
        }
    };
    if members.is_empty() || candidates <= 1 {
        return draw(0);
    }
    let ideal = 1.0 / (members.len() + 1) as f64;
    let ring = Ring::new(members.iter().map(|(n, t)| (*n, t.as_ref().iter().copied())));
    // Each candidate's ownership from the ring's, measured once; the ring with the candidate
    // built whole only when there is nothing to measure, or `new` is on it already.
    let measured = Ownership::of(&ring).filter(|_| ring.nodes.binary_search(&new).is_err());
    let worst = |tokens: &[Token]| {
        let shares: Vec<f64> = match &measured {
            Some(ownership) => ownership.with(new, tokens).into_iter().map(share).collect(),
            None => ring.changed(&[], [(new, tokens.iter().copied())]).ownership().into_values().collect(),
        };
        shares.into_iter().map(|share| (share - ideal).abs()).fold(0.0, f64::max)
    };
    let mut best: Option<(f64, Vec<Token>)> = None;
    for i in 0..candidates {
        let tokens = draw(i);
        let worst = worst(&tokens);
        if best.as_ref().is_none_or(|(w, _)| worst < *w) {
            best = Some((worst, tokens));
        }
    }
    best.map(|(_, t)| t).expect("at least one candidate")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share_of(members: &[(u64, Vec<Token>)], new: u64, tokens: &[Token]) -> f64 {
        let ring =
            Ring::new(members.iter().map(|(n, t)| (*n, t.iter().copied())).chain([(new, tokens.iter().copied())]));
        ring.ownership()[&new]
    }

    #[test]
    fn chosen_tokens_give_the_newcomer_close_to_its_ideal_share() {
        let members: Vec<(u64, Vec<Token>)> = (1..=5).map(|id| (id, tokens_for(id, 128))).collect();
        let plain = tokens_for(6, 128);
        let chosen = choose_tokens(&members, 6, 6, 128, TOKEN_CANDIDATES);
        assert_eq!(chosen.len(), 128);
        assert_eq!(chosen, choose_tokens(&members, 6, 6, 128, TOKEN_CANDIDATES), "deterministic");
        let ideal = 1.0 / 6.0;
        let (p, c) = (share_of(&members, 6, &plain), share_of(&members, 6, &chosen));
        println!("newcomer share: plain {:.4} ({:.3}x ideal), chosen {:.4} ({:.3}x ideal)", p, p / ideal, c, c / ideal);
        assert!((c - ideal).abs() <= (p - ideal).abs() + 1e-12);
        assert!((c / ideal - 1.0).abs() < 0.05, "chosen share {c} not within 5% of {ideal}");
    }

    /// The choice as it was made before [`Ownership`]: every candidate's ring built whole.
    fn chosen_by_building_rings(members: &[(u64, Vec<Token>)], new: u64, count: usize) -> Vec<Token> {
        let ideal = 1.0 / (members.len() + 1) as f64;
        let mut best: Option<(f64, Vec<Token>)> = None;
        for i in 0..TOKEN_CANDIDATES {
            let tokens = if i == 0 {
                tokens_for(new, count)
            } else {
                tokens_for(xxh3_64_with_seed(&new.to_le_bytes(), i as u64), count)
            };
            let all = members.iter().map(|(n, t)| (*n, t.iter().copied())).chain([(new, tokens.iter().copied())]);
            let worst = Ring::new(all).ownership().values().map(|s| (s - ideal).abs()).fold(0.0, f64::max);
            if best.as_ref().is_none_or(|(w, _)| worst < *w) {
                best = Some((worst, tokens));
            }
        }
        best.expect("candidates").1
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The same tokens as building every candidate's ring, whatever the members (some with no
        /// tokens, some tied, the newcomer among them or not).
        #[test]
        fn the_choice_is_the_one_whole_rings_make(
            members in proptest::collection::vec((1u64..12, proptest::collection::vec(0u64..1 << 20, 0..4)), 1..6),
            new in 1u64..14,
            count in 1usize..6,
        ) {
            let members: Vec<(u64, Vec<Token>)> =
                members.into_iter().map(|(n, t)| (n, t.into_iter().map(|t| t << 44).collect())).collect();
            proptest::prop_assert_eq!(
                choose_tokens(&members, new, new, count, TOKEN_CANDIDATES),
                chosen_by_building_rings(&members, new, count)
            );
        }
    }

    #[test]
    fn the_choice_at_a_hundred_members_is_the_one_whole_rings_make() {
        let members: Vec<(u64, Vec<Token>)> = (1..=100).map(|id| (id, tokens_for(id, 128))).collect();
        assert_eq!(
            choose_tokens(&members, 101, 101, 128, TOKEN_CANDIDATES),
            chosen_by_building_rings(&members, 101, 128)
        );
    }

    #[test]
    fn first_node_and_single_candidate_use_the_plain_scheme() {
        assert_eq!(choose_tokens::<u64, Vec<Token>>(&[], 1, 1, 16, 64), tokens_for(1, 16));
        let members = vec![(1u64, tokens_for(1, 16))];
        assert_eq!(choose_tokens(&members, 2, 2, 16, 1), tokens_for(2, 16));
    }
}
