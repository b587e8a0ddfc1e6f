//! Members and views, as exchanged in JSON between seed and nodes.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A node's identity: 64 random bits chosen by the seed at first registration and kept for life.
/// Written as 16 hex digits in JSON (a JSON number would lose bits in JavaScript).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("node id must be 1 to 16 hex digits, got {0:?}")]
pub struct ParseNodeIdError(String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 {
            return Err(ParseNodeIdError(s.to_string()));
        }
        u64::from_str_radix(s, 16).map(NodeId).map_err(|_| ParseNodeIdError(s.to_string()))
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a member is in its life cycle; see the crate docs for what each state means to placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Registered, copying the ranges it will own; receives writes for them but serves no reads.
    Joining,
    /// Owns its ranges.
    Normal,
    /// Handing its ranges to the other members; still serves them until it is gone.
    Leaving,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeState::Joining => "joining",
            NodeState::Normal => "normal",
            NodeState::Leaving => "leaving",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// `host:port` other nodes use to reach this one.
    pub addr: String,
    /// Ring positions, chosen once and kept for the node's life so its placement never changes.
    /// Shared between the views that hold the member: a node builds a new view for every change,
    /// and copying 128 tokens for every member was most of the cost (`view_change_bench`).
    #[serde(deserialize_with = "crate::json_int::shared_u64s")]
    pub tokens: Arc<[u64]>,
    pub state: NodeState,
    /// Unix time in milliseconds of the last registration or heartbeat the seed received.
    #[serde(default, deserialize_with = "crate::json_int::u64")]
    pub last_seen_ms: u64,
}

/// Whether two members' tokens are the same: by pointer when they are shared (a member that did
/// not change between two views), else by value. `Arc`'s own `==` compares slices by value.
pub(crate) fn same_tokens(a: &Arc<[u64]>, b: &Arc<[u64]>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// A membership snapshot: the seed's `{"epoch","nodes"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    #[serde(deserialize_with = "crate::json_int::u64")]
    pub epoch: u64,
    pub nodes: Vec<Member>,
}

impl View {
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.nodes.iter().find(|m| m.id == id)
    }

    /// Whether two views place keys identically (same members, tokens, states and addresses);
    /// heartbeat times do not count.
    /// A node asks this of every view it takes in; members that did not change share their
    /// tokens with the view before and compare by pointer.
    pub fn same_placement(&self, other: &View) -> bool {
        fn by_id(v: &View) -> Vec<&Member> {
            let mut m: Vec<&Member> = v.nodes.iter().collect();
            m.sort_by_key(|m| m.id); // stable, and views come sorted by id
            m
        }
        let (a, b) = (by_id(self), by_id(other));
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| crate::digest::same_share(x, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_round_trips_as_hex_string() {
        let id = NodeId(0xdead_beef_0000_0001);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"deadbeef00000001\"");
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        assert!("xyz".parse::<NodeId>().is_err());
        assert!("".parse::<NodeId>().is_err());
    }

    #[test]
    fn the_same_placement_ignores_order_heartbeat_times_and_where_tokens_are_kept() {
        let m = |id: u64, state| Member {
            id: NodeId(id),
            addr: format!("h:{id}"),
            tokens: [id, id + 10].into(),
            state,
            last_seen_ms: id,
        };
        let view = View { epoch: 1, nodes: vec![m(1, NodeState::Normal), m(2, NodeState::Joining)] };
        let mut same = View { epoch: 2, nodes: vec![view.nodes[1].clone(), view.nodes[0].clone()] };
        same.nodes[0].last_seen_ms = 99;
        same.nodes[1].tokens = same.nodes[1].tokens.to_vec().into(); // equal, not shared
        assert!(view.same_placement(&same));
        let changes: [fn(&mut View); 5] = [
            |v| v.nodes[0].state = NodeState::Normal,
            |v| v.nodes[0].addr.push('0'),
            |v| v.nodes[0].tokens = [2, 13].into(),
            |v| drop(v.nodes.pop()),
            |v| v.nodes.push(v.nodes[0].clone()),
        ];
        for change in changes {
            let mut other = same.clone();
            change(&mut other);
            assert!(!view.same_placement(&other), "{other:?}");
        }
    }
}
