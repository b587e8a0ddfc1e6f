//! Busy polling (`--busy-poll`, off by default): after each request (a client's, or a peer's
//! message) the node's event loop keeps polling its sockets without sleeping for a moment, so the
//! next request finds it awake.
//!
//! Why: a process asleep in `epoll_wait` is woken by whoever sends it data, inside that sender's
//! own system call: the client pays for the wake-up (on a VM, an interrupt to an idle virtual
//! CPU). Measured with `bench/resp-floor` against `redis-benchmark`, which uses a whole core
//! here: the load generator spent 11.0–11.6 µs of CPU per command against a server that sleeps
//! and 9.5–10.5 µs against the same server polling, so it sent 12–18% more commands per second
//! (docs/performance-log.md, "Figures of 2026-12-05"). The price is the node's core: it spins
//! for up to the window after every request, so under a steady trickle of requests it is always
//! busy. That is why it is off by default, and meant for nodes that have cores of their own.
//!
//! How: one task ([`BusyPoll::run`]) yields to the runtime in a loop while requests keep
//! coming. A task that yields makes Tokio's worker poll its sockets with a zero timeout before
//! running it again, instead of sleeping in `epoll_wait` until something arrives. Once no
//! request arrived for the window, the task sleeps until the next one ([`BusyPoll::noticed`]),
//! so an idle node costs nothing more than without it.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

/// The poller's state, shared with the request path.
pub struct BusyPoll {
    /// How long to keep polling after the last request; zero: never.
    window: Duration,
    /// A request arrived since the poller last looked.
    seen: AtomicBool,
    /// The poller sleeps until [`BusyPoll::noticed`] wakes it.
    asleep: AtomicBool,
    wake: Notify,
}

impl BusyPoll {
    pub fn new(window: Duration) -> BusyPoll {
        BusyPoll { window, seen: AtomicBool::new(false), asleep: AtomicBool::new(false), wake: Notify::new() }
    }

    /// A request arrived (a client's or a peer's). On the request path: with busy polling off, one comparison;
    /// on, two loads and (once per poller's look) a store.
    #[inline]
    pub fn noticed(&self) {
        if self.window.is_zero() {
            return;
        }
        if !self.seen.load(Relaxed) {
            self.seen.store(true, Relaxed);
        }
        if self.asleep.load(Relaxed) {
            self.wake.notify_one();
        }
    }

    /// Whether the poller sleeps (for tests).
    pub fn is_asleep(&self) -> bool {
        self.asleep.load(Relaxed)
    }

    /// Poll while requests come, sleep once none came for the window; until `stop`.
    ///
    /// A request that races the poller falling asleep at worst finds it asleep and not woken
    /// (the flags are relaxed): the next request wakes it. Nothing waits on the poller, so
    /// that costs one wake-up, never a request.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        if self.window.is_zero() {
            return;
        }
        let mut last = Instant::now();
        loop {
            if stop.has_changed().unwrap_or(true) {
                return;
            }
            if self.seen.swap(false, Relaxed) {
                last = Instant::now();
            } else if last.elapsed() >= self.window {
                let woken = self.wake.notified();
                self.asleep.store(true, Relaxed);
                if !self.seen.load(Relaxed) {
                    tokio::select! {
                        _ = woken => {}
                        _ = stop.changed() => return,
                    }
                }
                self.asleep.store(false, Relaxed);
                last = Instant::now();
            }
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 10 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_poller_sleeps_once_requests_stop_and_wakes_at_the_next_one() {
        let poll = Arc::new(BusyPoll::new(Duration::from_millis(5)));
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn({
            let poll = poll.clone();
            async move { poll.run(stop).await }
        });
        until("asleep with no request", || poll.is_asleep()).await;
        poll.noticed();
        until("awake after a request", || !poll.is_asleep()).await;
        until("asleep again once requests stopped", || poll.is_asleep()).await;
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops while asleep").expect("task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_poller_stops_while_polling() {
        let poll = Arc::new(BusyPoll::new(Duration::from_secs(3600)));
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn({
            let poll = poll.clone();
            async move { poll.run(stop).await }
        });
        poll.noticed();
        assert!(!poll.is_asleep(), "an hour's window: still polling");
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops while polling").expect("task");
    }

    #[tokio::test]
    async fn off_it_never_runs() {
        let poll = BusyPoll::new(Duration::ZERO);
        poll.noticed();
        let (_stop_tx, stop) = watch::channel(false);
        tokio::time::timeout(Duration::from_secs(10), poll.run(stop)).await.expect("returns at once");
    }
}
