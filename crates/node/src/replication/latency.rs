//! How long each peer usually takes to answer, and so how long to wait for it before asking
//! another replica as well (a hedged request, Cassandra's `speculative_retry`).
//!
//! A paused or overloaded node is a gray failure: its sockets still accept, it is still a member,
//! but nothing answers. Waiting for it costs the whole request timeout; giving up on it after
//! "much longer than it usually takes" costs one extra request. The estimate is Jacobson's, as TCP
//! computes its retransmission timeout: a moving average of the latency plus four times its mean
//! deviation, so a peer with steady answers is hedged soon and a jittery one later. It is
//! clamped between a floor (`--hedge-after`: below it, hedges would mostly duplicate work on a busy
//! machine) and a ceiling (a quarter of the request timeout, so a hedged request still has most
//! of its time to be answered by another replica). Pure: the caller passes the measurements.
//!
//! The estimate fades while its peer is silent, halving every [`HALF_LIFE`] since its last
//! answer. A stalled peer answers everything it was sent at once when it wakes, each answer
//! seconds late, and those samples took the estimate to the ceiling: the next stall of that peer
//! then held every read that asked it for the whole request timeout, which failed them (found by
//! a hunt, 2026-12-07: after one 10 s pause and 10 s idle, a second pause made reads fail with
//! 503 after 7.7 s). A peer that serves answers far more often than that, so for it the fading
//! is nothing; a peer that went silent is hedged sooner the longer it stays so, down to the floor.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dkv_membership::NodeId;

/// Weight of a new sample in the moving averages (1/8 and 1/4, as TCP's).
const GAIN: f64 = 1.0 / 8.0;
const DEV_GAIN: f64 = 1.0 / 4.0;

/// The time over which a silent peer's estimate halves (see the module doc).
pub const HALF_LIFE: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, Debug)]
struct Estimate {
    mean_us: f64,
    dev_us: f64,
    /// When the last answer came.
    at: Instant,
}

impl Estimate {
    /// The estimate as it stands at `now`, faded by the silence since its last answer.
    fn faded(self, now: Instant) -> Estimate {
        let silent = now.saturating_duration_since(self.at).as_secs_f64();
        let keep = 0.5f64.powf(silent / HALF_LIFE.as_secs_f64());
        Estimate { mean_us: self.mean_us * keep, dev_us: self.dev_us * keep, at: now }
    }
}

pub struct Latencies {
    floor: Duration,
    ceiling: Duration,
    peers: Mutex<HashMap<NodeId, Estimate>>,
}

impl Latencies {
    /// Hedges wait at least `floor`, and at most a quarter of `request_timeout`.
    pub fn new(floor: Duration, request_timeout: Duration) -> Self {
        Latencies { floor, ceiling: (request_timeout / 4).max(floor), peers: Mutex::new(HashMap::new()) }
    }

    /// Forget the peers `member` says are no longer members.
    pub fn retain(&self, member: impl Fn(NodeId) -> bool) {
        self.peers.lock().expect("latencies lock").retain(|id, _| member(*id));
    }

    /// One answer from `peer` that took `took`.
    pub fn observe(&self, peer: NodeId, took: Duration) {
        self.observe_at(peer, took, Instant::now());
    }

    fn observe_at(&self, peer: NodeId, took: Duration, now: Instant) {
        let sample = took.as_secs_f64() * 1e6;
        let mut peers = self.peers.lock().expect("latencies lock");
        match peers.get_mut(&peer) {
            Some(e) => {
                let mut f = e.faded(now);
                f.dev_us += DEV_GAIN * ((sample - f.mean_us).abs() - f.dev_us);
                f.mean_us += GAIN * (sample - f.mean_us);
                *e = self.capped(f);
            }
            None => {
                peers.insert(peer, self.capped(Estimate { mean_us: sample, dev_us: sample / 2.0, at: now }));
            }
        }
    }

    /// `e` scaled down to wait no longer than the ceiling: above it, it says no more (the hedge
    /// waits the ceiling either way), and kept there it would take longer to fade.
    fn capped(&self, e: Estimate) -> Estimate {
        let (wait, cap) = (e.mean_us + 4.0 * e.dev_us, self.ceiling.as_secs_f64() * 1e6);
        match wait > cap {
            true => Estimate { mean_us: e.mean_us * cap / wait, dev_us: e.dev_us * cap / wait, at: e.at },
            false => e,
        }
    }

    /// How long to wait for `peer` before asking another replica too.
    pub fn hedge_after(&self, peer: NodeId) -> Duration {
        self.hedge_after_at(peer, Instant::now())
    }

    fn hedge_after_at(&self, peer: NodeId, now: Instant) -> Duration {
        let estimate = self.peers.lock().expect("latencies lock").get(&peer).copied();
        let Some(e) = estimate.map(|e| e.faded(now)) else { return self.floor };
        Duration::from_secs_f64((e.mean_us + 4.0 * e.dev_us) / 1e6).clamp(self.floor, self.ceiling)
    }

    /// The longest of [`Latencies::hedge_after`] over `peers`: a request that asked all of them
    /// waits that long for them before asking another.
    pub fn hedge_after_all(&self, peers: impl IntoIterator<Item = NodeId>) -> Duration {
        let now = Instant::now();
        peers.into_iter().map(|p| self.hedge_after_at(p, now)).max().unwrap_or(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn steady_peers_are_hedged_at_the_floor_and_slow_ones_later() {
        let l = Latencies::new(5 * MS, 1000 * MS);
        assert_eq!(l.hedge_after(NodeId(1)), 5 * MS, "unknown peers: the floor");
        let now = Instant::now();
        for _ in 0..50 {
            l.observe_at(NodeId(1), Duration::from_micros(300), now);
        }
        assert_eq!(l.hedge_after_at(NodeId(1), now), 5 * MS, "a fast, steady peer: the floor");
        for i in 0..50 {
            l.observe_at(NodeId(2), if i % 2 == 0 { 10 * MS } else { 30 * MS }, now);
        }
        let slow = l.hedge_after_at(NodeId(2), now);
        assert!(slow > 30 * MS && slow < 100 * MS, "mean 20 ms, deviation 10 ms: {slow:?}");
        let longest = [NodeId(1), NodeId(2)].map(|p| l.hedge_after_at(p, now)).into_iter().max();
        assert_eq!(longest, Some(slow));
    }

    #[test]
    fn the_wait_never_exceeds_a_quarter_of_the_request_timeout() {
        let l = Latencies::new(5 * MS, 800 * MS);
        let now = Instant::now();
        for _ in 0..10 {
            l.observe_at(NodeId(1), Duration::from_secs(3), now);
        }
        assert_eq!(l.hedge_after_at(NodeId(1), now), 200 * MS);
    }

    /// A peer that woke from a stall answers all it was sent, seconds late: its estimate goes to
    /// the ceiling, and fades back to the floor while it stays silent (stalled again), instead of
    /// holding every read that asks it for the ceiling.
    #[test]
    fn a_silent_peers_estimate_fades_to_the_floor() {
        let l = Latencies::new(20 * MS, 5000 * MS);
        let woke = Instant::now();
        for _ in 0..50 {
            l.observe_at(NodeId(1), Duration::from_micros(300), woke);
        }
        for i in 0..200 {
            l.observe_at(NodeId(1), Duration::from_millis(10_000 - i * 40), woke);
        }
        let woken = l.hedge_after_at(NodeId(1), woke);
        assert!(woken > 1200 * MS && woken <= 1250 * MS, "the late answers: the ceiling, {woken:?}");
        let later = |ms| l.hedge_after_at(NodeId(1), woke + ms * MS);
        assert!(later(250) < 700 * MS, "halved after one half-life: {:?}", later(250));
        assert_eq!(later(2_000), 20 * MS, "silent for 2 s: the floor");
        // A steady peer's answers, a millisecond apart, keep its estimate where it was.
        for i in 0..50 {
            l.observe_at(NodeId(2), if i % 2 == 0 { 10 * MS } else { 30 * MS }, woke + i * MS);
        }
        let steady = l.hedge_after_at(NodeId(2), woke + 50 * MS);
        assert!(steady > 30 * MS && steady < 100 * MS, "mean 20 ms, deviation 10 ms: {steady:?}");
    }
}
