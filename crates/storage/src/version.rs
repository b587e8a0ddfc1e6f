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
///
/// A value may carry a deadline, `expires`: milliseconds since the Unix epoch, after which it
/// reads as absent. The deadline is part of the write, so every replica, hint and transfer
/// carries the same one; each node judges it by its own wall clock (clocks agree within
/// `--max-clock-offset`). Once past it, a node turns the value into a tombstone of the *same*
/// version that keeps the deadline ([`Entry::expired`]): it still beats any older value a
/// replica that missed the write may hold, and its grace period counts from the deadline
/// ([`Entry::dead_since`]), as a delete's counts from the delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub version: Version,
    pub value: Option<Bytes>,
    /// When the value expires (ms since the Unix epoch); on a tombstone, when the value it
    /// replaced expired. `None`: never.
    pub expires: Option<u64>,
}

impl Entry {
    pub fn value(version: Version, value: Bytes) -> Self {
        Entry { version, value: Some(value), expires: None }
    }

    /// A value that reads as absent once the wall clock passes `expires` (ms since the epoch).
    pub fn expiring(version: Version, value: Bytes, expires: Option<u64>) -> Self {
        Entry { version, value: Some(value), expires }
    }

    pub fn tombstone(version: Version) -> Self {
        Entry { version, value: None, expires: None }
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Whether this is a value whose deadline has passed at `now_ms` (as in Redis, a key is
    /// still there at its deadline and gone one millisecond after).
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.value.is_some() && self.expires.is_some_and(|t| now_ms > t)
    }

    /// The value, if it is live at `now_ms`: not deleted, not expired.
    pub fn live_value(&self, now_ms: u64) -> Option<&Bytes> {
        self.value.as_ref().filter(|_| !self.is_expired_at(now_ms))
    }

    /// The tombstone an expired value becomes: same version, same deadline, no value.
    pub fn expired(self) -> Entry {
        Entry { version: self.version, value: None, expires: self.expires }
    }

    /// The hybrid-clock timestamp from which this entry counts as gone, for the tombstone grace
    /// period: a delete's version, or an expiry's deadline (whichever is later); `None` for a
    /// value that never expires.
    pub fn dead_since(&self) -> Option<u64> {
        let deadline = self.expires.map(|ms| crate::Hlc::ts_at_ms(ms.saturating_add(1)));
        match (&self.value, deadline) {
            (None, d) => Some(self.version.ts.max(d.unwrap_or(0))),
            (Some(_), Some(d)) => Some(self.version.ts.max(d)),
            (Some(_), None) => None,
        }
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

    #[test]
    fn an_expired_value_reads_as_absent_and_its_tombstone_keeps_version_and_deadline() {
        let e = Entry::expiring(v(10, 1), Bytes::from_static(b"a"), Some(1_000));
        assert_eq!(e.live_value(999).map(|b| &b[..]), Some(&b"a"[..]));
        assert_eq!(e.live_value(1_000).map(|b| &b[..]), Some(&b"a"[..]), "still there at its deadline");
        assert!(e.live_value(1_001).is_none() && e.is_expired_at(1_001));
        let t = e.clone().expired();
        assert_eq!((t.version, t.value.clone(), t.expires), (v(10, 1), None, Some(1_000)));
        assert!(!t.supersedes(&e) && !e.supersedes(&t), "the same write: neither replaces the other");
        assert!(t.supersedes(&Entry::value(v(9, 7), Bytes::from_static(b"older"))));
        assert!(!t.is_expired_at(5_000), "a tombstone is not an expired value");
        let never = Entry::value(v(10, 1), Bytes::from_static(b"a"));
        assert!(never.live_value(u64::MAX).is_some());
    }

    #[test]
    fn the_grace_period_of_an_expiry_counts_from_its_deadline() {
        let at = |ms| crate::Hlc::ts_at_ms(ms);
        let e = Entry::expiring(Version { ts: at(100), node: 1 }, Bytes::from_static(b"a"), Some(5_000));
        assert_eq!(e.dead_since(), Some(at(5_001)));
        assert_eq!(e.clone().expired().dead_since(), Some(at(5_001)));
        assert_eq!(Entry::tombstone(Version { ts: at(100), node: 1 }).dead_since(), Some(at(100)));
        assert_eq!(Entry::value(Version { ts: at(100), node: 1 }, Bytes::new()).dead_since(), None);
    }

    /// Deadlines a client may give reach `i64::MAX` ms, past what a timestamp holds: such a value
    /// is dead far in the future, not at a wrapped-round time long past.
    #[test]
    fn a_deadline_past_the_clocks_range_is_never_dead() {
        let at = |ms| crate::Hlc::ts_at_ms(ms);
        for deadline in [i64::MAX as u64, (1 << 48) - 1, 1 << 48, u64::MAX] {
            let e = Entry::expiring(Version { ts: at(100), node: 1 }, Bytes::from_static(b"a"), Some(deadline));
            assert_eq!(e.dead_since(), Some(u64::MAX), "deadline {deadline}");
            assert_eq!(e.expired().dead_since(), Some(u64::MAX), "deadline {deadline}");
        }
        assert!(at(1 << 47) < at((1 << 48) - 2), "within the range, times keep their order");
    }
}
