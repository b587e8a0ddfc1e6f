//! A view's digest: 64 bits that say which placement a view describes, so a node can tell the
//! seed what it holds in a heartbeat of a few bytes, and the seed can answer "unchanged" without
//! sending anything back.
//!
//! The epoch alone does not identify a view: a seed that restarts counts again from wherever the
//! first returning node's view was, and a node can change its own view without the seed (see
//! `assume_leaving` in the node). So a heartbeat carries the epoch *and* the digest, and the seed
//! answers "unchanged" only when both are its own; any divergence, however it came about, gets
//! the changes or the whole view, exactly as every heartbeat used to.
//!
//! The digest is the XOR of one xxh3 hash per member over what places keys (id, address, state,
//! tokens; not the heartbeat time). XOR makes it independent of member order and lets the seed
//! keep it up to date in O(tokens of the member that changed) instead of rehashing the whole
//! membership on every change.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::xxh3_64;

use crate::member::same_tokens;
use crate::{Member, NodeState, View};

/// Written as 16 hex digits in JSON, like a node id (a JSON number would lose bits in JavaScript).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Digest(pub u64);

impl Digest {
    /// The digest of a membership, from scratch: O(members × tokens).
    pub fn of(members: &[Member]) -> Digest {
        let mut bytes = Vec::new();
        Digest(members.iter().fold(0, |d, m| d ^ hash_in(m, &mut bytes)))
    }

    /// This digest, of a view that holds `old` (or not, for `None`), for the view with `new` in
    /// its place (or without it, for `None`): O(tokens) for a member that changed, O(1) for one
    /// that did not, where [`Digest::of`] hashes every member.
    pub(crate) fn replace(self, old: Option<&Member>, new: Option<&Member>) -> Digest {
        match (old, new) {
            (Some(old), Some(new)) if same_share(old, new) => self,
            _ => Digest(self.0 ^ old.map_or(0, member_hash) ^ new.map_or(0, member_hash)),
        }
    }
}

/// Whether two versions of a member have the same share of the digest: the same id, address,
/// state and tokens. Tokens shared between views compare by pointer.
pub(crate) fn same_share(a: &Member, b: &Member) -> bool {
    a.id == b.id && a.state == b.state && a.addr == b.addr && same_tokens(&a.tokens, &b.tokens)
}

/// One member's share of the digest.
pub(crate) fn member_hash(m: &Member) -> u64 {
    hash_in(m, &mut Vec::new())
}

/// [`member_hash`], its input laid out in `bytes` (a buffer kept across members).
fn hash_in(m: &Member, bytes: &mut Vec<u8>) -> u64 {
    bytes.clear();
    bytes.extend_from_slice(&m.id.0.to_le_bytes());
    bytes.push(state_byte(m.state));
    bytes.extend_from_slice(&(m.addr.len() as u64).to_le_bytes());
    bytes.extend_from_slice(m.addr.as_bytes());
    // Sized once and filled, rather than grown token by token: a node computes the digest of
    // every view it takes in, 128 tokens a member.
    let head = bytes.len();
    bytes.resize(head + 8 * m.tokens.len(), 0);
    for (out, t) in bytes[head..].chunks_exact_mut(8).zip(m.tokens.iter()) {
        out.copy_from_slice(&t.to_le_bytes());
    }
    xxh3_64(bytes)
}

pub(crate) fn state_byte(s: NodeState) -> u8 {
    match s {
        NodeState::Joining => 0,
        NodeState::Normal => 1,
        NodeState::Leaving => 2,
    }
}

impl View {
    /// See [`Digest`]; heartbeat times do not count, as for [`View::same_placement`].
    pub fn digest(&self) -> Digest {
        Digest::of(&self.nodes)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 {
            return Err(format!("a digest is 1 to 16 hex digits, got {s:?}"));
        }
        u64::from_str_radix(s, 16).map(Digest).map_err(|_| format!("a digest is 1 to 16 hex digits, got {s:?}"))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    fn m(id: u64, state: NodeState) -> Member {
        Member { id: NodeId(id), addr: format!("h:{id}"), tokens: [id, id * 7].into(), state, last_seen_ms: id }
    }

    #[test]
    fn the_digest_follows_placement_only() {
        let a = View { epoch: 1, nodes: vec![m(1, NodeState::Normal), m(2, NodeState::Joining)] };
        let mut b = View { epoch: 9, nodes: vec![m(2, NodeState::Joining), m(1, NodeState::Normal)] };
        assert_eq!(a.digest(), b.digest(), "order, epoch and heartbeat times do not count");
        b.nodes[0].last_seen_ms = 12345;
        assert_eq!(a.digest(), b.digest());
        for change in [
            |m: &mut Member| m.state = NodeState::Normal,
            |m: &mut Member| m.addr.push('0'),
            |m: &mut Member| m.tokens = [m.tokens[0], m.tokens[1] + 1].into(),
            |m: &mut Member| m.tokens = [&m.tokens[..], &[3]].concat().into(),
        ] {
            let mut c = a.clone();
            change(&mut c.nodes[1]);
            assert_ne!(a.digest(), c.digest());
        }
        assert_ne!(a.digest(), View { epoch: 1, nodes: vec![m(1, NodeState::Normal)] }.digest());
        assert_eq!(View::default().digest(), Digest(0));
    }

    /// Seeds and nodes of different releases compare digests, so the value is part of the wire
    /// format: pinned here, at the value every release so far has computed.
    #[test]
    fn the_digest_of_a_view_is_the_same_in_every_release() {
        let view = View { epoch: 3, nodes: vec![m(1, NodeState::Normal), m(2, NodeState::Joining)] };
        assert_eq!(view.digest(), Digest(0x9c1b_df6e_21c8_d423));
    }

    #[test]
    fn digests_are_hex_in_json() {
        let d = Digest(0xab);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"00000000000000ab\"");
        assert_eq!(serde_json::from_str::<Digest>("\"AB\"").unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"\"").is_err());
        assert!(serde_json::from_str::<Digest>("171").is_err());
    }
}
