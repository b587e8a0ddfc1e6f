use super::*;

const TTL: u64 = 1_000;

fn reg(addr: &str) -> RegisterRequest {
    RegisterRequest { addr: addr.into(), ..Default::default() }
}

/// The view of a seed with two `normal` members, at h:1 and h:2 (their ids after it).
fn two_normal_members() -> (View, NodeId, NodeId) {
    let mut old = Registry::new(0, TTL);
    let a = old.register(reg("h:1"), 0).unwrap().id;
    let b = old.register(reg("h:2"), 0).unwrap().id;
    old.ready(b, 0).unwrap();
    (old.view(), a, b)
}

/// What a node of `view` presents when it comes back to a restarted seed.
fn returning(view: &View, id: NodeId, addr: &str) -> RegisterRequest {
    let me = view.member(id).unwrap().clone();
    RegisterRequest {
        id: Some(me.id),
        tokens: Some(me.tokens.to_vec()),
        state: Some(me.state),
        view: Some(view.clone()),
        ..reg(addr)
    }
}

#[test]
fn first_node_is_normal_later_ones_join() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("10.0.0.1:8080"), 0).unwrap();
    let b = r.register(reg("10.0.0.2:8080"), 0).unwrap();
    let view = r.view();
    assert_eq!(view.member(a.id).unwrap().state, NodeState::Normal);
    assert_eq!(view.member(b.id).unwrap().state, NodeState::Joining);
    assert_eq!(view.member(a.id).unwrap().tokens.len(), DEFAULT_VNODES);
    assert_eq!(view.epoch, 2);
    r.ready(b.id, 1).unwrap();
    assert_eq!(r.view().member(b.id).unwrap().state, NodeState::Normal);
    assert_eq!(r.epoch(), 3);
}

#[test]
fn heartbeat_does_not_bump_epoch_and_unknown_id_is_rejected() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap();
    let e = r.epoch();
    r.heartbeat(a.id, 10).unwrap();
    assert_eq!(r.epoch(), e);
    assert_eq!(r.heartbeat(NodeId(42), 10), Err(RegistryError::UnknownNode(NodeId(42))));
}

#[test]
fn expiry_removes_silent_members_and_reregistration_keeps_identity() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap();
    let tokens = r.view().member(a.id).unwrap().tokens.clone();
    assert!(r.expire(TTL).removed.is_empty(), "exactly TTL is still alive");
    assert_eq!(r.expire(TTL + 1).removed.len(), 1, "a member alone expires");
    assert!(r.view().nodes.is_empty());
    let again =
        RegisterRequest { id: Some(a.id), tokens: Some(tokens.to_vec()), state: Some(NodeState::Normal), ..reg("h:1") };
    let back = r.register(again, TTL + 2).unwrap();
    assert_eq!(back.id, a.id);
    assert_eq!(r.view().member(a.id).unwrap().tokens, tokens);
}

#[test]
fn restarted_seed_adopts_a_returning_nodes_view_once() {
    let (view, a, b) = two_normal_members();

    let mut fresh = Registry::new(5_000, TTL);
    let answer = fresh.register(returning(&view, a, "h:1"), 5_001).unwrap();
    assert!(answer.seed_fresh, "the node is told its view may be the seed's only because it presented it");
    assert!(fresh.view().same_placement(&view), "whole membership rebuilt from one node");
    assert_eq!(fresh.epoch(), view.epoch, "no spurious epoch change");
    fresh.heartbeat(b, 5_002).expect("the other node is known without re-registering");

    // Too late: an old view is not adopted after one TTL.
    let mut late = Registry::new(0, TTL);
    let answer = late.register(RegisterRequest { id: Some(a), view: Some(view), ..reg("h:1") }, TTL + 1).unwrap();
    assert_eq!(late.view().nodes.len(), 1);
    assert!(!answer.seed_fresh && !late.fresh(TTL + 1));
}

/// A seed restarted without its record adopts an old view first (a node stopped for a while
/// came back first), then a newer one. The newer one is the later word: members of the old view
/// it lacks left or were expired in between. Those only the old view brought go; one that came
/// back itself, `normal` in the old view, missed the writes since it was expired, and joins again.
#[test]
fn a_newer_adopted_view_drops_members_an_older_one_brought_back() {
    let mut r = Registry::new(0, TTL);
    let ids: Vec<NodeId> = (1..=5).map(|i| r.register(reg(&format!("h:{i}")), 0).unwrap().id).collect();
    for &id in &ids[1..] {
        r.ready(id, 0).unwrap();
    }
    let old = r.view();
    // Since: node 5 left, node 4 expired (alone silent), node 3 is leaving.
    r.leave(ids[4], false, 1).unwrap();
    r.leave(ids[4], true, 2).unwrap();
    for &id in &ids[..3] {
        r.heartbeat(id, 3 * TTL).unwrap();
    }
    assert_eq!(r.expire(3 * TTL + 1).removed.into_iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[3]]);
    r.leave(ids[2], false, 3 * TTL + 2).unwrap();
    let newer = r.view();

    let mut fresh = Registry::new(10 * TTL, TTL);
    fresh.register(returning(&old, ids[0], "h:1"), 10 * TTL + 1).unwrap();
    assert_eq!(fresh.view().nodes.len(), 5, "the old view, whole");
    // Node 4 comes back itself, before the newer view: as it was, to a fresh seed.
    fresh.register(returning(&old, ids[3], "h:4"), 10 * TTL + 2).unwrap();
    fresh.register(returning(&newer, ids[1], "h:2"), 10 * TTL + 3).unwrap();
    let view = fresh.view();
    let state = |id: NodeId| view.member(id).map(|m| m.state);
    assert_eq!(state(ids[4]), None, "node 5 left: brought back by the old view alone, it goes");
    assert_eq!(state(ids[3]), Some(NodeState::Joining), "node 4 was expired: back itself, it joins again");
    assert_eq!(state(ids[2]), Some(NodeState::Leaving), "node 3 takes the newer view's state");
    assert_eq!((state(ids[0]), state(ids[1])), (Some(NodeState::Normal), Some(NodeState::Normal)));
    assert!(view.epoch > newer.epoch, "not the newer view: an epoch past it");
}

#[test]
fn new_process_on_an_old_address_replaces_the_old_member() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap();
    let b = r.register(reg("h:1"), 1).unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(r.view().nodes.len(), 1);
    assert_eq!(r.view().nodes[0].id, b.id);
}

#[test]
fn leave_then_done_removes_and_bad_input_changes_nothing() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap();
    r.leave(a.id, false, 1).unwrap();
    assert_eq!(r.view().member(a.id).unwrap().state, NodeState::Leaving);
    r.leave(a.id, true, 2).unwrap();
    assert!(r.view().nodes.is_empty());
    r.leave(a.id, true, 3).expect("finishing twice is fine");

    let e = r.epoch();
    for bad in ["", "nohost", ":80", "h:0", "h:99999", "h:x"] {
        assert!(matches!(r.register(reg(bad), 4), Err(RegistryError::BadRequest(_))), "{bad}");
    }
    let long = format!("{}:80", "h".repeat(MAX_ADDR_BYTES));
    let Err(RegistryError::BadRequest(why)) = r.register(reg(&long), 4) else { panic!("a long address taken") };
    assert!(why.contains("over") && why.len() < 200, "{why}");
    let too_many = RegisterRequest { vnodes: Some(MAX_VNODES + 1), ..reg("h:2") };
    assert!(r.register(too_many, 4).is_err());
    assert_eq!(r.epoch(), e);
    assert!(r.view().nodes.is_empty());
    assert!(r.register(reg(&format!("{}:80", "h".repeat(253))), 4).is_ok(), "the longest host name");
}

/// A leave that found no member left to take its keys is taken back: the member is `normal`
/// again. Withdrawing from a member that is not leaving changes nothing.
#[test]
fn a_leave_withdrawn_makes_the_member_normal_again() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap().id;
    r.ready(a, 0).unwrap();
    let e = r.epoch();
    r.withdraw_leave(a, 1).expect("a member that is not leaving");
    assert_eq!(r.epoch(), e, "nothing changed");
    r.leave(a, false, 2).unwrap();
    r.withdraw_leave(a, 3).unwrap();
    assert_eq!(r.view().member(a).unwrap().state, NodeState::Normal);
    assert!(r.epoch() > e, "a change the members learn of");
    assert!(matches!(r.withdraw_leave(NodeId(99), 4), Err(RegistryError::UnknownNode(_))));
}

/// A second process with a member's id, at another address, is refused while the member is
/// heard from at its own; once the member has been silent for half a TTL (a node started again
/// at a new address), the registration moves it.
#[test]
fn a_second_process_with_a_members_id_is_refused_while_the_member_is_heard_from() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap();
    r.ready(a.id, 0).unwrap();
    let tokens = r.view().member(a.id).unwrap().tokens.to_vec();
    let copy = |addr: &str| RegisterRequest {
        id: Some(a.id),
        tokens: Some(tokens.clone()),
        state: Some(NodeState::Normal),
        ..reg(addr)
    };
    let second = copy("h:9");
    r.heartbeat(a.id, 400).unwrap();
    let e = r.epoch();
    match r.register(second.clone(), 800) {
        Err(RegistryError::InUse { id, addr, unseen_ms: 400, half_ttl_ms: 500 }) => {
            assert_eq!((id, addr.as_str()), (a.id, "h:1"));
        }
        other => panic!("a second process taken: {other:?}"),
    }
    assert_eq!((r.epoch(), r.view().member(a.id).unwrap().addr.as_str()), (e, "h:1"), "nothing changed");
    // The first one registering again, at its own address, is not a second process.
    r.register(copy("h:1"), 850).expect("the member itself");
    // Silent for over half a TTL: the node moved.
    let moved = r.register(second, 1_351).expect("a node started again at a new address");
    assert_eq!(moved.id, a.id);
    assert_eq!(r.view().member(a.id).unwrap().addr, "h:9");
}

/// An address a fresh seed took from a view another node presented is not the member's own
/// word: the member's heartbeats (which carry no address) keep it alive, and its registration
/// from the address it moved to is taken, not refused for good. And a registration refused
/// changes nothing, not even by the view it presents.
#[test]
fn an_address_from_another_nodes_view_does_not_keep_the_member_out() {
    let (old, a, b) = two_normal_members();
    let mut r = Registry::new(10_000, TTL);
    // b presents a view that lists a at h:1; a has moved to h:7 since.
    let b_back = RegisterRequest {
        id: Some(b),
        tokens: Some(old.member(b).unwrap().tokens.to_vec()),
        state: Some(NodeState::Normal),
        view: Some(old.clone()),
        ..reg("h:2")
    };
    r.register(b_back, 10_000).unwrap();
    r.heartbeat(a, 10_100).unwrap(); // a, at h:7, heartbeats: its id alone
    let a_moved = RegisterRequest {
        id: Some(a),
        tokens: Some(old.member(a).unwrap().tokens.to_vec()),
        state: Some(NodeState::Normal),
        ..reg("h:7")
    };
    r.register(a_moved, 10_150).expect("its own word on its address");
    assert_eq!(r.view().member(a).unwrap().addr, "h:7");

    // Now h:7 is a's own: a copy at h:8 presenting a view is refused, and the view changes nothing.
    let e = r.epoch();
    let mut newer = old.clone();
    newer.epoch = e + 10;
    let copy = RegisterRequest {
        id: Some(a),
        tokens: Some(old.member(a).unwrap().tokens.to_vec()),
        state: Some(NodeState::Normal),
        view: Some(newer),
        ..reg("h:8")
    };
    assert!(matches!(r.register(copy, 10_200), Err(RegistryError::InUse { .. })));
    assert_eq!((r.epoch(), r.view().member(a).unwrap().addr.as_str()), (e, "h:7"), "nothing changed");
}

#[test]
fn a_ready_that_crossed_a_leave_leaves_the_node_leaving() {
    let mut r = Registry::new(0, TTL);
    r.register(reg("h:1"), 0).unwrap();
    let b = r.register(reg("h:2"), 0).unwrap();
    // Asked to leave during its join: the leave reaches the seed first, then the join's ready.
    r.leave(b.id, false, 1).unwrap();
    let e = r.epoch();
    r.ready(b.id, 2).unwrap();
    assert_eq!(r.view().member(b.id).unwrap().state, NodeState::Leaving);
    assert_eq!(r.epoch(), e, "nothing changed");
    assert_eq!(r.ready(NodeId(42), 3), Err(RegistryError::UnknownNode(NodeId(42))));
}

#[test]
fn nodes_of_another_cluster_are_refused() {
    let mut r = Registry::new(0, 1000).for_cluster("blue");
    let req = |cluster: Option<&str>| RegisterRequest {
        addr: "10.0.0.1:8080".into(),
        cluster: cluster.map(String::from),
        ..Default::default()
    };
    assert!(matches!(r.register(req(Some("green")), 0), Err(RegistryError::ForeignCluster { .. })));
    assert_eq!(r.epoch(), 0, "nothing changed");
    assert!(r.register(req(Some("blue")), 0).is_ok());
    assert!(r.register(req(None), 0).is_ok(), "a node that does not say is accepted");
}

#[test]
fn addresses_are_host_port_as_peers_dial_them() {
    let mut r = Registry::new(0, TTL);
    for good in ["h:1", "10.0.0.1:65535", "[::1]:8080", "kv-node-1:8080", "a:b:80"] {
        assert!(r.register(reg(good), 0).is_ok(), "{good}");
    }
    let e = r.epoch();
    for bad in
        ["h:+80", "h:080", "h:", "h:65536", "a b:80", "h\n:80", "h\u{e9}:80", "\t:80", "h:8 0", "http://h:80", "u@h:80"]
    {
        assert!(matches!(r.register(reg(bad), 1), Err(RegistryError::BadRequest(_))), "{bad:?} was accepted");
    }
    assert_eq!(r.epoch(), e, "refused registrations change nothing");
}

#[test]
fn a_presented_view_near_the_end_of_the_epochs_is_refused_not_overflowed() {
    // A fresh seed adopts a newer presented view; one at u64::MAX used to make the next
    // membership change overflow the epoch (a panic in a debug build).
    let mut fresh = Registry::new(0, TTL);
    let member = |id: u64, addr: &str| Member {
        id: NodeId(id),
        addr: addr.into(),
        tokens: [id].into(),
        state: NodeState::Normal,
        last_seen_ms: 0,
    };
    let huge = View { epoch: u64::MAX, nodes: vec![member(7, "h:7")] };
    let req = RegisterRequest { view: Some(huge), ..reg("h:1") };
    assert!(matches!(fresh.register(req, 1), Err(RegistryError::BadRequest(_))));
    assert_eq!((fresh.epoch(), fresh.view().nodes.len()), (0, 0), "nothing adopted");

    let largest = View { epoch: MAX_EPOCH, nodes: vec![member(7, "h:7")] };
    fresh.register(RegisterRequest { view: Some(largest), ..reg("h:1") }, 2).expect("the largest epoch is fine");
    assert_eq!(fresh.epoch(), MAX_EPOCH + 1, "adopted, then bumped by the new member");
    fresh.leave(NodeId(7), true, 3).unwrap();
    assert_eq!(fresh.epoch(), MAX_EPOCH + 2);
}

#[test]
fn a_presented_view_with_a_member_the_seed_would_refuse_is_refused() {
    let member = |addr: &str, tokens: Vec<u64>| Member {
        id: NodeId(9),
        addr: addr.into(),
        tokens: tokens.into(),
        state: NodeState::Normal,
        last_seen_ms: 0,
    };
    for bad in [
        member("h\n:9", vec![1]),
        member("h:0", vec![1]),
        member("h:9", vec![]),
        member("h:9", vec![0; MAX_VNODES + 1]),
    ] {
        let mut fresh = Registry::new(0, TTL);
        let req = RegisterRequest { view: Some(View { epoch: 5, nodes: vec![bad.clone()] }), ..reg("h:1") };
        assert!(matches!(fresh.register(req, 1), Err(RegistryError::BadRequest(_))), "{bad:?}");
        assert!(fresh.view().nodes.is_empty(), "nothing adopted from {bad:?}");
    }
}

/// What a node that holds `view` sends.
fn holds(view: &View) -> Option<(u64, Digest)> {
    Some((view.epoch, view.digest()))
}

#[test]
fn a_heartbeat_from_a_node_with_the_current_view_gets_no_view() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap();
    r.register(reg("h:2"), 0).unwrap();
    let view = r.view();
    let answer = r.heartbeat_since(a.id, holds(&view), 10).unwrap();
    assert_eq!((answer.epoch, answer.digest), (view.epoch, Some(view.digest())));
    assert_eq!((answer.nodes, answer.changes), (None, None), "unchanged");
    assert_eq!(r.view().member(a.id).unwrap().last_seen_ms, 10, "the heartbeat counts");
    assert_eq!(r.epoch(), view.epoch);

    // Without a view, or with one the seed never had: the whole view.
    let full = r.heartbeat_since(a.id, None, 11).unwrap();
    assert!(full.nodes.as_ref().is_some_and(|n| View { epoch: 0, nodes: n.clone() }.same_placement(&view)));
    let other = r.heartbeat_since(a.id, Some((view.epoch, Digest(view.digest().0 ^ 1))), 12).unwrap();
    assert!(other.nodes.is_some() && other.changes.is_none(), "same epoch, another view");
    let ahead = r.heartbeat_since(a.id, Some((view.epoch + 5, view.digest())), 12).unwrap();
    assert!(ahead.nodes.is_some(), "a view from ahead of this seed (it restarted): the whole view");
    assert_eq!(r.heartbeat_since(NodeId(42), holds(&view), 13), Err(RegistryError::UnknownNode(NodeId(42))));
}

#[test]
fn a_node_behind_gets_the_changes_and_arrives_at_the_current_view() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap();
    let b = r.register(reg("h:2"), 0).unwrap();
    let c = r.register(reg("h:3"), 0).unwrap();
    let old = r.view();
    r.ready(b.id, 1).unwrap();
    r.register(reg("h:4"), 1).unwrap();
    r.leave(c.id, true, 2).unwrap();
    let answer = r.heartbeat_since(a.id, holds(&old), 3).unwrap();
    assert_eq!(answer.nodes, None);
    let changes = answer.changes.clone().expect("changes");
    assert_eq!(changes.since, old.epoch);
    assert_eq!(changes.members.len(), 2, "b became normal, h:4 joined: {changes:?}");
    assert_eq!(changes.removed, vec![c.id]);
    let now = changes.apply(&old, answer.epoch);
    assert_eq!(now.digest(), answer.digest.unwrap());
    assert!(now.same_placement(&r.view()));
    assert_eq!(now.epoch, r.epoch());
}

#[test]
fn the_digest_is_kept_through_every_change() {
    let mut r = Registry::new(0, TTL);
    let check = |r: &Registry| assert_eq!(r.digest(), r.view().digest(), "at epoch {}", r.epoch());
    let mut ids = Vec::new();
    for i in 1..=6 {
        ids.push(r.register(reg(&format!("h:{i}")), i).unwrap().id);
        check(&r);
    }
    r.ready(ids[1], 7).unwrap();
    check(&r);
    r.heartbeat(ids[2], 8).unwrap();
    check(&r);
    r.leave(ids[3], false, 9).unwrap();
    check(&r);
    r.leave(ids[3], true, 9).unwrap();
    check(&r);
    r.register(reg("h:1"), 10).unwrap(); // a new process on an old address
    check(&r);
    let back = RegisterRequest { id: Some(ids[4]), state: Some(NodeState::Leaving), ..reg("h:5") };
    r.register(back, 11).unwrap();
    check(&r);
    for m in r.view().nodes.iter().skip(1) {
        r.heartbeat(m.id, 11 + TTL).unwrap();
    }
    assert_eq!(r.expire(12 + TTL).removed.len(), 1);
    check(&r);
}

#[test]
fn an_adopted_view_keeps_its_epoch_only_if_the_seed_ends_up_with_exactly_it() {
    let mut old = Registry::new(0, TTL);
    let a = old.register(reg("h:1"), 0).unwrap();
    old.register(reg("h:2"), 0).unwrap();
    let view = old.view();
    let back = returning(&view, a.id, "h:1");

    // A brand-new node reached the restarted seed first: the seed's membership is the presented
    // view plus that node (sent back to joining), which must not go by the view's epoch.
    let mut fresh = Registry::new(5_000, TTL);
    let newcomer = fresh.register(reg("h:9"), 5_000).unwrap();
    let answer = fresh.register(back, 5_001).unwrap();
    assert!(answer.epoch > view.epoch);
    assert!(answer.nodes.iter().any(|m| m.id == newcomer.id));
    // A node still holding the presented view learns of the newcomer at its next heartbeat.
    let other = view.nodes.iter().find(|m| m.id != a.id).unwrap().id;
    let hb = fresh.heartbeat_since(other, holds(&view), 5_002).unwrap();
    assert!(hb.nodes.is_some_and(|n| n.iter().any(|m| m.id == newcomer.id)));
}

#[test]
fn a_planned_join_registers_as_a_new_node_with_the_planned_tokens() {
    let mut r = Registry::new(0, TTL);
    let first = r.register(reg("h:1"), 0).unwrap();
    let plan = r.plan_join(&reg("h:2")).expect("a new node: tokens to choose");
    assert!(r.view().member(plan.id).is_none(), "a fresh id");
    // Chosen outside the registry; meanwhile another node joined (the plan does not know it).
    let tokens = plan.tokens();
    r.register(reg("h:3"), 1).unwrap();
    let req = RegisterRequest { id: Some(plan.id), tokens: Some(tokens.clone()), ..reg("h:2") };
    let joined = r.register(req, 2).unwrap();
    assert_eq!(joined.id, plan.id);
    let m = r.view().member(plan.id).unwrap().clone();
    assert_eq!((m.tokens.to_vec(), m.state), (tokens, NodeState::Joining), "as any new node next to a normal one");
    assert_eq!(r.digest(), r.view().digest());

    // Registrations that choose no tokens, or that the registry refuses, are not planned.
    let back = RegisterRequest { id: Some(first.id), ..reg("h:1") };
    assert!(r.plan_join(&back).is_none(), "a returning node keeps its tokens");
    assert!(r.plan_join(&RegisterRequest { tokens: Some(vec![1]), ..reg("h:4") }).is_none());
    assert!(r.plan_join(&RegisterRequest { vnodes: Some(0), ..reg("h:4") }).is_none());
    assert!(r.plan_join(&RegisterRequest { vnodes: Some(MAX_VNODES + 1), ..reg("h:4") }).is_none());
    assert!(r.plan_join(&RegisterRequest { cluster: Some("other".into()), ..reg("h:4") }).is_none());
    assert!(r.plan_join(&reg("no port")).is_none());
    assert!(r.plan_join(&RegisterRequest { vnodes: Some(16), ..reg("h:4") }).is_some_and(|p| p.tokens().len() == 16));
}

#[test]
fn a_newcomer_made_normal_by_a_restarted_seed_joins_when_the_owners_return() {
    let (view, a, b) = two_normal_members();

    // The seed restarts and a brand-new node reaches it first: alone, it is made normal.
    let mut fresh = Registry::new(5_000, TTL);
    let newcomer = fresh.register(reg("h:9"), 5_000).unwrap();
    assert_eq!(fresh.view().member(newcomer.id).unwrap().state, NodeState::Normal);

    // The old owners come back, with their view: the newcomer has copied nothing, so it joins.
    let answer = fresh.register(returning(&view, a, "h:1"), 5_001).unwrap();
    let now = fresh.view();
    assert_eq!(now.member(newcomer.id).unwrap().state, NodeState::Joining);
    assert_eq!(now.member(a).unwrap().state, NodeState::Normal);
    assert_eq!(now.member(b).unwrap().state, NodeState::Normal);
    assert!(answer.epoch > view.epoch, "a membership the presented view's epoch does not name");
    assert_eq!(fresh.digest(), now.digest());
    // A node that holds the presented view hears of the change at its next heartbeat.
    let hb = fresh.heartbeat_since(b, holds(&view), 5_002).unwrap();
    let members = hb.nodes.or(hb.changes.map(|c| c.members)).expect("the view changed");
    assert!(members.iter().any(|m| m.id == newcomer.id && m.state == NodeState::Joining));

    // It copies its ranges and reports ready, as any joining node; the next owner to come back
    // changes nothing.
    fresh.ready(newcomer.id, 5_003).unwrap();
    let again = RegisterRequest { view: None, ..returning(&view, b, "h:2") };
    fresh.register(again, 5_004).unwrap();
    assert_eq!(fresh.view().member(newcomer.id).unwrap().state, NodeState::Normal);
}

#[test]
fn an_owner_registering_with_its_id_alone_sends_the_newcomer_back_too() {
    let mut old = Registry::new(0, TTL);
    let a = old.register(reg("h:1"), 0).unwrap();
    let view = old.view();
    let mut fresh = Registry::new(5_000, TTL);
    let newcomer = fresh.register(reg("h:9"), 5_000).unwrap();
    // The owner's view is no newer than the restarted seed's (both at epoch 1): not adopted, and
    // the owner still returns as normal.
    fresh.register(returning(&view, a.id, "h:1"), 5_001).unwrap();
    assert_eq!(fresh.view().member(newcomer.id).unwrap().state, NodeState::Joining);
    assert_eq!(fresh.view().member(a.id).unwrap().state, NodeState::Normal);
}

#[test]
fn newcomers_are_sent_back_only_while_the_seed_is_fresh_and_only_by_returning_owners() {
    // A first start: the first node is normal, the next joins, and nobody is sent back.
    let mut r = Registry::new(0, TTL);
    let first = r.register(reg("h:1"), 0).unwrap();
    let second = r.register(reg("h:2"), 1).unwrap();
    r.ready(second.id, 2).unwrap();
    let third = r.register(reg("h:3"), 3).unwrap();
    assert_eq!(r.view().member(first.id).unwrap().state, NodeState::Normal);
    assert_eq!(r.view().member(third.id).unwrap().state, NodeState::Joining);

    // After one TTL the first node is an owner like any other: a member that was expired and
    // comes back with its id does not send it back.
    let mut old = Registry::new(0, TTL);
    let gone = old.register(reg("h:5"), 0).unwrap();
    let view = old.view();
    let mut r = Registry::new(0, TTL);
    let first = r.register(reg("h:1"), 0).unwrap();
    r.register(returning(&view, gone.id, "h:5"), TTL + 1).unwrap();
    assert_eq!(r.view().member(first.id).unwrap().state, NodeState::Normal);
}

/// A node stopped right after it asked to leave may register again with the state of the view it
/// saved before: the leave the seed recorded stands, and the node finishes it.
#[test]
fn a_leaving_member_that_registers_again_stays_leaving() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap().id;
    r.register(reg("h:2"), 0).unwrap();
    r.leave(a, false, 1).unwrap();
    let epoch = r.epoch();
    for state in [Some(NodeState::Normal), Some(NodeState::Joining), None] {
        let back = RegisterRequest { id: Some(a), state, ..reg("h:1") };
        let answer = r.register(back, 2).unwrap();
        assert_eq!(answer.nodes.iter().find(|m| m.id == a).unwrap().state, NodeState::Leaving, "{state:?}");
    }
    assert_eq!(r.epoch(), epoch, "nothing changed");
}

/// A seed that did not run for longer than the TTL counts every member as heard from when it
/// runs again: none expires for the silence of the stall, and one that stays silent after it
/// expires a TTL later.
#[test]
fn after_a_stall_every_member_gets_a_full_ttl() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap().id;
    let b = r.register(reg("h:2"), 0).unwrap().id;
    let resumed = 5 * TTL;
    r.seen_all(resumed);
    assert!(r.expire(resumed + 1).removed.is_empty(), "no member expires for the seed's own stall");
    r.heartbeat(a, resumed + TTL).unwrap();
    let expired: Vec<NodeId> = r.expire(resumed + TTL + 1).removed.into_iter().map(|m| m.id).collect();
    assert_eq!(expired, vec![b], "the member that stayed silent after the stall expires");
}

/// A `normal` member the seed expired comes back `joining`, with its id and tokens: it missed the
/// writes of its absence, so it copies its ranges before any read goes to it. To a seed that
/// just restarted (within its first TTL) members come back as they were, and so does the only
/// holder of the data (no member `normal`).
#[test]
fn a_member_back_after_its_expiry_joins_again() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap().id;
    let b = r.register(reg("h:2"), 0).unwrap().id;
    r.ready(b, 0).unwrap();
    let view = r.view();
    let t = 3 * TTL;
    r.heartbeat(b, t).unwrap();
    let expired: Vec<NodeId> = r.expire(t + 1).removed.into_iter().map(|m| m.id).collect();
    assert_eq!(expired, vec![a]);
    let answer = r.register(returning(&view, a, "h:1"), t + 2).unwrap();
    let back = answer.nodes.iter().find(|m| m.id == a).unwrap();
    assert_eq!((back.state, &back.tokens), (NodeState::Joining, &view.member(a).unwrap().tokens));
    // The same registration again (its answer lost, the node retrying): still joining. Only its
    // ready makes it normal.
    let answer = r.register(returning(&view, a, "h:1"), t + 3).unwrap();
    assert_eq!(answer.nodes.iter().find(|m| m.id == a).unwrap().state, NodeState::Joining, "a retry");
    r.ready(a, t + 4).unwrap();
    assert_eq!(r.view().member(a).unwrap().state, NodeState::Normal);

    // To a seed within its first TTL: as it was.
    let mut fresh = Registry::new(t, TTL);
    fresh.register(returning(&view, b, "h:2"), t + 1).unwrap();
    let answer = fresh.register(returning(&view, a, "h:1"), t + 2).unwrap();
    assert_eq!(answer.nodes.iter().find(|m| m.id == a).unwrap().state, NodeState::Normal);

    // The only holder of the data, every other member gone: `normal`.
    let mut alone = Registry::new(0, TTL);
    let c = alone.register(reg("h:3"), 0).unwrap().id;
    let view = alone.view();
    assert_eq!(alone.expire(t).removed.len(), 1);
    let answer = alone.register(returning(&view, c, "h:3"), t + 1).unwrap();
    assert_eq!(answer.nodes[0].state, NodeState::Normal);
}

/// Two or more members quiet at once (half a TTL without a heartbeat) may hold the only copies
/// of writes, or the seed may be cut off from them: it expires none, and the view stays as it
/// was. Once at most one is quiet, that one expires half a TTL later at the earliest. A lone
/// quiet member expires at its TTL.
#[test]
fn two_or_more_members_quiet_at_once_expire_none() {
    let mut r = Registry::new(0, TTL);
    let ids: Vec<NodeId> = (1..=5).map(|i| r.register(reg(&format!("h:{i}")), 0).unwrap().id).collect();
    for id in &ids {
        r.ready(*id, 0).unwrap();
    }
    let (epoch, t) = (r.epoch(), 3 * TTL);

    // The seed hears from nobody: a partition of the seed, not five failures.
    let none_heard = r.expire(t);
    assert_eq!((none_heard.removed.len(), none_heard.withheld.len(), none_heard.quiet), (0, 5, 5));
    assert_eq!(r.epoch(), epoch);

    // From three of five: the two quiet may hold the only copies of writes they took.
    for id in &ids[..3] {
        r.heartbeat(*id, t).unwrap();
    }
    let two_quiet = r.expire(t + 1);
    assert!(two_quiet.removed.is_empty());
    assert_eq!((two_quiet.withheld.len(), two_quiet.quiet, two_quiet.members), (2, 2, 5));
    assert_eq!(r.epoch(), epoch);

    // Quiet counts from half a TTL: three quiet, only one of them past the TTL, keeps that one.
    let u = t + 2 * TTL;
    for (i, id) in ids.iter().enumerate() {
        let seen = [u, u, u - TTL + 1, u - TTL + 1, u - 2 * TTL][i];
        r.heartbeat(*id, seen).unwrap();
    }
    let one_dead = r.expire(u);
    assert_eq!((one_dead.removed.len(), one_dead.withheld, one_dead.quiet), (0, vec![ids[4]], 3));

    // All but one heard again: holding back ends, and the one still silent, past the TTL long
    // since, gets half a TTL more (it may have served while the others were quiet too, and
    // needs that long to learn they are not), then expires.
    let v = u + TTL / 2 + 1;
    for id in &ids[..4] {
        r.heartbeat(*id, v).unwrap();
    }
    let grace = r.expire(v);
    assert_eq!((grace.removed.len(), grace.withheld.len(), grace.quiet), (0, 0, 1));
    assert!(r.expire(v + TTL - TTL / 2).removed.is_empty(), "within its half TTL");
    for id in &ids[..4] {
        r.heartbeat(*id, v + TTL / 2).unwrap();
    }
    let expired = r.expire(v + TTL / 2 + 1);
    assert_eq!(expired.removed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[4]]);
    assert_eq!(r.len(), 4);

    // A lone quiet member expires at its TTL, as ever.
    let w = v + TTL / 2 + 1;
    for id in &ids[..3] {
        r.heartbeat(*id, w + TTL + 1).unwrap();
    }
    r.heartbeat(ids[3], w).unwrap();
    let lone = r.expire(w + TTL + 1);
    assert_eq!(lone.removed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[3]]);

    // A `leaving` member expires whatever the others do, and counts in neither number.
    let mut leaving = Registry::new(0, TTL);
    let ids: Vec<NodeId> = (1..=3).map(|i| leaving.register(reg(&format!("h:{i}")), 0).unwrap().id).collect();
    for id in &ids {
        leaving.ready(*id, 0).unwrap();
    }
    leaving.leave(ids[2], false, 0).unwrap();
    let all_quiet = leaving.expire(t);
    let removed: Vec<NodeId> = all_quiet.removed.iter().map(|m| m.id).collect();
    assert_eq!((removed, all_quiet.withheld.len(), all_quiet.quiet, all_quiet.members), (vec![ids[2]], 2, 2, 2));

    // Two members both quiet: kept; one of two: expires, half a TTL after the other is back.
    let mut pair = Registry::new(0, TTL);
    let a = pair.register(reg("h:1"), 0).unwrap().id;
    let b = pair.register(reg("h:2"), 0).unwrap().id;
    pair.ready(b, 0).unwrap();
    assert_eq!(pair.expire(t).withheld.len(), 2);
    pair.heartbeat(a, t).unwrap();
    assert_eq!(pair.expire(t).removed.len(), 0);
    pair.heartbeat(a, t + TTL / 2).unwrap();
    assert_eq!(pair.expire(t + TTL / 2 + 1).removed.len(), 1);
}

/// An operator removes a member gone for good; one heard from within half a TTL only by force,
/// and an unknown id is an error that says where the ids are.
#[test]
fn remove_takes_out_a_silent_member_and_a_live_one_only_by_force() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap().id;
    let b = r.register(reg("h:2"), 0).unwrap().id;
    let epoch = r.epoch();
    r.heartbeat(a, TTL).unwrap();
    match r.remove(a, false, TTL + TTL / 2) {
        Err(RegistryError::Alive { id, unseen_ms, .. }) => assert_eq!((id, unseen_ms), (a, TTL / 2)),
        other => panic!("a live member removed: {other:?}"),
    }
    assert_eq!(r.epoch(), epoch, "a refusal changes nothing");
    // A leaving one is told to wait for its leave, not to leave (found by trying, 2026-12-06).
    let c = r.register(reg("h:3"), TTL).unwrap().id;
    r.leave(c, false, TTL).unwrap();
    match r.remove(c, false, TTL + TTL / 4) {
        Err(e @ RegistryError::Leaving { .. }) => assert!(e.to_string().contains("its leave is under way"), "{e}"),
        other => panic!("a leaving member removed, or told to leave: {other:?}"),
    }
    r.remove(c, true, TTL + TTL / 4).unwrap();
    let epoch = r.epoch();
    let (gone, view) = r.remove(b, false, TTL + TTL / 2).unwrap();
    assert_eq!(gone.id, b);
    assert_eq!((view.nodes.len(), view.epoch), (1, epoch + 1));
    assert_eq!(r.remove(b, false, TTL + TTL / 2).unwrap_err(), RegistryError::NoSuchMember(b));
    let (gone, view) = r.remove(a, true, TTL).unwrap();
    assert_eq!((gone.id, view.nodes.len()), (a, 0));
}

/// A leaving member the seed expired is not taken back when it registers again as leaving: it
/// is answered the view without it, and the epoch does not move. To a seed within its first TTL
/// (a restart) it returns as it was, `leaving`.
#[test]
fn a_leaving_member_back_after_its_expiry_is_not_taken_back() {
    let mut r = Registry::new(0, TTL);
    let a = r.register(reg("h:1"), 0).unwrap().id;
    let b = r.register(reg("h:2"), 0).unwrap().id;
    r.ready(b, 0).unwrap();
    r.leave(a, false, 0).unwrap();
    let view = r.view();
    let t = 3 * TTL;
    r.heartbeat(b, t).unwrap();
    assert_eq!(r.expire(t + 1).removed.len(), 1);
    let epoch = r.epoch();
    let answer = r.register(returning(&view, a, "h:1"), t + 2).unwrap();
    assert!(answer.nodes.iter().all(|m| m.id != a), "taken back: {:?}", answer.nodes);
    assert_eq!((answer.id, answer.epoch, r.epoch(), r.len()), (a, epoch, epoch, 1));

    let mut fresh = Registry::new(t, TTL);
    let answer = fresh.register(returning(&view, a, "h:1"), t + 1).unwrap();
    assert_eq!(answer.nodes.iter().find(|m| m.id == a).unwrap().state, NodeState::Leaving);
}

#[test]
fn a_restored_seed_knows_its_members_and_who_left_whenever_they_come_back() {
    // Three members; the third is expired, then the seed stops with its record.
    let (mut view, a, b) = two_normal_members();
    let mut before = Registry::new(0, TTL);
    before.restore(&view, 0).unwrap();
    let c = before.register(reg("h:3"), 0).unwrap().id;
    before.ready(c, 0).unwrap();
    before.heartbeat(a, TTL).unwrap();
    before.heartbeat(b, TTL).unwrap();
    assert_eq!(before.expire(TTL + 1).removed.len(), 1, "c alone is silent");
    view = before.view();

    // Restored long after its start, as a seed whose members come back slowly.
    let start = 10 * TTL;
    let mut r = Registry::new(start, TTL);
    r.restore(&view, start).unwrap();
    assert_eq!((r.epoch(), r.digest()), (view.epoch, view.digest()), "the recorded view, at its epoch");
    assert!(!r.fresh(start), "never fresh: it adopts no presented view and tells nodes so");

    // A brand-new node first, a TTL later: it joins beside the recorded owners (a seed without a
    // record would make it the only `normal` member, and keys read "not found" through it).
    let newcomer = r.register(reg("h:9"), start + 2 * TTL).unwrap();
    assert_eq!(r.view().member(newcomer.id).unwrap().state, NodeState::Joining);
    assert!(!newcomer.seed_fresh);

    // The members held back from expiry meanwhile (two silent at once), and come back as they were.
    assert!(r.expire(start + 2 * TTL).removed.is_empty());
    r.heartbeat(a, start + 2 * TTL).expect("a known member heart-beats without registering");
    let answer = r.register(returning(&view, b, "h:2"), start + 2 * TTL).unwrap();
    assert_eq!(answer.epoch, r.epoch(), "the older view it presents is not adopted");
    assert_eq!(r.view().member(b).unwrap().state, NodeState::Normal);

    // The member the seed expired before it stopped comes back `joining`, as it would have
    // without the restart: it missed the writes of its absence.
    let gone = RegisterRequest { id: Some(c), state: Some(NodeState::Normal), ..reg("h:3") };
    r.register(gone, start + 2 * TTL + 1).unwrap();
    assert_eq!(r.view().member(c).unwrap().state, NodeState::Joining);
}

#[test]
fn a_restored_seed_refuses_a_record_it_would_refuse_from_a_node() {
    let (mut view, _, _) = two_normal_members();
    view.nodes[0].tokens = Vec::new().into();
    let mut r = Registry::new(0, TTL);
    assert!(matches!(r.restore(&view, 0), Err(RegistryError::BadRequest(_))));
}

#[test]
fn a_record_older_than_the_cluster_is_dropped_and_the_membership_rebuilt_from_the_members() {
    // The record (a backup) was taken at two members; the cluster moved on to three.
    let (old, a, b) = two_normal_members();
    let mut later = Registry::new(0, TTL);
    later.restore(&old, 0).unwrap();
    let c = later.register(reg("h:3"), 0).unwrap().id;
    later.ready(c, 0).unwrap();
    let now = later.view();

    let mut r = Registry::new(10 * TTL, TTL);
    r.restore(&old, 10 * TTL).unwrap();
    // A member that holds the record's view, or an older one, changes nothing.
    r.heartbeat_since(a, Some((old.epoch, old.digest())), 10 * TTL).unwrap();
    assert_eq!(r.take_dropped_record(), None);
    // One that holds a newer view: the record is dropped, and the member told to register again.
    let hb = r.heartbeat_since(b, Some((now.epoch, now.digest())), 10 * TTL + 1);
    assert_eq!(hb.unwrap_err(), RegistryError::UnknownNode(b));
    assert_eq!(r.take_dropped_record(), Some((old.epoch, now.epoch)));
    assert_eq!(r.take_dropped_record(), None, "said once");
    assert!(r.is_empty() && r.fresh(10 * TTL + 1), "as a seed without a record that just started");
    let answer = r.register(returning(&now, b, "h:2"), 10 * TTL + 2).unwrap();
    assert!(answer.seed_fresh);
    assert_eq!((r.epoch(), r.digest()), (now.epoch, now.digest()), "the members' view, whole");

    // Registering with a newer view drops it too.
    let mut r = Registry::new(0, TTL);
    r.restore(&old, 0).unwrap();
    r.register(returning(&now, c, "h:3"), 1).unwrap();
    assert_eq!(r.take_dropped_record(), Some((old.epoch, now.epoch)));
    assert_eq!((r.epoch(), r.digest()), (now.epoch, now.digest()));
}

/// Joining members hold no write that W normal replicas do not hold too: silent, they expire
/// after a TTL however many are silent, and hold back nobody's expiry. Two registrations that
/// never sent a heartbeat stopped every write to their ranges until an operator removed them.
#[test]
fn silent_joining_members_expire_however_many_are_silent() {
    let mut r = Registry::new(0, TTL);
    let first = r.register(reg("h:1"), 0).unwrap().id;
    let joiners: Vec<NodeId> = (2..=3).map(|i| r.register(reg(&format!("h:{i}")), 0).unwrap().id).collect();
    assert!(joiners.iter().all(|id| r.view().member(*id).is_some_and(|m| m.state == NodeState::Joining)));
    r.heartbeat(first, 2 * TTL).unwrap();
    let expired = r.expire(2 * TTL);
    let mut removed: Vec<NodeId> = expired.removed.iter().map(|m| m.id).collect();
    removed.sort();
    let mut want = joiners.clone();
    want.sort();
    assert_eq!((removed, expired.withheld, expired.quiet), (want, vec![], 0));
}

#[test]
fn tokens_given_twice_are_refused() {
    let mut r = Registry::new(0, TTL);
    let mut req = reg("h:1");
    req.tokens = Some(vec![1, 1, 1]);
    match r.register(req, 0) {
        Err(RegistryError::BadRequest(why)) => assert!(why.contains("distinct: 2 of 3"), "{why}"),
        other => panic!("refused, not {other:?}"),
    }
    assert!(r.view().nodes.is_empty());
}

/// A seed that may have restarted under a live cluster (no record, no `--new-cluster`) keeps a
/// new node out while it is fresh and no member has come back: made `normal` alone, such a node
/// answered "not found" for the members' keys and acknowledged writes only it held. Once a
/// member is back, the new node joins; after a TTL with none, it is the first member.
#[test]
fn a_seed_that_may_have_restarted_keeps_new_nodes_out_until_a_member_is_back() {
    let (old, a, _) = two_normal_members();
    let mut r = Registry::new(10 * TTL, TTL);
    r.hold_new_nodes_while_fresh();
    assert!(matches!(r.register(reg("h:9"), 10 * TTL + 1), Err(RegistryError::NotYet { .. })));
    assert!(r.is_empty(), "nothing registered");
    r.register(returning(&old, a, "h:1"), 10 * TTL + 2).expect("a member is back");
    let new = r.register(reg("h:9"), 10 * TTL + 3).expect("then a new node joins");
    assert_eq!(r.view().member(new.id).unwrap().state, NodeState::Joining);

    let mut alone = Registry::new(0, TTL);
    alone.hold_new_nodes_while_fresh();
    assert!(alone.register(reg("h:9"), 1).is_err());
    let first = alone.register(reg("h:9"), TTL + 1).expect("a TTL later, nobody came back");
    assert_eq!(alone.view().member(first.id).unwrap().state, NodeState::Normal);

    let mut new_cluster = Registry::new(0, TTL);
    new_cluster.hold_new_nodes_while_fresh();
    new_cluster.start_a_new_cluster();
    let first = new_cluster.register(reg("h:9"), 1).expect("--new-cluster: the first member at once");
    assert_eq!(new_cluster.view().member(first.id).unwrap().state, NodeState::Normal);
}
