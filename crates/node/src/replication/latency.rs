//! How long each peer usually takes to answer, and so how long to wait for it before asking
//! another replica as well (a hedged request, Cassandra's `speculative_retry`).
//!
//! A paused or overloaded node is a gray failure: its sockets still accept, it is still a member,
//! but nothing answers. Waiting for it costs the whole request timeout; giving up on it after
//! "much longer than it usually takes" costs one extra request. The estimate is Jacobson's, as TCP
//! computes its retransmission timeout: a moving average of the latency plus four times its mean
//! deviation, so a peer with steady answers is hedged soon and a jittery one later. It is
//! clamped between a floor (`--hedge-after`: below it, hedges would mostly duplicate work on a busy
//! machine) and a ceiling (the request timeout). Pure: the caller passes the measurements.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dkv_membership::NodeId;

/// Weight of a new sample in the moving averages (1/8 and 1/4, as TCP's).
const GAIN: f64 = 1.0 / 8.0;
const DEV_GAIN: f64 = 1.0 / 4.0;

#[derive(Clone, Copy, Debug, Default)]
struct Estimate {
    mean_us: f64,
    dev_us: f64,
}

pub struct Latencies {
    floor: Duration,
    ceiling: Duration,
    peers: Mutex<HashMap<NodeId, Estimate>>,
}

impl Latencies {
    pub fn new(floor: Duration, ceiling: Duration) -> Self {
        Latencies { floor, ceiling: ceiling.max(floor), peers: Mutex::new(HashMap::new()) }
    }

    /// Forget the peers `member` says are no longer members.
    pub fn retain(&self, member: impl Fn(NodeId) -> bool) {
        self.peers.lock().expect("latencies lock").retain(|id, _| member(*id));
    }

    /// One answer from `peer` that took `took`.
    pub fn observe(&self, peer: NodeId, took: Duration) {
        let sample = took.as_secs_f64() * 1e6;
        let mut peers = self.peers.lock().expect("latencies lock");
        match peers.get_mut(&peer) {
            Some(e) => {
                e.dev_us += DEV_GAIN * ((sample - e.mean_us).abs() - e.dev_us);
                e.mean_us += GAIN * (sample - e.mean_us);
            }
            None => {
                peers.insert(peer, Estimate { mean_us: sample, dev_us: sample / 2.0 });
            }
        }
    }

    /// How long to wait for `peer` before asking another replica too.
    pub fn hedge_after(&self, peer: NodeId) -> Duration {
        let estimate = self.peers.lock().expect("latencies lock").get(&peer).copied();
        let Some(e) = estimate else { return self.floor };
        Duration::from_secs_f64((e.mean_us + 4.0 * e.dev_us) / 1e6).clamp(self.floor, self.ceiling)
    }

    /// The longest of [`Latencies::hedge_after`] over `peers`: a request that asked all of them
    /// waits that long for them before asking another.
    pub fn hedge_after_all(&self, peers: impl IntoIterator<Item = NodeId>) -> Duration {
        peers.into_iter().map(|p| self.hedge_after(p)).max().unwrap_or(self.floor)
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
        for _ in 0..50 {
            l.observe(NodeId(1), Duration::from_micros(300));
        }
        assert_eq!(l.hedge_after(NodeId(1)), 5 * MS, "a fast, steady peer: the floor");
        for i in 0..50 {
            l.observe(NodeId(2), if i % 2 == 0 { 10 * MS } else { 30 * MS });
        }
        let slow = l.hedge_after(NodeId(2));
        assert!(slow > 30 * MS && slow < 100 * MS, "mean 20 ms, deviation 10 ms: {slow:?}");
        assert_eq!(l.hedge_after_all([NodeId(1), NodeId(2)]), slow);
    }

    #[test]
    fn the_wait_never_exceeds_the_ceiling() {
        let l = Latencies::new(5 * MS, 200 * MS);
        for _ in 0..10 {
            l.observe(NodeId(1), Duration::from_secs(3));
        }
        assert_eq!(l.hedge_after(NodeId(1)), 200 * MS);
    }
}
