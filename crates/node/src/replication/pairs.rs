//! Which peers a periodic anti-entropy round compares with, and which it may skip.
//!
//! An idle cluster's periodic rounds found every pair equal and still cost a summary and its
//! answer per pair, each a wake-up on both sides: 100 idle nodes at the default 60 s interval
//! compared about 5 000 pairs a minute, which doubled what the idle nodes cost (docs/performance-log.md,
//! "Membership at scale"). A pair found equal has nothing to compare until one of its two stores
//! changes, and each side knows whether its own store changed: the engine's generation moves
//! with every entry stored or removed. So:
//!
//! * A comparison of everything (the kept digests, no horizon) that finds no bucket different is
//!   recorded by both sides: the one that asked sees an empty diff, the one that answered
//!   compared the buckets itself. Each records the membership epoch and its own store's
//!   generation, read *before* its digests, so a write that raced the digests moves it.
//! * A periodic round skips a peer while that record holds: the same epoch, and this store's
//!   generation unchanged. Whatever the peer stored since moved the peer's own generation. A
//!   round after a membership change compares with every peer regardless. Letting one that runs
//!   again (a peer failed it) skip the peers already found equal was tried and taken out: a
//!   200-node cold start then spent 150–190% of a core from 30 to 60 s after the start, against
//!   35–70% without it, for a reason not found yet (docs/performance-log.md, "Idle pairs left alone").
//! * A side whose store changed compares: the lower id, as every round did before; the higher id
//!   only when the lower one has not compared with it within [`QUIET_WINDOW`] intervals (it
//!   skipped: its own store is as it was). So a pair whose stores both change, under writes, is
//!   still compared once an interval, not twice.
//!
//! A difference therefore waits at most about two and a half intervals for its comparison (a
//! change on the higher id just after the lower one compared), where it waited one. Anti-entropy
//! is the last of the repairs: hints and read repair come first, and rounds after a membership
//! change and a restart compare with every peer regardless.
//!
//! Records are made only with peers that answered [`Kind::SyncSummaryTracked`] and so follow
//! this rule themselves: a peer of an earlier release never starts a round as the higher id, so
//! a skip on its account could leave a difference for good.
//!
//! [`Kind::SyncSummaryTracked`]: crate::transport::wire::Kind::SyncSummaryTracked

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dkv_membership::NodeId;

/// How many anti-entropy intervals the higher id of a pair waits for the lower one to compare
/// before it does so itself: the lower one's rounds come about an interval apart (more while a
/// round takes long), and a window of one would have both compare under writes.
pub const QUIET_WINDOW: f64 = 1.5;

/// What this node knows of its comparisons with each peer.
#[derive(Default)]
pub struct Pairs {
    by_peer: Mutex<HashMap<NodeId, Pair>>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Pair {
    /// The last comparison of everything that found the two stores equal: the membership epoch
    /// and this store's generation then.
    pub equal: Option<Equal>,
    /// When a comparison with the peer last began, in either direction.
    pub compared_at: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Equal {
    pub epoch: u64,
    pub generation: u64,
}

/// Whether a round of `me` compares with `peer`, given what it knows of the pair, the epoch, its
/// store's generation now (`None`: an engine that keeps none, compared as before), whether the
/// round is `settling` (after a membership change: every peer), and the round's `window` (the
/// interval times [`QUIET_WINDOW`]).
pub fn compares(
    me: NodeId,
    peer: NodeId,
    pair: Option<&Pair>,
    (epoch, generation): (u64, Option<u64>),
    settling: bool,
    now: Instant,
    window: Duration,
) -> bool {
    if settling {
        return true;
    }
    let Some(generation) = generation else { return me < peer };
    if pair.and_then(|p| p.equal) == Some(Equal { epoch, generation }) {
        return false; // nothing changed here since the pair was equal
    }
    if me < peer {
        return true;
    }
    // The higher id: the lower one compares while its own store changes.
    pair.and_then(|p| p.compared_at).is_none_or(|at| now.saturating_duration_since(at) >= window)
}

impl Pairs {
    /// Forget the peers `member` says are no longer members.
    pub fn retain(&self, member: impl Fn(NodeId) -> bool) {
        self.by_peer.lock().expect("pairs lock").retain(|id, _| member(*id));
    }

    /// Whether a round compares with `peer` now (see [`compares`]).
    pub fn compares(
        &self,
        (me, peer): (NodeId, NodeId),
        now: (u64, Option<u64>),
        settling: bool,
        interval: Duration,
    ) -> bool {
        let window = interval.mul_f64(QUIET_WINDOW);
        let by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        compares(me, peer, by_peer.get(&peer), now, settling, Instant::now(), window)
    }

    /// A comparison with `peer` begins, in either direction.
    pub fn comparing(&self, peer: NodeId) {
        self.with(peer, |p| p.compared_at = Some(Instant::now()));
    }

    /// A comparison of everything with `peer` under `epoch` found no bucket different; this
    /// store's generation was `generation` before its digests were read.
    pub fn found_equal(&self, peer: NodeId, epoch: u64, generation: u64) {
        self.with(peer, |p| p.equal = Some(Equal { epoch, generation }));
    }

    fn with(&self, peer: NodeId, f: impl FnOnce(&mut Pair)) {
        f(self.by_peer.lock().unwrap_or_else(|e| e.into_inner()).entry(peer).or_default());
    }

    #[cfg(test)]
    pub fn get(&self, peer: NodeId) -> Option<Pair> {
        self.by_peer.lock().unwrap_or_else(|e| e.into_inner()).get(&peer).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(90);

    fn equal(epoch: u64, generation: u64) -> Option<Equal> {
        Some(Equal { epoch, generation })
    }

    #[test]
    fn a_pair_found_equal_is_skipped_until_this_store_or_the_epoch_changes() {
        let now = Instant::now();
        let (low, high) = (NodeId(1), NodeId(2));
        let pair = Pair { equal: equal(7, 40), compared_at: Some(now) };
        for (me, peer) in [(low, high), (high, low)] {
            assert!(!compares(me, peer, Some(&pair), (7, Some(40)), false, now, WINDOW), "{me} unchanged");
            assert!(compares(me, peer, Some(&pair), (8, Some(40)), false, now + WINDOW, WINDOW), "{me}: another epoch");
            assert!(compares(me, peer, Some(&pair), (7, Some(41)), false, now + WINDOW, WINDOW), "{me}: a write since");
        }
    }

    #[test]
    fn the_lower_id_compares_when_its_store_changed_and_the_higher_one_when_the_lower_is_quiet() {
        let now = Instant::now();
        let (low, high) = (NodeId(1), NodeId(2));
        let never = Pair::default();
        assert!(compares(low, high, Some(&never), (7, Some(1)), false, now, WINDOW), "nothing known: the lower id");
        assert!(compares(low, high, None, (7, Some(1)), false, now, WINDOW));
        assert!(compares(high, low, None, (7, Some(1)), false, now, WINDOW), "no comparison yet at all");
        // The lower id compared a moment ago: the higher one leaves it to it.
        let lately = Pair { equal: equal(7, 40), compared_at: Some(now) };
        assert!(!compares(high, low, Some(&lately), (7, Some(41)), false, now + WINDOW / 2, WINDOW));
        // It has not compared for a window: its store is as it was, so the higher id compares.
        assert!(compares(high, low, Some(&lately), (7, Some(41)), false, now + WINDOW, WINDOW));
        // The lower id compares whenever its store changed, however lately.
        assert!(compares(low, high, Some(&lately), (7, Some(41)), false, now, WINDOW));
    }

    #[test]
    fn a_settling_round_compares_with_every_peer() {
        let now = Instant::now();
        let lately = Pair { equal: equal(7, 40), compared_at: Some(now) };
        for (me, peer) in [(NodeId(1), NodeId(2)), (NodeId(2), NodeId(1))] {
            assert!(compares(me, peer, Some(&lately), (7, Some(40)), true, now, WINDOW), "{me}: equal, unchanged");
            assert!(
                compares(me, peer, Some(&lately), (7, Some(41)), true, now, WINDOW),
                "{me}: changed, however lately"
            );
            assert!(compares(me, peer, Some(&lately), (8, Some(40)), true, now, WINDOW), "{me}: another view");
            assert!(compares(me, peer, None, (7, None), true, now, WINDOW), "{me}: no generation");
        }
    }

    #[test]
    fn an_engine_without_a_generation_compares_as_before() {
        let now = Instant::now();
        let pair = Pair { equal: equal(7, 40), compared_at: Some(now) };
        assert!(compares(NodeId(1), NodeId(2), Some(&pair), (7, None), false, now, WINDOW));
        assert!(!compares(NodeId(2), NodeId(1), None, (7, None), false, now, WINDOW));
    }

    #[test]
    fn records_are_kept_per_peer() {
        let pairs = Pairs::default();
        pairs.found_equal(NodeId(2), 7, 40);
        pairs.comparing(NodeId(3));
        assert_eq!(pairs.get(NodeId(2)).and_then(|p| p.equal), equal(7, 40));
        assert!(pairs.get(NodeId(2)).is_some_and(|p| p.compared_at.is_none()));
        assert!(pairs.get(NodeId(3)).is_some_and(|p| p.equal.is_none() && p.compared_at.is_some()));
        let interval = Duration::from_secs(60);
        assert!(!pairs.compares((NodeId(1), NodeId(2)), (7, Some(40)), false, interval));
        assert!(pairs.compares((NodeId(1), NodeId(3)), (7, Some(40)), false, interval));
    }
}
