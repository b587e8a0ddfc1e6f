//! Property tests for the ring: determinism, preference-list shape, and minimal movement on
//! join and leave. Plus one report test that prints balance and movement numbers
//! (`cargo test -p dkv-placement -- --nocapture balance`).

use std::collections::{BTreeMap, BTreeSet};

use dkv_placement::{key_hash, tokens_for, Ring, Token, DEFAULT_VNODES};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Few vnodes keep proptest fast and make ranges coarse, which is where placement bugs show.
fn ring_of(ids: &[u64], vnodes: usize) -> Ring<u64> {
    Ring::new(ids.iter().map(|&id| (id, tokens_for(id, vnodes))))
}

/// 1..=7 distinct node ids.
fn node_ids() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::btree_set(any::<u64>(), 1..=7).prop_map(|s| s.into_iter().collect())
}

#[test]
fn hashes_are_pinned_across_versions() {
    // Computed once with xxh3-64 (seed 0); a change here relocates every stored key.
    assert_eq!(key_hash(b""), 0x2d06_8005_38d3_94c2);
    assert_eq!(key_hash(b"hello"), 0x9555_e855_5c62_dcfd);
    assert_eq!(key_hash(b"key0"), 0x74d9_35ed_0202_1ec6);
    assert_eq!(
        tokens_for(1, 4),
        vec![0x0423_bc1d_03c6_30b8, 0x514c_7bb9_25ea_738a, 0xa6a2_9626_cbf4_c66b, 0xcaa5_bcaf_464c_ebc0,]
    );
    assert_eq!(tokens_for(0xdead_beef, 2), vec![0x92ef_5c54_3651_aced, 0xc24b_5d6c_97b5_8167]);
}

proptest! {
    // Integration tests have no lib.rs beside them, so name the regressions file explicitly
    // (tests/ring_props.regressions) instead of proptest's default lookup, which warns here.
    #![proptest_config(ProptestConfig::with_failure_persistence(
        FileFailurePersistence::WithSource("regressions"),
    ))]

    #[test]
    fn same_members_in_any_order_give_identical_lists(
        (ids, shuffled) in node_ids().prop_flat_map(|ids| (Just(ids.clone()), Just(ids).prop_shuffle())),
        vnodes in 1usize..16,
        hashes in prop::collection::vec(any::<u64>(), 1..50),
    ) {
        let a = ring_of(&ids, vnodes);
        // Also feed each member's tokens reversed: only the set of (node, token) pairs matters.
        let b: Ring<u64> = Ring::new(shuffled.iter().map(|&id| {
            let mut t = tokens_for(id, vnodes);
            t.reverse();
            (id, t)
        }));
        prop_assert_eq!(a.nodes(), b.nodes());
        for h in hashes {
            for n in 0..=ids.len() + 1 {
                prop_assert_eq!(a.preference_list(h, n), b.preference_list(h, n));
            }
        }
    }

    #[test]
    fn preference_list_has_min_n_nodes_distinct_and_starts_at_primary(
        ids in node_ids(),
        vnodes in 1usize..16,
        hashes in prop::collection::vec(any::<u64>(), 1..50),
        n in 1usize..10,
    ) {
        let ring = ring_of(&ids, vnodes);
        // Up to 9 nodes: in the caller's inline buffer and past it.
        let mut out = dkv_placement::Replicas::new();
        for h in hashes {
            ring.preference_list_into(h, n, &mut out);
            prop_assert_eq!(out.len(), n.min(ids.len()));
            let distinct: BTreeSet<u64> = out.iter().copied().collect();
            prop_assert_eq!(distinct.len(), out.len());
            prop_assert_eq!(out.first().copied(), ring.primary(h));
        }
    }

    #[test]
    fn tied_tokens_never_break_determinism_or_shape(
        raw in prop::collection::vec((0u8..6, prop::collection::vec(0u64..8, 1..4)), 1..8),
        h in 0u64..10,
        n in 1usize..6,
    ) {
        // Tiny token space forces ties between nodes.
        let a: Ring<u8> = Ring::new(raw.clone());
        let b: Ring<u8> = Ring::new(raw.into_iter().rev());
        let list = a.preference_list(h, n);
        prop_assert_eq!(&list, &b.preference_list(h, n));
        prop_assert_eq!(list.len(), n.min(a.node_count()));
        let sum: f64 = a.ownership().values().sum();
        prop_assert!((sum - 1.0).abs() < 1e-9);
    }

    #[test]
    fn join_moves_keys_only_to_the_newcomer(
        ids in node_ids(),
        newcomer in any::<u64>(),
        vnodes in 1usize..16,
        hashes in prop::collection::vec(any::<u64>(), 1..100),
    ) {
        prop_assume!(!ids.contains(&newcomer));
        let before = ring_of(&ids, vnodes);
        let mut joined = ids.clone();
        joined.push(newcomer);
        let after = ring_of(&joined, vnodes);
        for h in hashes {
            let (old, new) = (before.primary(h).unwrap(), after.primary(h).unwrap());
            prop_assert!(old == new || new == newcomer);
            for n in 1..=3 {
                let (old, new) = (before.preference_list(h, n), after.preference_list(h, n));
                if old != new {
                    prop_assert!(new.contains(&newcomer), "h={h} n={n} {old:?} -> {new:?}");
                }
            }
        }
    }

    #[test]
    fn leave_moves_only_keys_the_leaver_held(
        ids in prop::collection::btree_set(any::<u64>(), 2..=7)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
        leaver_idx in any::<prop::sample::Index>(),
        vnodes in 1usize..16,
        hashes in prop::collection::vec(any::<u64>(), 1..100),
    ) {
        let leaver = ids[leaver_idx.index(ids.len())];
        let before = ring_of(&ids, vnodes);
        let rest: Vec<u64> = ids.iter().copied().filter(|&id| id != leaver).collect();
        let after = ring_of(&rest, vnodes);
        for h in hashes {
            let (old, new) = (before.primary(h).unwrap(), after.primary(h).unwrap());
            prop_assert!(old == new || old == leaver);
            for n in 1..=3 {
                let (old, new) = (before.preference_list(h, n), after.preference_list(h, n));
                if old != new {
                    prop_assert!(old.contains(&leaver), "h={h} n={n} {old:?} -> {new:?}");
                }
            }
        }
    }
}

/// Keys per node, keyed by node id (nodes without keys included with 0).
fn load(ring: &Ring<u64>, keys: &[Vec<u8>]) -> BTreeMap<u64, usize> {
    let mut counts: BTreeMap<u64, usize> = ring.nodes().into_iter().map(|n| (n, 0)).collect();
    for k in keys {
        *counts.get_mut(&ring.primary(key_hash(k)).unwrap()).unwrap() += 1;
    }
    counts
}

fn max_over_mean(counts: &BTreeMap<u64, usize>) -> f64 {
    let max = *counts.values().max().unwrap() as f64;
    let mean = counts.values().sum::<usize>() as f64 / counts.len() as f64;
    max / mean
}

fn build(ids: impl IntoIterator<Item = u64>) -> Ring<u64> {
    Ring::new(ids.into_iter().map(|id| (id, tokens_for(id, DEFAULT_VNODES))))
}

#[test]
fn balance_and_join_movement_report() {
    let before = build(1..=5);
    let after = build(1..=6);
    for total in [800usize, 100_000] {
        let keys: Vec<Vec<u8>> = (0..total).map(|i| format!("key{i}").into_bytes()).collect();
        let (lb, la) = (load(&before, &keys), load(&after, &keys));
        let moved: Vec<&Vec<u8>> =
            keys.iter().filter(|k| before.primary(key_hash(k)) != after.primary(key_hash(k))).collect();
        let ideal = total as f64 / 6.0;
        let (mb, ma) = (max_over_mean(&lb), max_over_mean(&la));
        println!("--- {total} keys, {DEFAULT_VNODES} vnodes/node ---");
        println!("before (5 nodes): {lb:?}  max/mean = {mb:.3}");
        println!("after  (6 nodes): {la:?}  max/mean = {ma:.3}");
        println!("moved = {}, ideal = {ideal:.1}, moved/ideal = {:.3}", moved.len(), moved.len() as f64 / ideal);
        assert!(!moved.is_empty());
        assert!(moved.iter().all(|k| after.primary(key_hash(k)) == Some(6)));
        assert!(mb < 2.0 && ma < 2.0);
    }
    for (name, ring) in [("before", &before), ("after", &after)] {
        let own = ring.ownership();
        let fmt: Vec<String> = own.iter().map(|(n, f)| format!("{n}: {f:.4}")).collect();
        println!("ownership {name}: {{{}}}", fmt.join(", "));
        assert!((own.values().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}

/// Touch the Token alias so the public type name stays part of what the tests compile against.
#[test]
fn token_is_u64() {
    let t: Token = u64::MAX;
    let ring = Ring::new([(1u64, [t])]);
    assert_eq!(ring.primary(0), Some(1));
}

/// The same join as above, with tokens chosen the way the seed chooses them
/// ([`choose_tokens`]: each node in turn, balanced against the nodes before it).
#[test]
fn balanced_tokens_join_movement_report() {
    let mut members: Vec<(u64, Vec<Token>)> = Vec::new();
    for id in 1..=5u64 {
        let t = dkv_placement::choose_tokens(&members, id, id, DEFAULT_VNODES, dkv_placement::TOKEN_CANDIDATES);
        members.push((id, t));
    }
    let ring_of = |m: &[(u64, Vec<Token>)]| Ring::new(m.iter().map(|(n, t)| (*n, t.iter().copied())));
    let before = ring_of(&members);
    let t6 = dkv_placement::choose_tokens(&members, 6, 6, DEFAULT_VNODES, dkv_placement::TOKEN_CANDIDATES);
    members.push((6, t6));
    let after = ring_of(&members);
    let total = 100_000usize;
    let keys: Vec<Vec<u8>> = (0..total).map(|i| format!("key{i}").into_bytes()).collect();
    let (lb, la) = (load(&before, &keys), load(&after, &keys));
    let moved = keys.iter().filter(|k| before.primary(key_hash(k)) != after.primary(key_hash(k))).count();
    let ideal = total as f64 / 6.0;
    println!("--- balanced tokens, {total} keys ---");
    println!("before (5 nodes): {lb:?}  max/mean = {:.3}", max_over_mean(&lb));
    println!("after  (6 nodes): {la:?}  max/mean = {:.3}", max_over_mean(&la));
    println!("moved = {moved}, ideal = {ideal:.1}, moved/ideal = {:.3}", moved as f64 / ideal);
    println!("newcomer ownership = {:.4} (ideal {:.4})", after.ownership()[&6], 1.0 / 6.0);
    assert!(moved > 0);
    assert!(max_over_mean(&la) < 1.5);
}
