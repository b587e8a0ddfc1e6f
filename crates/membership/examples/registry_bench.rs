//! The seed's registry alone, without sockets or HTTP: what a heartbeat costs the seed at 1 000,
//! 5 000 and 10 000 members (or the sizes given), with the answer encoded as the seed sends it.
//!
//!   cargo run --release -p dkv-membership --example registry_bench [MEMBERS...]
//!
//! Rows, in ns per operation:
//! * `unchanged`: a heartbeat from a node that holds the current view (the steady state);
//! * `1 change behind`: from a node one change behind (it gets that member, compact);
//! * `whole view, compact` / `whole view, JSON`: a heartbeat that gets the whole view, which is
//!   what every heartbeat cost before (JSON);
//! * `a change`: a member's state changes (one `leave` start or `ready`), the digest and the
//!   change log kept up to date;
//! * `a join`: a new node registers and the seed chooses its tokens (the most balanced of 64
//!   candidate sets against every member: O(members) per candidate), then it leaves again.
//!
//! Members register with their own tokens, so building the registry does not pay for the
//! balanced token choice of a new node (a join's cost, not a heartbeat's).

use std::hint::black_box;
use std::time::Instant;

use dkv_membership::api::RegisterRequest;
use dkv_membership::{compact, NodeId, NodeState, Registry};

/// The compact encoding's version byte (the transport's; any value serves here).
const VERSION: u8 = 2;

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 5_000, 10_000] } else { sizes };
    println!(
        "{:>8}  {:>12}  {:>16}  {:>20}  {:>17}  {:>10}  {:>10}",
        "members", "unchanged", "1 change behind", "whole view, compact", "whole view, JSON", "a change", "a join"
    );
    for n in sizes {
        let r = bench(n);
        println!(
            "{n:>8}  {:>9.0} ns  {:>13.0} ns  {:>14.0} µs  {:>14.0} µs  {:>7.0} ns  {:>7.1} ms",
            r[0],
            r[1],
            r[2] / 1e3,
            r[3] / 1e3,
            r[4],
            r[5] / 1e6
        );
    }
}

/// ns per operation of each row, in the order printed.
fn bench(n: usize) -> [f64; 6] {
    let mut r = Registry::new(0, u64::MAX / 2);
    let ids: Vec<NodeId> = (1..=n as u64).map(|i| NodeId(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect();
    for (i, &id) in ids.iter().enumerate() {
        let req = RegisterRequest {
            addr: format!("10.{}.{}.{}:8080", i >> 16, (i >> 8) & 255, i & 255),
            id: Some(id),
            tokens: Some(dkv_placement::tokens_for(id.0, 128)),
            state: Some(NodeState::Normal),
            ..Default::default()
        };
        r.register(req, 0).expect("a valid registration");
    }
    let pick = |i: usize| ids[(i.wrapping_mul(7919)) % n];

    let known = Some((r.epoch(), r.digest()));
    let unchanged = per_op(200_000, |i| {
        let a = r.heartbeat_since(pick(i), known, 1).expect("a member");
        black_box(compact::encode(&a, VERSION));
    });

    // One change: the node that holds `behind` gets that member.
    r.leave(pick(1), false, 2).expect("a member");
    let behind = known;
    let one_behind = per_op(50_000, |i| {
        let a = r.heartbeat_since(pick(i), behind, 3).expect("a member");
        black_box(compact::encode(&a, VERSION));
    });

    let rounds = (2_000_000 / n).max(5);
    let whole_compact = per_op(rounds, |i| {
        let a = r.heartbeat_since(pick(i), None, 4).expect("a member");
        black_box(compact::encode(&a, VERSION));
    });
    let whole_json = per_op(rounds, |i| {
        let a = r.heartbeat_since(pick(i), None, 5).expect("a member");
        black_box(serde_json::to_vec(&a).expect("JSON"));
    });

    // A change: one member leaves (starts to) or becomes normal again, alternately.
    let change = per_op(20_000, |i| {
        let id = pick(i / 2 + 2);
        if i % 2 == 0 {
            black_box(r.leave(id, false, 6).expect("a member"));
        } else {
            black_box(r.ready(id, 6).expect("a member"));
        }
    });
    // A join: a new address, tokens chosen by the seed; the node leaves again at once.
    let join = per_op(3, |i| {
        let req = RegisterRequest { addr: format!("10.255.255.{i}:8080"), ..Default::default() };
        let joined = r.register(req, 7).expect("a valid registration");
        black_box(r.leave(joined.id, true, 7).expect("a member"));
    });
    [unchanged, one_behind, whole_compact, whole_json, change, join]
}

fn per_op(iterations: usize, mut op: impl FnMut(usize)) -> f64 {
    for i in 0..iterations / 10 {
        op(i); // warm up
    }
    let started = Instant::now();
    for i in 0..iterations {
        op(i);
    }
    started.elapsed().as_nanos() as f64 / iterations as f64
}
