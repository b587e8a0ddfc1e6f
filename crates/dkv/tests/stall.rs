//! Gray failures: a replica that is a member, whose sockets still accept, but that answers
//! nothing (paused with SIGSTOP). Reads and forwards ask another replica once the stalled one
//! takes much longer than it usually does, so requests through the other nodes finish in
//! milliseconds, not after the request timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Requests through healthy nodes while one replica is paused: p99 must stay under this, far
/// below the 5 s request timeout (the hedge waits 20 ms, or a few times a peer's usual latency).
const BOUND: Duration = Duration::from_millis(750);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_through_other_nodes_do_not_wait_for_a_paused_replica() {
    // 5 nodes with N=3: some keys have the paused node among their replicas, and some requests
    // are forwarded to it first. A long node TTL keeps it a member: a gray failure, not a crash.
    let flags = ["--request-timeout", "5s", "--hedge-after", "20ms"];
    let c = Cluster::start_full(5, &flags, "120s").await;
    let keys: Vec<String> = (0..120).map(|i| format!("stall-{i}")).collect();
    for k in &keys {
        c.client(0).put(k.as_bytes(), "before").await.expect("put before the pause");
    }
    c.nodes[4].signal(libc::SIGSTOP);
    let mut took = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let via = c.client(i % 4);
        let started = Instant::now();
        let got = via.get(k.as_bytes()).await.expect("get while a replica is paused");
        took.push(started.elapsed());
        assert_eq!(got.as_deref(), Some(&b"before"[..]), "{k}");
        let started = Instant::now();
        via.put(k.as_bytes(), "during").await.expect("put while a replica is paused");
        took.push(started.elapsed());
    }
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    let hedged: u64 = {
        let mut n = 0;
        for i in 0..4 {
            n += c.client(i).json("/stats").await.unwrap()["requests"]["hedged"].as_u64().unwrap();
        }
        n
    };
    c.nodes[4].signal(libc::SIGCONT);
    eprintln!(
        "{} requests with a paused replica: p50 {:?}, p99 {p99:?}, max {:?}, {hedged} hedged",
        took.len(),
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(p99 < BOUND, "p99 {p99:?} with a paused replica (bound {BOUND:?})");
    assert!(hedged > 0, "some requests must have asked another replica");
    // Nothing acknowledged was lost: every write reads back, also once the node is back.
    for k in &keys {
        let got = c.client(4).get(k.as_bytes()).await.expect("get after the pause");
        assert_eq!(got.as_deref(), Some(&b"during"[..]), "{k}");
    }
}
