//! Tests of the node's side of membership: which offered views are installed, what a change
//! logs, refresh notices coalesced, and heartbeat deadlines counted in ticks.

use dkv_membership::NodeState;

use super::*;
use crate::testing;

fn with_epoch(node: &Node, epoch: u64, leaving: bool) -> View {
    let mut v = node.topology().view.clone();
    v.epoch = epoch;
    if leaving {
        v.nodes[1].state = NodeState::Leaving;
    }
    v
}

#[test]
fn a_heartbeat_waits_the_ticks_that_cover_the_request_timeout() {
    let s = Duration::from_secs;
    assert_eq!(ticks_within(s(5), s(5)), 1, "the defaults: until the next tick");
    assert_eq!(ticks_within(s(5), s(1)), 5);
    assert_eq!(ticks_within(s(5), s(2)), 3, "at least the timeout: rounded up");
    assert_eq!(ticks_within(s(1), s(5)), 1, "at least one tick");
    assert_eq!(ticks_within(Duration::ZERO, s(1)), 1);
    assert_eq!(ticks_within(s(5), Duration::from_millis(100)), 50);
    assert_eq!(ticks_within(Duration::MAX, Duration::from_nanos(1)), u32::MAX);
}

#[test]
fn what_changed_names_who_came_went_and_moved_and_stops_at_a_bound() {
    let member = |id: u64, state| dkv_membership::Member {
        id: NodeId(id),
        addr: format!("h:{id}"),
        tokens: vec![id].into(),
        state,
        last_seen_ms: 0,
    };
    let old = View { epoch: 1, nodes: vec![member(1, NodeState::Normal), member(2, NodeState::Joining)] };
    let new = View { epoch: 2, nodes: vec![member(2, NodeState::Normal), member(3, NodeState::Joining)] };
    assert_eq!(what_changed(&old, &new), "h:2=normal,+h:3=joining,-h:1");
    let many = View { epoch: 3, nodes: (10..30).map(|i| member(i, NodeState::Joining)).collect() };
    let line = what_changed(&new, &many);
    assert!(line.ends_with(" and 14 more"), "{line}");
    assert_eq!(line.matches(',').count(), CHANGES_LOGGED - 1, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_view_never_replaces_a_newer_one() {
    let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
    let node = &nodes[0].node;
    assert!(node.adopt(with_epoch(node, 3, true)), "newer, placement changed");
    // A heartbeat answer of epoch 2, received before the refresh above, arrives after it.
    assert!(!node.adopt(with_epoch(node, 2, false)));
    assert_eq!(node.epoch(), 3);
    assert_eq!(node.topology().view.nodes[1].state, NodeState::Leaving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_adopts_leave_the_newest_view() {
    let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
    let node = nodes[0].node.clone();
    let views: Vec<View> = (2..200).map(|e| with_epoch(&node, e, e % 2 == 0)).collect();
    let tasks: Vec<_> = views
        .into_iter()
        .rev()
        .map(|v| {
            let node = node.clone();
            tokio::spawn(async move { node.adopt(v) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(node.epoch(), 199);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_seed_s_older_view_replaces_ours_after_reregistering() {
    let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
    let node = &nodes[0].node;
    let epoch = || node.epoch();
    node.adopt(with_epoch(node, 9, false));
    assert_eq!(epoch(), 9);
    // The seed restarted and rebuilt the membership at epoch 4.
    assert!(!node.adopt(with_epoch(node, 4, true)), "not from a heartbeat");
    assert_eq!(epoch(), 9);
    assert!(node.adopt_after_reregistering(with_epoch(node, 4, true), 9));
    assert_eq!(epoch(), 4);
    // An answer to a re-registration made at epoch 4 that arrives after we moved on: too late.
    node.adopt(with_epoch(node, 5, false));
    assert_eq!(epoch(), 5);
    assert!(!node.adopt_after_reregistering(with_epoch(node, 3, false), 4));
    assert_eq!(epoch(), 5);
}

/// A seed that counts heartbeats and answers each with epoch 7 and no view (so the node's
/// epoch stays where it is and every refresh asks again). It speaks HTTP only: the node's
/// heartbeats fall back to HTTP after the transport's handshake is refused.
async fn counting_seed(beats: Arc<std::sync::atomic::AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let heartbeat = move || async move {
        beats.fetch_add(1, Ordering::SeqCst);
        let (digest, nodes, changes, now_ms, clock) = (None, None, None, None, None);
        axum::Json(dkv_membership::api::HeartbeatAnswer { epoch: 7, digest, nodes, changes, now_ms, clock })
    };
    let app = axum::Router::new().route("/heartbeat", axum::routing::post(heartbeat));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_that_come_together_make_one_fetch() {
    let beats = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Notices wait a tenth of this: 300 ms, ample for the next two to come in the wait.
    let heartbeat_interval = Duration::from_secs(3);
    let seed = counting_seed(beats.clone()).await;
    let config = crate::config::NodeConfig { seed, heartbeat_interval, ..testing::config() };
    let nodes = testing::cluster(&[NodeState::Normal], config).await;
    let node = &nodes[0].node;
    let started = Instant::now();
    let first = tokio::spawn({
        let node = node.clone();
        async move { node.refresh_noticed(2).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while node.noticed.load(Ordering::SeqCst) != 2 {
        assert!(std::time::Instant::now() < deadline, "the first notice never waited");
        tokio::task::yield_now().await;
    }
    node.refresh_noticed(4).await;
    node.refresh_noticed(3).await;
    first.await.unwrap();
    assert_eq!(beats.load(Ordering::SeqCst), 1, "three notices in one wait: one fetch");
    assert!(started.elapsed() >= heartbeat_interval / NOTICE_WAIT_PER_INTERVAL, "fetched without waiting");
    node.refresh_noticed(5).await;
    assert_eq!(beats.load(Ordering::SeqCst), 2, "a notice after the fetch: another");
    node.refresh_noticed(1).await;
    assert_eq!(beats.load(Ordering::SeqCst), 2, "an epoch we hold already: none");
    assert_eq!(node.noticed.load(Ordering::SeqCst), 0, "nothing left waiting");
}

/// A seed that speaks the transport: it notes when each heartbeat arrives, answers the first
/// after `first` (never if `None`), and the others at once, with the node's own epoch and no
/// view.
struct SlowFirst {
    arrived: std::sync::Mutex<Vec<std::time::Instant>>,
    epoch: u64,
    first: Option<Duration>,
}

impl dkv_transport::Handler for SlowFirst {
    fn handle(
        &self,
        _kind: u8,
        _body: bytes::Bytes,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, dkv_transport::Refusal>> + Send {
        let first = {
            let mut arrived = self.arrived.lock().unwrap();
            arrived.push(std::time::Instant::now());
            arrived.len() == 1
        };
        let (digest, nodes, changes, now_ms, clock) = (None, None, None, None, None);
        let answer = HeartbeatAnswer { epoch: self.epoch, digest, nodes, changes, now_ms, clock };
        let wait = self.first;
        async move {
            match (first, wait) {
                (true, Some(wait)) => tokio::time::sleep(wait).await,
                (true, None) => std::future::pending().await,
                (false, _) => {}
            }
            Ok(dkv_membership::compact::encode(&answer, crate::transport::seed::VERSION))
        }
    }
}

/// When the first three heartbeats of a node reach a seed whose first answer takes `first`.
async fn heartbeats_after_a_slow_one(
    heartbeat_interval: Duration,
    request_timeout: Duration,
    first: Option<Duration>,
) -> Vec<std::time::Instant> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seed = listener.local_addr().unwrap().to_string();
    let config = crate::config::NodeConfig { seed, heartbeat_interval, request_timeout, ..testing::config() };
    let nodes = testing::cluster(&[NodeState::Normal], config).await;
    let node = nodes[0].node.clone();
    let handler = Arc::new(SlowFirst { arrived: Default::default(), epoch: node.epoch(), first });
    let server = Arc::new(dkv_transport::ServerConfig {
        auth: dkv_transport::Auth { cluster: node.config.cluster_name.clone(), secret: None },
        max_frame: 1 << 20,
        max_answer: 1 << 20,
        max_concurrent: 16,
        max_request_time: request_timeout * 3,
        handshake_timeout: request_timeout,
    });
    let (stop, stopped) = watch::channel(false);
    tokio::spawn({
        let (handler, stopped) = (handler.clone(), stopped.clone());
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(dkv_transport::serve(stream, handler.clone(), server.clone(), stopped.clone()));
            }
        }
    });
    let beating = tokio::spawn(heartbeat_loop(node, stopped));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handler.arrived.lock().unwrap().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "heartbeats stopped after the hung one");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send_replace(true);
    beating.await.unwrap();
    let arrived = handler.arrived.lock().unwrap().clone();
    arrived
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_without_an_answer_is_given_up_at_the_tick_after_the_timeout_and_the_next_leaves_then() {
    // Given up at the third tick (1.2 s, the first at least the timeout), where the next
    // heartbeat leaves at once rather than a tick later (1.6 s).
    let (heartbeat_interval, request_timeout) = (Duration::from_millis(400), Duration::from_secs(1));
    let arrived = heartbeats_after_a_slow_one(heartbeat_interval, request_timeout, None).await;
    let (gap, then) = (arrived[1] - arrived[0], arrived[2] - arrived[1]);
    assert!(gap >= request_timeout, "the hung heartbeat given up after {gap:?}, before the timeout");
    assert!(
        gap < heartbeat_interval * 3 + heartbeat_interval * 3 / 4,
        "the next heartbeat left {gap:?} after the hung one"
    );
    assert!(then >= heartbeat_interval / 2, "answered heartbeats an interval apart: {then:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_answered_after_a_tick_is_followed_by_the_next_at_once() {
    // Answered 1.3 s after it left, a tick (1 s) having passed: the next leaves with the
    // answer, not at the next tick (2 s).
    let (heartbeat_interval, request_timeout) = (Duration::from_secs(1), Duration::from_secs(5));
    let first = Duration::from_millis(1300);
    let arrived = heartbeats_after_a_slow_one(heartbeat_interval, request_timeout, Some(first)).await;
    let gap = arrived[1] - arrived[0];
    assert!(gap >= first, "the second heartbeat left {gap:?} after the first, before its answer");
    assert!(gap < first + Duration::from_millis(400), "the second heartbeat left {gap:?} after the first");
}

#[test]
fn choose_takes_newer_views_and_older_ones_only_to_replace_the_view_we_reregistered_with() {
    let v = |epoch, leaving| {
        let m = |id, state| dkv_membership::Member {
            id: NodeId(id),
            addr: format!("127.0.0.1:{id}"),
            tokens: vec![id].into(),
            state,
            last_seen_ms: 0,
        };
        let second = if leaving { NodeState::Leaving } else { NodeState::Normal };
        View { epoch, nodes: vec![m(1, NodeState::Normal), m(2, second)] }
    };
    let current = v(5, false);
    assert!(choose(&current, &v(6, false), None), "newer");
    assert!(!choose(&current, &v(5, false), None), "the same");
    assert!(choose(&current, &v(5, true), None), "same epoch, our own change");
    assert!(!choose(&current, &v(4, true), None), "older");
    assert!(choose(&current, &v(4, true), Some(5)), "older, from the restarted seed");
    assert!(!choose(&current, &v(4, true), Some(3)), "older, but we moved on since re-registering");
    assert!(!choose(&current, &v(5, false), Some(5)), "nothing to change");
}

/// A joining node the seed expired while it copied, and took back: the writes of its absence
/// did not reach it, so the join's end makes it complete for nothing until a round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_the_seed_expired_midway_ends_complete_for_nothing() {
    let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
    let node = &nodes[0].node;
    let mine = (0..u64::MAX).step_by(1 << 40).find(|&h| node.topology().is_read_replica(node.me, h)).unwrap();
    for expired in [false, true] {
        node.set_life(crate::life::state::Life::Joining);
        node.join_began();
        if expired {
            node.registered_again();
        }
        node.joined();
        node.set_life(crate::life::state::Life::Normal);
        assert_eq!(node.settled_for(mine), !expired, "expired midway: {expired}");
    }
}

/// What a node keeps per peer goes with the peer: each in-memory node that joins and leaves has
/// a new id, and the tables kept every one for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_member_leaves_nothing_behind_in_the_per_peer_tables() {
    let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
    let (node, peer) = (&nodes[0].node, nodes[1].node.me);
    let floor = node.latencies.hedge_after(NodeId(u64::MAX));
    node.latencies.observe(peer, Duration::from_secs(1));
    assert!(node.latencies.hedge_after(peer) > floor);
    let mut view = node.topology().view.clone();
    view.epoch += 1;
    view.nodes.retain(|m| m.id != peer);
    assert!(node.adopt(view), "the peer went");
    assert_eq!(node.latencies.hedge_after(peer), floor, "its latency is forgotten");
}
