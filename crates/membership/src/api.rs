//! The seed's JSON API (DESIGN §3): request and response bodies shared by the seed and the nodes.

use serde::{Deserialize, Serialize};

use crate::{json_int, Changes, Digest, Member, NodeId, NodeState, View};

/// `POST /register`. A node that registers for the first time sends only `addr`; a node that
/// comes back (after a seed restart, an expiry or its own restart) sends its `id`, `tokens` and
/// `state` and keeps them, plus the last `view` it knew so a freshly restarted seed can rebuild
/// the membership in one step instead of shrinking the ring to whoever re-registers first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterRequest {
    pub addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_vec_u64")]
    pub tokens: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeState>,
    /// Virtual nodes to create for a new node; the seed's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_usize")]
    pub vnodes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<View>,
    /// The cluster the node belongs to (`--cluster-name`); the seed refuses other clusters' nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterResponse {
    pub id: NodeId,
    pub epoch: u64,
    pub nodes: Vec<Member>,
    /// The seed started less than one TTL ago: its membership may have been taken from a view a
    /// returning node presented, so that view being the seed's tells that node nothing about
    /// what changed while it was down. Absent from a seed of an earlier release (read as true:
    /// the node assumes the least).
    #[serde(default = "assume_fresh")]
    pub seed_fresh: bool,
}

fn assume_fresh() -> bool {
    true
}

/// `POST /heartbeat`, `POST /ready`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdRequest {
    pub id: NodeId,
    /// On heartbeats: the key copies the node holds, for the seed's dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_u64")]
    pub keys: Option<u64>,
    /// On heartbeats: the node's clock minus the median member's, in ms, for the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_i64")]
    pub clock_offset_ms: Option<i64>,
    /// On heartbeats: `false` while the node's clock is too far off for it to coordinate writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinating_writes: Option<bool>,
    /// On heartbeats: the epoch of the view the node holds. With `digest`, the seed answers
    /// without a view when that view is current (see [`HeartbeatAnswer`]).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_u64")]
    pub epoch: Option<u64>,
    /// On heartbeats: the [`Digest`] of the view the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// On heartbeats: the node's requests, latency, hints and data movements, for the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::load::Load>,
    /// On heartbeats: the node's clock minus the seed's, in ms, as it read the seed's clock on its
    /// last heartbeat. The seed answers a heartbeat that carries it with the cluster's clock
    /// ([`HeartbeatAnswer::clock`]).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_i64")]
    pub seed_clock_offset_ms: Option<i64>,
    /// On heartbeats: how wrong `seed_clock_offset_ms` may be (half the round trip), in ms.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_i64")]
    pub seed_clock_error_ms: Option<i64>,
}

impl IdRequest {
    /// Just the id (`/ready`).
    pub fn id(id: NodeId) -> Self {
        IdRequest {
            id,
            keys: None,
            clock_offset_ms: None,
            coordinating_writes: None,
            epoch: None,
            digest: None,
            load: None,
            seed_clock_offset_ms: None,
            seed_clock_error_ms: None,
        }
    }

    /// The view the node says it holds, when it says both epoch and digest.
    pub fn known(&self) -> Option<(u64, Digest)> {
        Some((self.epoch?, self.digest?))
    }
}

/// The answer to `POST /heartbeat`: what the node must learn of the membership, and the seed's
/// wall clock when it answered (in ms since the Unix epoch), from which a node measures its
/// clock against the seed's. Of the membership, one of:
/// * `nodes`, the whole view at `epoch`: to a heartbeat that did not say which view it holds
///   (older nodes, people), or holds one the seed cannot give the changes from;
/// * `changes` since the view the heartbeat said it holds;
/// * neither: that view is current ("unchanged"), which is what almost every heartbeat gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    #[serde(deserialize_with = "json_int::u64")]
    pub epoch: u64,
    /// The digest of the view at `epoch`: what a node that applied `changes` must arrive at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<Member>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "json_int::opt_u64")]
    pub now_ms: Option<u64>,
    /// The cluster's clock in the seed's terms, to a heartbeat that reported its own reading of
    /// the seed's clock (see [`crate::clocks`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<crate::clocks::ClusterClock>,
}

/// `POST /leave`: `done: false` starts a leave (state `leaving`), `done: true` ends it (the member
/// is removed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaveRequest {
    pub id: NodeId,
    #[serde(default)]
    pub done: bool,
}

/// `POST /remove`: an operator takes a member that is gone for good out of the membership
/// (`dkv remove`). The seed expires no member while two or more are silent at once (see
/// [`crate::Expiry`]), so when several nodes of a cluster really died, this is how it shrinks. Refused
/// for a member the seed heard from within half a TTL, unless `force`: a live member should
/// leave instead, which hands its keys over before it goes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoveRequest {
    pub id: NodeId,
    #[serde(default)]
    pub force: bool,
}

/// Every successful membership call answers with the current view.
pub type ViewResponse = View;

/// The binary transport's request kind of a heartbeat to the seed: an [`IdRequest`] in the
/// compact encoding, answered with a [`HeartbeatAnswer`] in it (or refused with the status the
/// HTTP route would answer). Apart from the nodes' own kinds, so a node given another node's
/// address as its seed is refused with "unknown message kind" rather than misread.
pub const SEED_HEARTBEAT_KIND: u8 = 0x40;

/// Header carrying the cluster secret on node-to-node and node-to-seed calls (DESIGN §9).
pub const SECRET_HEADER: &str = "x-dkv-secret";

/// Header on every HTTP answer of a node, with its id: how a client tells a node's `404` (no such
/// key) from any other server's (no such path).
pub const NODE_HEADER: &str = "x-dkv-node";

/// Header on every HTTP answer of the seed, with its version, so a client pointed at the seed
/// instead of a node can say so.
pub const SEED_HEADER: &str = "x-dkv-seed";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_written_as_floats_are_read() {
        // What schemathesis sent (JSON Schema's `integer` includes 67108863.0); serde_json's u64
        // alone refused it with a 400.
        let hb = r#"{"id": "f6954c736e1dcaa2", "clock_offset_ms": -2790805312095572, "keys": 67108863.0}"#;
        let hb: IdRequest = serde_json::from_str(hb).expect("an integral float is an integer");
        assert_eq!((hb.keys, hb.clock_offset_ms), (Some(67108863), Some(-2790805312095572)));
        let reg = r#"{"addr": "h:1", "tokens": [287404.0, 5], "vnodes": 16.0,
            "view": {"epoch": 3.0, "nodes": [{"id": "9", "addr": "h:9", "tokens": [1e3], "state": "normal",
            "last_seen_ms": 2802.0}]}}"#;
        let reg: RegisterRequest = serde_json::from_str(reg).expect("integral floats everywhere");
        assert_eq!((reg.tokens, reg.vnodes), (Some(vec![287404, 5]), Some(16)));
        let view = reg.view.expect("a view");
        assert_eq!((view.epoch, view.nodes[0].tokens.to_vec(), view.nodes[0].last_seen_ms), (3, vec![1000], 2802));
        assert!(serde_json::from_str::<IdRequest>(r#"{"id": "1", "keys": 1.5}"#).is_err());

        let answer = HeartbeatAnswer {
            epoch: 4,
            digest: Some(Digest(7)),
            nodes: Some(view.nodes.clone()),
            changes: Some(Changes { since: 2, members: view.nodes, removed: vec![NodeId(3)] }),
            now_ms: Some(9),
            clock: Some(crate::clocks::ClusterClock { offset_ms: -3, error_ms: 1, clocks: 4 }),
        };
        let back: HeartbeatAnswer = serde_json::from_str(&serde_json::to_string(&answer).unwrap()).unwrap();
        assert_eq!(back, answer);
    }

    /// A node of the previous release reads a heartbeat answer as `{"epoch","nodes","now_ms"}`
    /// (a view flattened beside the clock) and never sends `epoch`: it gets every field it needs.
    #[test]
    fn older_nodes_read_the_answer_they_always_got() {
        #[derive(Deserialize)]
        struct OldAnswer {
            #[serde(flatten)]
            view: View,
            now_ms: Option<u64>,
        }
        let old_request = r#"{"id": "2a", "keys": 3}"#;
        let req: IdRequest = serde_json::from_str(old_request).unwrap();
        assert_eq!(req.known(), None, "says nothing of its view: gets the whole view");
        let m = Member {
            id: NodeId(0x2a),
            addr: "h:1".into(),
            tokens: [5].into(),
            state: NodeState::Normal,
            last_seen_ms: 1,
        };
        let answer = HeartbeatAnswer {
            epoch: 6,
            digest: Some(Digest(1)),
            nodes: Some(vec![m.clone()]),
            changes: None,
            now_ms: Some(10),
            clock: None,
        };
        let old: OldAnswer = serde_json::from_str(&serde_json::to_string(&answer).unwrap()).unwrap();
        assert_eq!((old.view, old.now_ms), (View { epoch: 6, nodes: vec![m] }, Some(10)));
    }
}

/// `GET /health` of the seed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedHealth {
    pub status: String,
    pub epoch: u64,
    pub members: usize,
    /// How long a member may go unheard before the seed expires it (`--node-ttl`), in ms. Nodes
    /// stop coordinating well before that when they lose the seed alone (their lease). Absent
    /// from a seed of an earlier release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ttl_ms: Option<u64>,
    /// The seed started less than one TTL ago (see [`RegisterResponse::seed_fresh`]). Absent
    /// from a seed of an earlier release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh: Option<bool>,
}
