//! Writes ordered by real time whatever the clocks say. A node whose wall clock runs ahead stamps
//! its writes high; a later write through a node whose clock lags, and that has not seen the
//! earlier write, would be stamped lower and lose to it under plain last-write-wins. Replicas that
//! hold a newer version answer "superseded", and the coordinator stamps the write above it.
//! Clocks are skewed for real, with libfaketime (Debian's `faketime`), the monotonic clock left
//! alone.

mod common;

use std::time::Duration;

use common::*;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Environment that runs a node with its wall clock shifted by `offset` (e.g. "+2s").
fn clock(offset: &str) -> [(&'static str, String); 4] {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "libfaketime is needed for this test: apt-get install faketime"
    );
    [
        ("LD_PRELOAD", LIBFAKETIME.to_string()),
        ("FAKETIME", offset.to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ("FAKETIME_NO_CACHE", "1".to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_an_acknowledged_one_wins_when_its_coordinator_lags() {
    // No hints, no anti-entropy: the lagging node learns of the earlier write only through the
    // "superseded" answers to its own.
    let flags = ["--max-hints", "0", "--anti-entropy-interval", "0s"];
    let mut c = Cluster::start_durable(0, &flags, "60s").await;
    let ahead = clock("+3s");
    let env: Vec<(&str, &str)> = ahead.iter().map(|(k, v)| (*k, v.as_str())).collect();
    c.add_node_with_env(&env);
    c.add_node();
    c.add_node();
    c.wait_normal(3).await;

    // Node 2 is down (killed, so nothing of v1 waits in its sockets) while v1 is written
    // through node 0, whose clock is 3 s ahead: nodes 0 and 1 acknowledge it (W = 2).
    c.kill_node(2).await;
    c.client(0).put(b"k", "v1").await.expect("v1 through the node ahead");
    c.restart_node(2);
    c.wait_normal(3).await;
    eventually(Duration::from_secs(10), "node 2 to serve", || async { c.client(2).json("/health").await.ok() }).await;
    assert!(c.local_entry(2, b"k").await.is_none(), "node 2 must not have seen v1");

    // v2 starts after v1 was acknowledged, through node 2, whose clock is 3 s behind node 0's.
    c.client(2).put(b"k", "v2").await.expect("v2 through the lagging node");
    for i in 0..3 {
        // A node may still be backing off its connection to the restarted one: poll for an answer.
        let body = eventually(Duration::from_secs(10), "a read with r=all", || async {
            let (status, body) = c.client(i).raw(http::Method::GET, "/get?key=k&r=all", None).await.ok()?;
            (status == http::StatusCode::OK).then_some(body)
        })
        .await;
        assert_eq!(&body[..], b"v2", "read through node {i}");
    }
    let restamped = c.client(2).json("/stats").await.unwrap()["requests"]["restamped"].as_u64().unwrap();
    assert!(restamped >= 1, "node 2 stamped its write again above v1");
}
