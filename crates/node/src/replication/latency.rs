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
//! is nothing; a peer that went silent is hedged sooner the longer it stays so, down to the
//! floor. (Fading only while the peer is asked, tried on 2026-12-08 so that a quiet peer slower
//! than the floor is not hedged every time, kept a woken peer's estimate at the ceiling through
//! idle time, and a second stall held one read per node for the ceiling: p99 1.0–1.25 s in
//! `stall.rs`. Not kept.)
//!
//! A peer asked and silent for longer than its (faded) hedge wait is *suspect*, and requests ask
//! it last ([`Latencies::plan`]): a read or a forward that asked a paused replica first paid
//! a hedge wait each time, two for a forwarded read (the forward's, then its coordinator's), and
//! a mixed load through five nodes lost 80–88% of its requests per second while one was paused
//! (found by a hunt, 2026-12-07). Asked last, a suspect may not be asked at all, so it would stay
//! suspect: a silence is believed for one request timeout, after which the peer is asked first
//! again (a probe: the requests of the next hedge wait, at the floor by then, pay it), and its
//! silence counts from then.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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
}

impl Estimate {
    /// The estimate faded by `silent`, a time the peer was asked and answered nothing.
    fn faded(self, silent: Duration) -> Estimate {
        if silent.is_zero() {
            return self; // the common case, without the power
        }
        let keep = 0.5f64.powf(silent.as_secs_f64() / HALF_LIFE.as_secs_f64());
        Estimate { mean_us: self.mean_us * keep, dev_us: self.dev_us * keep }
    }

    fn wait_us(self) -> f64 {
        self.mean_us + 4.0 * self.dev_us
    }
}

/// What is known of one peer.
#[derive(Clone, Copy, Debug, Default)]
struct Peer {
    /// None until its first answer.
    estimate: Option<Estimate>,
    /// When it last answered: the estimate is as of then, and fades from then.
    answered_at: Option<Instant>,
    /// The first request to it since its last answer, if any.
    quiet_since: Option<Instant>,
}

impl Peer {
    /// How long it has been asked and silent, at `now`.
    fn silent(&self, now: Instant) -> Duration {
        self.quiet_since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// The estimate as it stands at `now`, faded by the time since its last answer.
    fn estimate_at(&self, now: Instant) -> Option<Estimate> {
        let since = self.answered_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.estimate.map(|e| e.faded(since))
    }
}

pub struct Latencies {
    floor: Duration,
    ceiling: Duration,
    /// How long a silence is believed (see the module doc): the request timeout.
    window: Duration,
    peers: Mutex<HashMap<NodeId, Peer, BuildHasherDefault<IdHasher>>>,
}

/// Node ids are random 64-bit numbers already: hashed as they are, not through SipHash, on a
/// map looked up several times per replicated read.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Latencies {
    /// Hedges wait at least `floor`, and at most a quarter of `request_timeout`.
    pub fn new(floor: Duration, request_timeout: Duration) -> Self {
        let ceiling = (request_timeout / 4).max(floor);
        Latencies { floor, ceiling, window: request_timeout.max(floor), peers: Mutex::default() }
    }

    /// Forget the peers `member` says are no longer members.
    pub fn retain(&self, member: impl Fn(NodeId) -> bool) {
        self.peers.lock().expect("latencies lock").retain(|id, _| member(*id));
    }

    /// A request to `peer` begins now (the time is returned, for [`Latencies::answered`]).
    pub fn asked(&self, peer: NodeId) -> Instant {
        let now = Instant::now();
        self.ask_at(peer, now);
        now
    }

    fn ask_at(&self, peer: NodeId, now: Instant) {
        let mut peers = self.peers.lock().expect("latencies lock");
        let p = peers.entry(peer).or_default();
        match p.quiet_since {
            None => p.quiet_since = Some(now),
            // Silent for a whole window: this request probes it.
            Some(t) if now.saturating_duration_since(t) >= self.window => p.quiet_since = Some(now),
            Some(_) => {}
        }
    }

    /// `peer` answered a request begun at `started` ([`Latencies::asked`]).
    pub fn answered(&self, peer: NodeId, started: Instant) {
        let now = Instant::now();
        self.answer_at(peer, now.saturating_duration_since(started), now);
    }

    /// An answer at `now` that took `took`: a sample of the estimate as it has faded since the
    /// last answer; it ends the silence.
    fn answer_at(&self, peer: NodeId, took: Duration, now: Instant) {
        let sample = took.as_secs_f64() * 1e6;
        let mut peers = self.peers.lock().expect("latencies lock");
        let Some(p) = peers.get_mut(&peer) else { return }; // forgotten meanwhile: no longer a member
        let e = match p.estimate_at(now) {
            Some(mut e) => {
                e.dev_us += DEV_GAIN * ((sample - e.mean_us).abs() - e.dev_us);
                e.mean_us += GAIN * (sample - e.mean_us);
                e
            }
            None => Estimate { mean_us: sample, dev_us: sample / 2.0 },
        };
        p.estimate = Some(self.capped(e));
        p.answered_at = Some(now);
        p.quiet_since = None;
    }

    /// One request to `peer` that was answered after `took`, ending now (for tests).
    #[cfg(test)]
    pub(crate) fn observe(&self, peer: NodeId, took: Duration) {
        let now = Instant::now();
        self.ask_at(peer, now.checked_sub(took).unwrap_or(now));
        self.answer_at(peer, took, now);
    }

    /// `e` scaled down to wait no longer than the ceiling: above it, it says no more (the hedge
    /// waits the ceiling either way), and kept there it would take longer to fade.
    fn capped(&self, e: Estimate) -> Estimate {
        let (wait, cap) = (e.wait_us(), self.ceiling.as_secs_f64() * 1e6);
        match wait > cap {
            true => Estimate { mean_us: e.mean_us * cap / wait, dev_us: e.dev_us * cap / wait },
            false => e,
        }
    }

    /// How long to wait for `peer` before asking another replica too (for tests: requests ask
    /// [`Latencies::plan`], which says it for the peers they ask first).
    #[cfg(test)]
    pub(crate) fn hedge_after(&self, peer: NodeId) -> Duration {
        self.hedge_after_at(peer, Instant::now())
    }

    #[cfg(test)]
    fn hedge_after_at(&self, peer: NodeId, now: Instant) -> Duration {
        let estimate = self.peers.lock().expect("latencies lock").get(&peer).and_then(|p| p.estimate_at(now));
        self.wait_of(estimate)
    }

    fn wait_of(&self, estimate: Option<Estimate>) -> Duration {
        let Some(e) = estimate else { return self.floor };
        self.clamped(e.wait_us())
    }

    /// A wait of `us` microseconds between the floor and the ceiling (whole microseconds:
    /// cheaper than `Duration::from_secs_f64`, on every replicated read).
    fn clamped(&self, us: f64) -> Duration {
        let (floor, ceiling) = (self.floor.as_micros() as f64, self.ceiling.as_micros() as f64);
        Duration::from_micros(us.clamp(floor, ceiling) as u64)
    }

    /// `peers` in the same order, except that suspect ones come last (see the module doc); and
    /// how long to wait for the first `first` of them so ordered before asking another (the
    /// longest of their estimates, within the floor and the ceiling). One lock and one clock
    /// reading: a replicated read does this on every request.
    pub fn plan<T>(&self, peers: &mut [T], id: impl Fn(&T) -> NodeId, first: usize) -> Duration {
        let known = self.peers.lock().expect("latencies lock");
        // Under load every peer answered a moment ago and is being waited for a moment: the
        // clock is read once, the suspicion worked out only for a peer silent for longer than
        // the floor (the least any wait is), and the fading (a power) only past a millisecond
        // since the last answer (it would take off less than 0.3%).
        let now = Instant::now();
        let mut any_suspect = false;
        let mut wait_us = 0f64;
        for (i, t) in peers.iter().enumerate() {
            let Some(p) = known.get(&id(t)) else { continue };
            let waited_long = p.quiet_since.is_some_and(|since| now.saturating_duration_since(since) > self.floor);
            any_suspect |= waited_long && self.suspect(p, now);
            if i < first {
                let faded = p.answered_at.is_some_and(|t| now.saturating_duration_since(t) > Duration::from_millis(1));
                let estimate = if faded { p.estimate_at(now) } else { p.estimate };
                wait_us = wait_us.max(estimate.map_or(0.0, Estimate::wait_us));
            }
        }
        if !any_suspect {
            return self.clamped(wait_us);
        }
        // Rare: some peer is suspect. Ordered, and the wait taken again over the new first ones.
        let suspect = |t: &T| known.get(&id(t)).is_some_and(|p| self.suspect(p, now));
        peers.sort_by_key(suspect); // stable: false before true
        let wait = |t: &T| known.get(&id(t)).and_then(|p| p.estimate_at(now)).map_or(0.0, Estimate::wait_us);
        self.clamped(peers.iter().take(first).map(wait).fold(0.0, f64::max))
    }

    fn suspect(&self, p: &Peer, now: Instant) -> bool {
        if p.quiet_since.is_none() {
            return false; // the common case: no clock arithmetic
        }
        let silent = p.silent(now);
        silent > self.wait_of(p.estimate_at(now)) && silent < self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    impl Latencies {
        /// One request to `peer` at `at`, answered after `took`.
        pub(crate) fn observe_at(&self, peer: NodeId, took: Duration, at: Instant) {
            self.ask_at(peer, at);
            self.answer_at(peer, took, at);
        }
    }

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
        let longest = l.plan(&mut [NodeId(1), NodeId(2)], |&id| id, 2);
        assert_eq!(longest, slow.max(l.hedge_after(NodeId(1))));
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
    /// the ceiling, and fades back to the floor while it stays silent (stalled again, or idle),
    /// instead of holding every read that asks it for the ceiling.
    #[test]
    fn a_silent_peers_estimate_fades_to_the_floor() {
        let l = Latencies::new(20 * MS, 5000 * MS);
        let woke = Instant::now();
        for _ in 0..50 {
            l.observe_at(NodeId(1), Duration::from_micros(300), woke);
        }
        for i in 0..200 {
            l.ask_at(NodeId(1), woke);
            l.answer_at(NodeId(1), Duration::from_millis(10_000 - i * 40), woke);
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

    /// A peer asked and silent for longer than its own hedge wait is asked last; one that answers
    /// as it usually does, or is not asked, keeps its place.
    #[test]
    fn a_silent_peer_is_asked_last() {
        let l = Latencies::new(20 * MS, 5000 * MS);
        let start = Instant::now();
        for id in [1, 2, 3] {
            l.observe_at(NodeId(id), MS, start);
        }
        let mut order = [NodeId(1), NodeId(2), NodeId(3)];
        l.plan(&mut order, |&id| id, 1);
        assert_eq!(order, [NodeId(1), NodeId(2), NodeId(3)]);
        // Node 1 asked 30 ms ago (past its 20 ms wait) and silent; node 2 asked just now.
        l.ask_at(NodeId(1), Instant::now() - 30 * MS);
        // (Its ask is put a second ahead: within its wait however slow this machine runs.)
        l.ask_at(NodeId(2), Instant::now() + 1000 * MS);
        l.plan(&mut order, |&id| id, 1);
        assert_eq!(order, [NodeId(2), NodeId(3), NodeId(1)]);
        // It answers: no longer suspect.
        l.answer_at(NodeId(1), 30 * MS, Instant::now());
        l.answer_at(NodeId(2), MS, Instant::now());
        let mut order = [NodeId(1), NodeId(2), NodeId(3)];
        l.plan(&mut order, |&id| id, 1);
        assert_eq!(order, [NodeId(1), NodeId(2), NodeId(3)]);
        // Silent for longer than the request timeout: believed no longer, asked first again.
        l.ask_at(NodeId(1), Instant::now() - 6_000 * MS);
        l.plan(&mut order, |&id| id, 1);
        assert_eq!(order, [NodeId(1), NodeId(2), NodeId(3)]);
    }
}
