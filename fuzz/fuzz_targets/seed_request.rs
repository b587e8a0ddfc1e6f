//! The seed's JSON request bodies (`dkv_membership::api`) and what the seed does with them: each
//! parsed body is applied to a [`Registry`], the pure state machine behind the seed's handlers
//! (`crates/seed/src/server.rs` only adds HTTP and a lock), and every view it answers with is
//! turned into a [`Topology`] the way a node does. The seed's answers, as a node parses them, are
//! fuzzed too.
//!
//! Input: requests separated by NUL bytes (never part of valid JSON), each one letter then its
//! JSON body: `r` `POST /register`, `h` `/heartbeat`, `y` `/ready`, `l` `/leave`, `x` a TTL going
//! by (the seed's expiry timer); `k` then two bytes, a heartbeat from a member that holds an
//! earlier view (with its true epoch and digest, which the fuzzer could not guess); `R`, `H`, `V`
//! an answer to register, heartbeat, or a view, as a node reads it. Asserts, beyond "no panic":
//! * every body that parses serializes to JSON that parses to the same value;
//! * the epoch never goes back, and every answer carries the registry's current view;
//! * a node that applies a heartbeat's answer to the view it holds (the whole view, the changes
//!   since its view, or "unchanged") arrives at the seed's view and digest;
//! * a registration that succeeds answers with the registering member, at its address, in it;
//! * a node can place keys with every view the seed answers: replica lists hold distinct
//!   members, reads only go to members that hold data, writes reach every read replica.
//!
//! A registration without an id gets a random one from the seed; here it gets one derived from
//! its position instead, so that a crash reproduces. One without `vnodes` gets 8 instead of the
//! default 128, which makes the fuzzer about three times faster.

#![no_main]

use dkv_membership::api::{HeartbeatAnswer, IdRequest, LeaveRequest, RegisterRequest, RegisterResponse};
use dkv_membership::{Digest, NodeId, NodeState, Registry, Topology, View};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

const TTL_MS: u64 = 10_000;
/// Requests per input: a handful is enough to build up a membership, and registrations are not
/// cheap (token choice), so more would only slow the fuzzer.
const MAX_REQUESTS: usize = 12;

fuzz_target!(|data: &[u8]| {
    let mut now = 1_000_000;
    let mut registry = Registry::new(now, TTL_MS);
    let mut epoch = registry.epoch();
    // Every view the registry went through: what a node may hold when it heartbeats.
    let mut history = vec![registry.view()];
    for (i, request) in data.split(|&b| b == 0).take(MAX_REQUESTS).enumerate() {
        let Some((&what, body)) = request.split_first() else { continue };
        now += 100;
        let view = match what {
            b'r' => {
                let Some(mut req) = parse::<RegisterRequest>(body) else { continue };
                req.id = req.id.or(Some(NodeId(0x1000 + i as u64)));
                // Fewer tokens than the default 128 when none are asked for: choosing them
                // dominates the time of an input, and their number changes no code path.
                req.vnodes = req.vnodes.or(Some(8));
                let addr = req.addr.clone();
                // The view a returning node presents is one it holds, and one a fresh seed adopts.
                history.extend(req.view.clone());
                let Ok(resp) = registry.register(req, now) else { continue };
                let me = resp.nodes.iter().find(|m| m.id == resp.id).expect("the registered member is in the answer");
                assert_eq!(me.addr, addr, "registered at another address");
                View { epoch: resp.epoch, nodes: resp.nodes }
            }
            b'h' => {
                let Some(req) = parse::<IdRequest>(body) else { continue };
                let Ok(answer) = registry.heartbeat_since(req.id, req.known(), now) else { continue };
                node_catches_up(&answer, req.known(), &history, &registry.view());
                registry.view()
            }
            b'k' => {
                // A heartbeat from member `body[0]` holding the view `body[1]` views ago, as a
                // node that is behind sends it: the one case where the seed answers with changes.
                let (Some(&who), Some(&back)) = (body.first(), body.get(1)) else { continue };
                let current = registry.view();
                let Some(member) = current.nodes.get(who as usize % current.nodes.len().max(1)) else { continue };
                let held = &history[history.len() - 1 - back as usize % history.len()];
                let known = Some((held.epoch, held.digest()));
                let answer = registry.heartbeat_since(member.id, known, now).expect("a member's heartbeat");
                node_catches_up(&answer, known, &history, &registry.view());
                registry.view()
            }
            b'y' => match parse::<IdRequest>(body).map(|req| registry.ready(req.id, now)) {
                Some(Ok(view)) => view,
                _ => continue,
            },
            b'l' => match parse::<LeaveRequest>(body).map(|req| registry.leave(req.id, req.done, now)) {
                Some(Ok(view)) => view,
                _ => continue,
            },
            b'x' => {
                now += TTL_MS / 2;
                registry.expire(now);
                registry.view()
            }
            b'R' => {
                if let Some(resp) = parse::<RegisterResponse>(body) {
                    places_keys(View { epoch: resp.epoch, nodes: resp.nodes }, resp.id);
                }
                continue;
            }
            b'H' => {
                if let Some(HeartbeatAnswer { epoch, nodes: Some(nodes), .. }) = parse::<HeartbeatAnswer>(body) {
                    places_keys(View { epoch, nodes }, NodeId(1));
                }
                continue;
            }
            b'V' => {
                if let Some(view) = parse::<View>(body) {
                    places_keys(view, NodeId(1));
                }
                continue;
            }
            _ => continue,
        };
        assert!(view.epoch >= epoch, "epoch went back from {epoch} to {}", view.epoch);
        assert_eq!(view, registry.view(), "answered with another view than the registry's");
        epoch = view.epoch;
        history.push(view.clone());
        let me = view.nodes.first().map_or(NodeId(1), |m| m.id);
        places_keys(view, me);
    }
});

/// What a node that holds the view `known` makes of a heartbeat's answer is the seed's current
/// view: the whole of it, the changes since `known` applied to it, or "unchanged" only when
/// `known` is current. The seed's running digest is the digest of its view.
fn node_catches_up(answer: &HeartbeatAnswer, known: Option<(u64, Digest)>, history: &[View], current: &View) {
    assert_eq!(answer.epoch, current.epoch, "answered at another epoch");
    assert_eq!(answer.digest, Some(current.digest()), "the seed's digest is not its view's");
    match (&answer.nodes, &answer.changes) {
        (Some(nodes), None) => assert_eq!(nodes, &current.nodes, "the whole view is not the seed's"),
        (None, Some(changes)) => {
            let (epoch, digest) = known.expect("changes only to a node that says what it holds");
            assert_eq!(changes.since, epoch, "changes since another epoch than the node's");
            let held = history
                .iter()
                .find(|v| v.epoch == epoch && v.digest() == digest)
                .expect("changes only since a view the seed went through");
            let caught_up = changes.clone().apply(held, answer.epoch);
            assert!(
                caught_up.same_placement(current),
                "changes applied to {held:?} give {caught_up:?}, not {current:?}"
            );
            assert_eq!(Some(caught_up.digest()), answer.digest, "caught up to another digest");
        }
        (None, None) => assert_eq!(known, Some((current.epoch, current.digest())), "\"unchanged\" to a node behind"),
        (Some(_), Some(_)) => panic!("an answer with both the view and changes"),
    }
}

/// Parse a body as the seed does (`serde_json::from_slice`); one that parses must round-trip.
fn parse<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(body).ok()?;
    let json = serde_json::to_vec(&value).expect("serializing a parsed body");
    let again: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!("{} does not parse back: {e}", String::from_utf8_lossy(&json));
    });
    assert_eq!(serde_json::to_vec(&again).expect("serializing"), json, "JSON round trip changed the body");
    Some(value)
}

/// What a node does with a view: build its topology and place keys.
fn places_keys(view: View, me: NodeId) {
    let state = |t: &Topology, id: NodeId| t.member(id).map(|m| m.state);
    // A node's own parse of an answer may hold one id twice (the seed never sends that); which
    // of the two a lookup by id finds is then arbitrary.
    let unique = distinct(&view.nodes.iter().map(|m| m.id).collect::<Vec<_>>());
    let topology = Topology::new(view, me, 3);
    for hash in [0, 1, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
        let p = topology.placement(hash);
        assert!(p.read.len() <= 3, "{} read replicas for N=3", p.read.len());
        assert!(distinct(&p.read) && distinct(&p.write), "a replica listed twice: {p:?}");
        assert!(p.write.starts_with(&p.read), "a write skips a read replica: {p:?}");
        for id in p.read.iter().filter(|_| unique) {
            assert_ne!(state(&topology, *id), Some(NodeState::Joining), "reads from a joining member");
        }
        assert_eq!(topology.coordinator(hash), p.read.first().copied());
    }
}

fn distinct(ids: &[NodeId]) -> bool {
    ids.iter().enumerate().all(|(i, id)| !ids[..i].contains(id))
}
