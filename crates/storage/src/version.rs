//! Versions and entries: the unit every replica, move and hand-off exchanges.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A totally ordered write version: hybrid logical clock first, coordinating node id as the
/// tie-breaker, so two writes never compare equal unless they are the same write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Hybrid logical clock timestamp (see [`crate::Hlc`]).
    pub ts: u64,
    /// Id of the node that created the version.
    pub node: u64,
}

/// What is stored for a key: a value, or a tombstone (`value: None`) that remembers a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub version: Version,
    pub value: Option<Bytes>,
}

impl Entry {
    pub fn value(version: Version, value: Bytes) -> Self {
        Entry { version, value: Some(value) }
    }

    pub fn tombstone(version: Version) -> Self {
        Entry { version, value: None }
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Whether this entry must replace `other`: strictly newer versions win. Equal versions are the
    /// same write, so re-applying it is a no-op (this is what makes moves idempotent).
    pub fn supersedes(&self, other: &Entry) -> bool {
        self.version > other.version
    }

    /// Bytes of value held (0 for a tombstone).
    pub fn value_len(&self) -> usize {
        self.value.as_ref().map_or(0, Bytes::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ts: u64, node: u64) -> Version {
        Version { ts, node }
    }

    #[test]
    fn newer_version_wins_and_ties_break_by_node() {
        let old = Entry::value(v(10, 2), Bytes::from_static(b"a"));
        let new = Entry::tombstone(v(11, 1));
        assert!(new.supersedes(&old));
        assert!(!old.supersedes(&new));
        let other_node = Entry::value(v(10, 3), Bytes::from_static(b"b"));
        assert!(other_node.supersedes(&old));
        assert!(!old.supersedes(&old.clone()), "re-applying the same write is a no-op");
    }
}
