//! The membership lease (`life/lease.rs`): a node cut off from the seed, while it still reaches
//! its peers and its clients, stops coordinating before the seed could expire it, unless another
//! member is cut off too (then the seed expires neither, and both go on). Each node that loses
//! the seed here reaches it through a [`Link`] the test cuts; nothing else is cut.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};

const TTL: &str = "2s";

/// Whether node `i` says it coordinates (`/health`), if it answers.
async fn coordinating(c: &Cluster, i: usize) -> Option<bool> {
    c.client(i).json("/health").await.ok()?["coordinating"].as_bool()
}

/// The status of node `i`'s `GET /health?ready=1`.
async fn ready(c: &Cluster, i: usize) -> StatusCode {
    c.client(i).raw(Method::GET, "/health?ready=1", None).await.expect("the node answers").0
}

/// Whether the seed lists the node at `addr`.
async fn listed(c: &Cluster, addr: &str) -> bool {
    let view = c.seed_view().await.expect("the seed answers");
    view["nodes"].as_array().expect("nodes").iter().any(|m| m["addr"] == addr)
}

async fn wait_stops_coordinating(c: &Cluster, i: usize) {
    eventually(Duration::from_secs(10), &format!("node {i} to stop coordinating"), || async move {
        (coordinating(c, i).await == Some(false)).then_some(())
    })
    .await;
}

async fn wait_unlisted(c: &Cluster, addr: &str) {
    eventually(Duration::from_secs(15), &format!("the seed to expire {addr}"), || async move {
        (!listed(c, addr).await).then_some(())
    })
    .await;
}

/// One node loses the seed. Before the seed expires it, it refuses every request it would
/// coordinate (503, saying why), while the others go on. Expired, then back in reach of the
/// seed, it returns and serves every key written before and during its absence. Without the
/// lease it went on coordinating with its old view (and two such nodes acknowledged writes to
/// each other that the members of the new view never saw).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_seed_alone_stops_coordinating_before_the_seed_expires_it() {
    let mut c = Cluster::start_full(2, &[], TTL).await;
    let link = Link::start(&c.seed.addr).await;
    let cut_off = c.add_node_via(&link.addr.clone(), &[]);
    c.wait_normal(3).await;
    let addr = c.nodes[cut_off].addr.clone();
    assert_eq!(coordinating(&c, cut_off).await, Some(true));
    let before = dataset("l_", 60);
    write_all(&c, &[0, 1, cut_off], &before).await;

    assert_eq!(ready(&c, cut_off).await, StatusCode::OK);
    link.cut();
    wait_stops_coordinating(&c, cut_off).await;
    assert!(listed(&c, &addr).await, "the node stopped only after the seed had expired it");
    // A readiness check sends clients elsewhere; a health check does not replace the node.
    assert_eq!(ready(&c, cut_off).await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(c.client(cut_off).json("/health").await.is_ok(), "a normal member, still healthy");
    let status = dkv().args(["status", "--node", &c.nodes[0].addr]).output().expect("run dkv status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&addr) && status.contains(" CUT ") && status.contains("1 cut off from the seed"),
        "{status}"
    );
    let err = c.client(cut_off).put(b"l_refused", b"x".to_vec()).await.expect_err("a write it would coordinate");
    assert!(err.to_string().contains("503") && err.to_string().contains("no answer from the seed"), "{err}");
    let err = c.client(cut_off).get(b"l_0").await.expect_err("a read it would coordinate");
    assert!(err.to_string().contains("no answer from the seed"), "{err}");
    c.client(0).put(b"l_during", b"the others go on".to_vec()).await.expect("a write through another node");

    wait_unlisted(&c, &addr).await;
    let during = dataset("l_during_", 40);
    write_all(&c, &[0, 1], &during).await;

    link.mend();
    c.wait_normal(3).await;
    eventually(Duration::from_secs(10), "the node to coordinate again", || async {
        (coordinating(&c, cut_off).await == Some(true)).then_some(())
    })
    .await;
    let all: Vec<(String, String)> = before.into_iter().chain(during).collect();
    let bad = missing(&c, &[0, 1, cut_off], &all).await;
    assert!(bad.is_empty(), "missing once the node was back: {bad:?}");
    assert!(c.client(cut_off).get(b"l_refused").await.unwrap().is_none(), "the refused write changed nothing");
}

/// Two nodes lose the seed together, past its TTL: the seed expires neither (they may hold the
/// only copies of writes they took), and both go on coordinating, since each hears from the
/// other that it is cut off too. When one reaches the seed again, the other is alone: it stops
/// coordinating within the half TTL the seed then gives it, before its expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_cut_off_from_the_seed_go_on_and_the_last_one_stops_before_its_expiry() {
    let mut c = Cluster::start_full(3, &[], TTL).await;
    let (a, b) = (Link::start(&c.seed.addr).await, Link::start(&c.seed.addr).await);
    let x = c.add_node_via(&a.addr.clone(), &[]);
    let y = c.add_node_via(&b.addr.clone(), &[]);
    c.wait_normal(5).await;
    let data = dataset("t_", 60);
    write_all(&c, &[0, x, y], &data).await;

    a.cut();
    b.cut();
    c.wait_withheld(2).await;
    for i in [x, y] {
        assert_eq!(coordinating(&c, i).await, Some(true), "node {i}, past the TTL, with another node cut off too");
    }
    c.client(x).put(b"t_both_out", b"acknowledged".to_vec()).await.expect("a write through a node cut off");
    assert_eq!(c.client(y).get(b"t_both_out").await.unwrap().as_deref(), Some(&b"acknowledged"[..]));

    b.mend();
    wait_stops_coordinating(&c, x).await;
    assert!(listed(&c, &c.nodes[x].addr).await, "the node stopped only after the seed had expired it");
    wait_unlisted(&c, &c.nodes[x].addr.clone()).await;

    a.mend();
    c.wait_normal(5).await;
    let mut all = data;
    all.push(("t_both_out".into(), "acknowledged".into()));
    let bad = missing(&c, &[0, 1, 2, x, y], &all).await;
    assert!(bad.is_empty(), "missing once both were back: {bad:?}");
}

/// How long node `i` has gone without an answer from the seed, by its `/stats`.
async fn unheard(c: &Cluster, i: usize) -> Option<Duration> {
    c.client(i).json("/stats").await.ok()?["seed_unheard_ms"].as_u64().map(Duration::from_millis)
}

/// A node whose heartbeats are due less often than its peers' hears from them that a restarted
/// seed answers before the seed has answered it, and stops coordinating. It asks the seed at
/// once then, rather than at its next heartbeat, so it refuses requests for about a round trip to
/// the seed. The seed comes back just after the node's heartbeat was refused, so without asking
/// at once it refused requests for most of its interval (about 0.8 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_rarer_heartbeats_serves_on_across_a_seed_restart() {
    const TTL: Duration = Duration::from_secs(4);
    const SLOW: Duration = Duration::from_millis(1500);
    let mut c = Cluster::start_full(2, &[], "4s").await;
    c.node_flags = vec!["--heartbeat-interval".into(), "1500ms".into()];
    let slow = c.add_node();
    c.node_flags.clear();
    c.wait_normal(3).await;

    // Its heartbeats leave on a tick every SLOW, from the one the seed last answered.
    let read_at = tokio::time::Instant::now();
    let since = unheard(&c, slow).await.expect("the node has heard the seed");
    let first_tick = read_at - since;
    c.seed.signal(libc::SIGKILL);
    c.seed.wait_exit(Duration::from_secs(5)).await;
    // Past its own deadline (half the TTL and an interval): every node has lost the seed, so
    // each still coordinates, counting on the others' word.
    eventually(Duration::from_secs(10), "the node to go past its own deadline", || async {
        unheard(&c, slow).await.filter(|u| *u > TTL / 2 + SLOW + Duration::from_millis(300)).map(|_| ())
    })
    .await;
    assert_eq!(coordinating(&c, slow).await, Some(true), "every node lost the seed: the lease holds");

    // The seed comes back 100 ms after one of the node's ticks.
    let ticks = first_tick.elapsed().as_millis() / SLOW.as_millis() + 1;
    let back_at = first_tick + SLOW * u32::try_from(ticks).unwrap() + Duration::from_millis(100);
    tokio::time::sleep_until(back_at).await;
    c.restart_seed();
    let restarted = tokio::time::Instant::now();
    c.wait_seed().await;

    let (mut ok, mut failed) = (0u32, Vec::new());
    let mut i = 0;
    while restarted.elapsed() < SLOW + Duration::from_millis(500) {
        match c.client(slow).put(format!("r_{i}").as_bytes(), b"v".to_vec()).await {
            Ok(()) => ok += 1,
            Err(e) => failed.push((tokio::time::Instant::now(), e.to_string())),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(ok > 50, "the load ran ({ok} writes)");
    // Refused from the moment it heard the others reach the seed to the seed's answer to it.
    if let (Some(first), Some(last)) = (failed.first(), failed.last()) {
        let refusing = last.0 - first.0;
        assert!(
            refusing < SLOW / 6,
            "{} writes refused over {refusing:?}, as if until its next heartbeat: {}",
            failed.len(),
            first.1
        );
    }
    let u = unheard(&c, slow).await.expect("the node heard the seed again");
    assert!(u < SLOW * 2, "the node hears the restarted seed ({u:?} unheard)");
}

/// The epoch a node's `/health` says it is at.
async fn epoch(c: &Cluster, i: usize) -> Option<u64> {
    c.client(i).json("/health").await.ok()?["epoch"].as_u64()
}

/// A node that cannot reach the seed while the membership changes takes the new view from its
/// peers. With the seed killed a moment after a leave began, nodes that had the new view and
/// nodes that had not refused each other's calls as stale until the seed came back, and a fifth
/// to a third of all requests failed (found by a hunt, 2026-12-07); here one node loses the seed
/// (its link cut) and another joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_out_of_the_seeds_reach_takes_a_newer_view_from_its_peers() {
    // A long TTL: nobody is expired, nor does the lease stop the cut-off node, within the test.
    let mut c = Cluster::start_full(2, &[], "60s").await;
    let link = Link::start(&c.seed.addr).await;
    let behind = c.add_node_via(&link.addr.clone(), &[]);
    c.wait_normal(3).await;
    let before = epoch(&c, behind).await.expect("an epoch");
    link.cut();
    c.add_node();
    c.wait_normal(4).await;
    let now = epoch(&c, 0).await.expect("an epoch");
    assert!(now > before, "the join changed the view");
    eventually(Duration::from_secs(10), "the cut-off node at the others' epoch", || async {
        (epoch(&c, behind).await? >= now).then_some(())
    })
    .await;
    let data = dataset("pv_", 40);
    write_all(&c, &[behind], &data).await;
    let bad = missing(&c, &[0, 1, 3, behind], &data).await;
    assert!(bad.is_empty(), "written through the node out of the seed's reach: {bad:?}");
    link.mend();
}

/// A node the seed expired while it was cut off from it takes no view from its peers: theirs no
/// longer lists it, and taken, it would have it hand its keys off and drop its store. It learns
/// that it was expired from the seed, once it reaches it (found by review, 2026-12-07).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_seed_expired_takes_no_view_without_it_from_its_peers() {
    let mut c = Cluster::start_full(2, &[], TTL).await;
    let link = Link::start(&c.seed.addr).await;
    let cut_off = c.add_node_via(&link.addr.clone(), &[]);
    c.wait_normal(3).await;
    let addr = c.nodes[cut_off].addr.clone();
    write_all(&c, &[0], &dataset("pn_", 30)).await;
    c.wait_total_keys(&[cut_off], 30).await;
    let before = epoch(&c, cut_off).await.expect("an epoch");
    link.cut();
    wait_unlisted(&c, &addr).await;
    // Its lease asks its peers, whose view is newer: it asks them for it, and refuses it.
    eventually(Duration::from_secs(10), "a peer's view without the node refused", || async {
        let stats = c.client(cut_off).json("/stats").await.ok()?;
        (stats["requests"]["peer_views_not_listing"].as_u64()? >= 1).then_some(())
    })
    .await;
    assert_eq!(epoch(&c, cut_off).await, Some(before), "it kept the view that lists it");
    assert_eq!(c.keys_on(cut_off).await, 30, "it kept its store");
    link.mend();
    c.wait_normal(3).await;
}
