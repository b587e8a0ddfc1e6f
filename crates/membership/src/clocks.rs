//! The cluster's clock, as the seed sees it: the median of its members' clocks.
//!
//! A node must know how far its wall clock is from the cluster's (see the node's `life/clock.rs`
//! for why). Every node already reads the seed's clock with every heartbeat, NTP-style, and can
//! report that reading back with the next one. The seed then holds every member's offset from its
//! own clock, and the median of those offsets, with the seed's own (zero) among them to break a
//! tie between an even number of members, is the cluster's clock in the seed's terms. A node's offset from the cluster is its offset from the seed minus
//! that median. So nodes learn their offset from their heartbeats alone, and idle nodes need not
//! read each other's clocks every interval: with 100 nodes at 1 s heartbeats those reads were
//! most of the nodes' idle wake-ups (`bench/membership.sh`).
//!
//! The median does not trust the seed's clock more than any member's: a seed whose clock is off
//! moves every member's offset from it by the same amount, and the median with it, so the
//! differences stay right. One member far off is outvoted, as before.
//!
//! The median speaks for the cluster only once it is over a majority of the members. A seed
//! restarted with its record knows every member at once but has no report yet: the first member
//! to report was the median alone, and a node whose clock was a year ahead was told it was within
//! the bound and coordinated writes again until its next heartbeat, which replaced acknowledged
//! values with year-ahead ones that refused every later write; a correct node that reported in the
//! same moment was told it was a year behind (found by reading, 2026-12-07). Until a majority
//! reported, the seed gives no cluster clock, and nodes fall back on reading each other's.
//!
//! [`ClockCensus`] is pure: the seed passes the reports and the time.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{json_int, NodeId};

/// What a heartbeat answer tells a node of the cluster's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterClock {
    /// The median clock minus the seed's, in ms: the median of the members' reported offsets
    /// from the seed's clock and the seed's own (zero).
    #[serde(deserialize_with = "json_int::i64")]
    pub offset_ms: i64,
    /// The error of the reading that decided the median (half its round trip), in ms.
    #[serde(deserialize_with = "json_int::i64")]
    pub error_ms: i64,
    /// Clocks the median is over: the members with a fresh report, and the seed when they are
    /// an even number.
    #[serde(deserialize_with = "json_int::u64")]
    pub clocks: u64,
}

#[derive(Clone, Copy, Debug)]
struct Report {
    offset_ms: i64,
    error_ms: i64,
    at_ms: u64,
}

/// The members' clock readings of the seed, and their median, recomputed at most every
/// `every_ms`: a heartbeat costs a map insert, and the median's O(n) pass is shared by all the
/// heartbeats of that period (at 10 000 members and 250 ms, well under a millisecond a second).
pub struct ClockCensus {
    /// Reports older than this are left out (a member that stopped heartbeating).
    ttl_ms: u64,
    every_ms: u64,
    reports: HashMap<NodeId, Report>,
    /// When the median was computed, the median, and how many members' reports it is over.
    cached: Option<(u64, ClusterClock, usize)>,
}

impl ClockCensus {
    pub fn new(ttl_ms: u64, every_ms: u64) -> Self {
        ClockCensus { ttl_ms, every_ms, reports: HashMap::new(), cached: None }
    }

    /// Member `id`'s clock minus the seed's is `offset_ms`, give or take `error_ms`.
    pub fn report(&mut self, id: NodeId, offset_ms: i64, error_ms: i64, now_ms: u64) {
        let report = Report { offset_ms, error_ms: error_ms.max(0), at_ms: now_ms };
        if self.reports.insert(id, report).is_none() {
            // A member the median is not over yet: computed again at the next ask.
            self.cached = None;
        }
    }

    /// The cluster's clock at `now_ms`, once fresh reports came from a majority of the
    /// cluster's `members` (see the module doc).
    pub fn cluster(&mut self, now_ms: u64, members: usize) -> Option<ClusterClock> {
        let (clock, over) = match self.cached {
            Some((at, clock, over)) if now_ms.saturating_sub(at) < self.every_ms && at <= now_ms => (clock, over),
            _ => {
                let (clock, over) = self.median(now_ms);
                self.cached = Some((now_ms, clock, over));
                (clock, over)
            }
        };
        (over > members / 2).then_some(clock)
    }

    /// The median of the fresh reports, and of the seed's own clock when they are an even
    /// number (none, or two members: the seed breaks the tie); stale reports are dropped.
    ///
    /// Always an odd count, so the median is one clock with as many on either side. With the
    /// seed's clock among an even count (three members and the seed, one member and the seed) the
    /// median was the upper of the two middle ones, which sided with the clocks ahead: with the
    /// seed and one member a year ahead of two others, the two were told they were a year behind
    /// and counted deadlines a year on, so their expiry sweep ended every value with a deadline
    /// (found by reading, 2026-12-06). One member alone is now its own median: nothing tells
    /// which of it and the seed is off, and a node that trusts its own clock loses nothing.
    ///
    /// Also how many members' reports it is over.
    fn median(&mut self, now_ms: u64) -> (ClusterClock, usize) {
        let ttl = self.ttl_ms;
        self.reports.retain(|_, r| now_ms.saturating_sub(r.at_ms) <= ttl);
        let mut all: Vec<(i64, i64)> = self.reports.values().map(|r| (r.offset_ms, r.error_ms)).collect();
        let over = all.len();
        if all.len().is_multiple_of(2) {
            all.push((0, 0));
        }
        let mid = all.len() / 2;
        let (offset_ms, error_ms) = *all.select_nth_unstable(mid).1;
        (ClusterClock { offset_ms, error_ms, clocks: all.len() as u64 }, over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_outvotes_one_clock_far_off_and_counts_the_seed() {
        let mut c = ClockCensus::new(10_000, 250);
        assert_eq!(c.cluster(0, 0), None, "the seed alone: no member reported");
        let year = 365 * 24 * 3600 * 1000i64;
        c.report(NodeId(1), 40, 2, 100);
        c.report(NodeId(2), 50, 3, 100);
        c.report(NodeId(3), year, 1, 100);
        // Sorted: 40, 50, a year (three members: the seed's clock left out): the median is 50.
        assert_eq!(c.cluster(1_000, 0).unwrap(), ClusterClock { offset_ms: 50, error_ms: 3, clocks: 3 });
        // Two clocks, one a year ahead: the one behind, with the seed, decides.
        let mut two = ClockCensus::new(10_000, 250);
        two.report(NodeId(1), 0, 1, 0);
        two.report(NodeId(2), year, 1, 0);
        assert_eq!(two.cluster(0, 0).unwrap().offset_ms, 0);
    }

    #[test]
    fn an_even_count_of_members_takes_the_seed_as_tie_breaker_and_an_odd_one_does_not() {
        let year = 365 * 24 * 3600 * 1000i64;
        // The seed and one member a year ahead of two others: the two decide, not the seed.
        let mut c = ClockCensus::new(10_000, 0);
        c.report(NodeId(1), 0, 1, 0);
        c.report(NodeId(2), -year, 1, 0);
        c.report(NodeId(3), -year, 1, 0);
        assert_eq!(c.cluster(0, 0).unwrap(), ClusterClock { offset_ms: -year, error_ms: 1, clocks: 3 });
        // One member: its own clock, not the seed's.
        let mut one = ClockCensus::new(10_000, 0);
        one.report(NodeId(1), year, 1, 0);
        assert_eq!(one.cluster(0, 0).unwrap(), ClusterClock { offset_ms: year, error_ms: 1, clocks: 1 });
    }

    #[test]
    fn the_median_is_reused_for_a_while_and_stale_reports_are_dropped() {
        let mut c = ClockCensus::new(1_000, 250);
        c.report(NodeId(1), 100, 1, 0);
        c.report(NodeId(2), 100, 1, 0);
        assert_eq!(c.cluster(0, 0).unwrap().offset_ms, 100);
        c.report(NodeId(1), -5, 1, 100);
        assert_eq!(c.cluster(100, 0).unwrap().offset_ms, 100, "within `every_ms`: the cached median");
        c.report(NodeId(3), -5, 1, 100);
        c.report(NodeId(4), -5, 1, 100);
        assert_eq!(c.cluster(100, 0).unwrap().offset_ms, -5, "new members: computed again");
        c.report(NodeId(1), 100, 1, 100);
        assert_eq!(c.cluster(350, 0).unwrap(), ClusterClock { offset_ms: 0, error_ms: 0, clocks: 5 });
        // Member 2 stopped reporting: after the TTL only 1, 3 and 4 count.
        assert_eq!(c.cluster(1_050, 0).unwrap(), ClusterClock { offset_ms: -5, error_ms: 1, clocks: 3 });
        assert_eq!(c.cluster(2_000, 0), None, "no report left");
        // A clock that went back is no reason to keep an old median.
        c.report(NodeId(5), 7, 1, 10);
        c.report(NodeId(6), 7, 1, 10);
        assert_eq!(c.cluster(10, 0).unwrap().offset_ms, 7);
    }

    /// A seed restarted with its record knows its three members before any reported: one
    /// report is no majority, and the clock a year ahead is not the cluster's.
    #[test]
    fn no_cluster_clock_until_a_majority_of_the_members_reported() {
        let year = 365 * 24 * 3600 * 1000i64;
        let mut c = ClockCensus::new(10_000, 250);
        assert_eq!(c.cluster(0, 3), None, "no report");
        c.report(NodeId(1), year, 1, 0);
        assert_eq!(c.cluster(0, 3), None, "one of three: the clock a year ahead alone");
        c.report(NodeId(2), 0, 1, 10);
        let two = c.cluster(10, 3).expect("two of three, asked again at once: a new member's report is counted");
        assert_eq!(two, ClusterClock { offset_ms: 0, error_ms: 1, clocks: 3 }, "with the seed breaking the tie");
        c.report(NodeId(3), 5, 1, 20);
        assert_eq!(c.cluster(20, 3).map(|c| c.offset_ms), Some(5));
        assert_eq!(c.cluster(20, 7), None, "three of seven");
    }

    #[test]
    fn extreme_reports_are_ordered_without_overflow() {
        let mut c = ClockCensus::new(u64::MAX, 0);
        c.report(NodeId(1), i64::MIN, -4, 0);
        c.report(NodeId(2), i64::MAX, i64::MAX, 0);
        let clock = c.cluster(0, 0).unwrap();
        assert_eq!((clock.offset_ms, clock.clocks), (0, 3));
        c.report(NodeId(3), i64::MAX, 0, 0);
        assert_eq!(c.cluster(0, 0).unwrap().offset_ms, i64::MAX);
        assert_eq!(ClockCensus::new(0, 0).cluster(u64::MAX, 0), None);
    }
}
