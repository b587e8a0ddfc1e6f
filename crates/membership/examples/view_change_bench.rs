//! A node's side of a membership change, without sockets: what taking in one change costs a node
//! of a cluster of 1 000, 5 000 and 10 000 members (or the sizes given). It is the work every
//! node does once per heartbeat that finds the view changed, so a cluster's start-up, in which
//! every heartbeat finds a change, pays it members × heartbeats times.
//!
//!   cargo run --release -p dkv-membership --example view_change_bench [MEMBERS...]
//!
//! The change is the one a join makes: a new member, joining, whose tokens go on the future ring.
//! Rows, in µs per change, in the order a node does them (`learn` and `install` in the node's
//! `life/membership.rs`):
//! * `apply`: the heartbeat's changes applied to the view held ([`Changes::apply`]);
//! * `digest`: the new view's digest, checked against the seed's ([`Topology::digest_of`], which
//!   hashes only the members that changed), and, for comparison, from scratch ([`View::digest`]);
//! * `topology`: the placement of the new view, its rings changed from the last ones
//!   ([`Topology::next`], which keeps the digest as `digest_of` does);
//! * `total`: the three in a row, as a node does them.

use std::hint::black_box;
use std::time::Instant;

use dkv_membership::{Changes, Member, NodeId, NodeState, Topology, View};

/// The dkv binary's allocator: the copies of members are most of what is measured.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 5_000, 10_000] } else { sizes };
    println!(
        "{:>8}  {:>10}  {:>10}  {:>20}  {:>10}  {:>10}",
        "members", "apply", "digest", "digest from scratch", "topology", "total"
    );
    for n in sizes {
        let [apply, digest, scratch, topology, total] = bench(n);
        println!("{n:>8}  {apply:>7.0} µs  {digest:>7.0} µs  {scratch:>17.0} µs  {topology:>7.0} µs  {total:>7.0} µs");
    }
}

fn member(i: usize, state: NodeState) -> Member {
    let id = NodeId((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    Member {
        id,
        addr: format!("10.{}.{}.{}:8080", i >> 16, (i >> 8) & 255, i & 255),
        tokens: dkv_placement::tokens_for(id.0, 128).into(),
        state,
        last_seen_ms: 0,
    }
}

/// µs per change of each row, in the order printed.
fn bench(n: usize) -> [f64; 5] {
    let mut nodes: Vec<Member> = (0..n).map(|i| member(i, NodeState::Normal)).collect();
    nodes.sort_by_key(|m| m.id);
    let held = View { epoch: 1, nodes };
    let me = held.nodes[0].id;
    let topology = Topology::new(held.clone(), me, 3);
    let change = || Changes { since: 1, members: vec![member(n, NodeState::Joining)], removed: vec![] };
    let rounds = (200_000 / n).max(5);

    let apply = per_op(rounds, || {
        black_box(change().apply(&held, 2));
    });
    let next = change().apply(&held, 2);
    let digest = per_op(rounds, || {
        black_box(topology.digest_of(&next));
    });
    let scratch = per_op(rounds, || {
        black_box(next.digest());
    });
    let topo = per_op(rounds, || {
        black_box(topology.next(next.clone()));
    }) - per_op(rounds, || {
        black_box(next.clone());
    });
    let total = per_op(rounds, || {
        let view = change().apply(&held, 2);
        black_box(topology.digest_of(&view));
        black_box(topology.next(view));
    });
    [apply, digest, scratch, topo, total]
}

fn per_op(iterations: usize, mut op: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        op(); // warm up
    }
    let started = Instant::now();
    for _ in 0..iterations {
        op();
    }
    started.elapsed().as_nanos() as f64 / 1e3 / iterations as f64
}
