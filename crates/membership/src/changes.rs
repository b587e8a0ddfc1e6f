//! The seed's recent membership changes, so a node a few changes behind is sent only the members
//! that changed, not the whole view.
//!
//! Each entry is one epoch: the digest of the view it produced and the members it touched (added,
//! changed or removed). A node that holds the view `(epoch, digest)` of some entry, or of the
//! log's base, gets the members touched after it, as they are now; anything older than the log,
//! or a view the log never passed through (a seed that restarted, a node's own edit), gets the
//! whole view. The log is bounded by entries, so its memory does not grow with time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::{Digest, Member, NodeId, View};

/// Changes kept: enough for a node that missed every change of a burst of joins to catch up in
/// one answer, small enough to be nothing next to the view itself.
pub const LOG_ENTRIES: usize = 1024;

/// What changed between the view a node holds and the seed's current one.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changes {
    /// The epoch the changes start from: the one the node said it holds.
    #[serde(deserialize_with = "crate::json_int::u64")]
    pub since: u64,
    /// Members added or changed since then, as they are now.
    pub members: Vec<Member>,
    /// Members removed since then.
    pub removed: Vec<NodeId>,
}

impl Changes {
    /// The view `base` (at epoch `since`) becomes with these changes, at `epoch`. Members stay
    /// sorted by id, as the seed lists them.
    pub fn apply(self, base: &View, epoch: u64) -> View {
        let mut members: BTreeMap<NodeId, Member> = base.nodes.iter().map(|m| (m.id, m.clone())).collect();
        for id in &self.removed {
            members.remove(id);
        }
        for m in self.members {
            members.insert(m.id, m);
        }
        View { epoch, nodes: members.into_values().collect() }
    }
}

#[derive(Debug)]
struct Entry {
    epoch: u64,
    digest: Digest,
    touched: Vec<NodeId>,
}

#[derive(Debug)]
pub struct ChangeLog {
    /// The oldest view the log can give changes from.
    base: (u64, Digest),
    /// Oldest first; epochs strictly increase.
    entries: VecDeque<Entry>,
    capacity: usize,
}

impl ChangeLog {
    pub fn new(epoch: u64, digest: Digest, capacity: usize) -> Self {
        ChangeLog { base: (epoch, digest), entries: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// A change produced the view `(epoch, digest)` by touching `touched`.
    pub fn record(&mut self, epoch: u64, digest: Digest, touched: Vec<NodeId>) {
        if self.entries.len() == self.capacity {
            let oldest = self.entries.pop_front().expect("a full log has entries");
            self.base = (oldest.epoch, oldest.digest);
        }
        self.entries.push_back(Entry { epoch, digest, touched });
    }

    /// Forget every change: the view jumped to `(epoch, digest)` in one step (an adopted view).
    pub fn reset(&mut self, epoch: u64, digest: Digest) {
        self.base = (epoch, digest);
        self.entries.clear();
    }

    /// The members touched since the view `(epoch, digest)`, or `None` when that view is not one
    /// the log passed through.
    pub fn touched_since(&self, epoch: u64, digest: Digest) -> Option<BTreeSet<NodeId>> {
        let after = if self.base == (epoch, digest) {
            0
        } else {
            let i = self.entries.binary_search_by_key(&epoch, |e| e.epoch).ok()?;
            if self.entries[i].digest != digest {
                return None;
            }
            i + 1
        };
        Some(self.entries.range(after..).flat_map(|e| e.touched.iter().copied()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn changes_since_a_view_the_log_passed_through() {
        let mut log = ChangeLog::new(3, Digest(30), 3);
        log.record(4, Digest(40), vec![NodeId(1)]);
        log.record(5, Digest(50), vec![NodeId(2), NodeId(1)]);
        log.record(7, Digest(70), vec![NodeId(3)]);
        assert_eq!(log.touched_since(3, Digest(30)), Some(ids(&[1, 2, 3])), "from the base");
        assert_eq!(log.touched_since(5, Digest(50)), Some(ids(&[3])));
        assert_eq!(log.touched_since(7, Digest(70)), Some(ids(&[])), "current: nothing");
        assert_eq!(log.touched_since(5, Digest(51)), None, "same epoch, another view");
        assert_eq!(log.touched_since(6, Digest(50)), None, "an epoch the log never had");
        assert_eq!(log.touched_since(2, Digest(20)), None, "older than the log");
        assert_eq!(log.touched_since(8, Digest(80)), None, "newer than the log");

        log.record(8, Digest(80), vec![NodeId(4)]);
        assert_eq!(log.touched_since(3, Digest(30)), None, "fell off the bounded log");
        assert_eq!(log.touched_since(4, Digest(40)), Some(ids(&[1, 2, 3, 4])), "the new base");

        log.reset(20, Digest(200));
        assert_eq!(log.touched_since(8, Digest(80)), None, "a jump forgets the past");
        assert_eq!(log.touched_since(20, Digest(200)), Some(ids(&[])));
    }
}
