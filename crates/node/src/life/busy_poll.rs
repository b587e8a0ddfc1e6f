//! Busy polling (`--busy-poll`, off by default): after each request (a client's, or a peer's
//! message) the node's event loop keeps polling its sockets without sleeping for a moment, so the
//! next request finds it awake.
//!
//! Why: a process asleep in `epoll_wait` is woken by whoever sends it data, inside that sender's
//! own system call: the client pays for the wake-up (on a VM, an interrupt to an idle virtual
//! CPU). Measured with `bench/resp-floor` against `redis-benchmark`, which uses a whole core
//! here: the load generator spent 10.8–11.6 µs of CPU per command against a server that sleeps
//! and 9.5–10.5 µs against the same server polling, so it sent 13–18% more commands per second;
//! one connection's GETs took 29 µs where they took 52 (docs/performance-log.md, "Figures of
//! 2026-12-05 early morning"). The price is the node's cores: they spin for up to the window after
//! every request, so under a steady trickle of requests they are always busy. That is why it is
//! off by default, and meant for nodes that have cores of their own.
//!
//! How: a poller task per worker thread of the runtime ([`BusyPoll::run`]) yields to the runtime
//! in a loop while requests keep coming. A worker whose task yielded polls its sockets with a
//! zero timeout before running it again, instead of sleeping in `epoll_wait` until something
//! arrives. Every worker needs one: a worker with nothing to run would otherwise take the
//! sockets and sleep on them, and the others cannot poll them meanwhile (Tokio's workers share
//! one `epoll`). So a node polls on as many cores as it has workers: pin it, or set
//! `TOKIO_WORKER_THREADS`. Once no request arrived for the window, the pollers sleep until the
//! next one ([`BusyPoll::noticed`]), so an idle node costs nothing more than without it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

/// The pollers' state, shared with the request path.
pub struct BusyPoll {
    /// How long to keep polling after the last request; zero: never.
    window: Duration,
    /// Requests so far: a poller that sees it move keeps polling.
    requests: AtomicU64,
    /// Pollers asleep until [`BusyPoll::noticed`] wakes them.
    asleep: AtomicUsize,
    wake: Notify,
}

impl BusyPoll {
    pub fn new(window: Duration) -> BusyPoll {
        BusyPoll { window, requests: AtomicU64::new(0), asleep: AtomicUsize::new(0), wake: Notify::new() }
    }

    /// A request arrived (a client's or a peer's). On the request path: with busy polling off,
    /// one comparison; on, a count and a load.
    #[inline]
    pub fn noticed(&self) {
        if self.window.is_zero() {
            return;
        }
        self.requests.fetch_add(1, Relaxed);
        if self.asleep.load(Relaxed) > 0 {
            self.wake.notify_waiters();
        }
    }

    /// How many pollers sleep (for tests).
    pub fn asleep(&self) -> usize {
        self.asleep.load(Relaxed)
    }

    /// Start one poller per worker thread of the current runtime (none with busy polling off);
    /// they end at `stop`.
    pub fn start(node: &crate::life::state::Node, stop: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        if node.busy_poll.window.is_zero() {
            return Vec::new();
        }
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        (0..workers)
            .map(|_| {
                let (node, stop) = (node.clone(), stop.clone());
                tokio::spawn(async move { node.busy_poll.run(stop).await })
            })
            .collect()
    }

    /// Poll while requests come, sleep once none came for the window; until `stop`.
    ///
    /// A request that races a poller falling asleep at worst finds it asleep and not woken
    /// (the counts are relaxed): the next request wakes it. Nothing waits on a poller, so that
    /// costs one wake-up, never a request.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        if self.window.is_zero() {
            return;
        }
        let (mut seen, mut last) = (self.requests.load(Relaxed), Instant::now());
        loop {
            if stop.has_changed().unwrap_or(true) {
                return;
            }
            let now = self.requests.load(Relaxed);
            if now != seen {
                (seen, last) = (now, Instant::now());
            } else if last.elapsed() >= self.window {
                let woken = std::pin::pin!(self.wake.notified());
                self.asleep.fetch_add(1, Relaxed);
                let stopped = self.requests.load(Relaxed) == seen
                    && tokio::select! {
                        _ = woken => false,
                        _ = stop.changed() => true,
                    };
                self.asleep.fetch_sub(1, Relaxed);
                if stopped {
                    return;
                }
                (seen, last) = (self.requests.load(Relaxed), Instant::now());
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

    /// Two pollers, as on a runtime of two workers.
    fn pollers(window: Duration) -> (Arc<BusyPoll>, watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
        let poll = Arc::new(BusyPoll::new(window));
        let (stop_tx, stop) = watch::channel(false);
        let tasks = (0..2)
            .map(|_| {
                let (poll, stop) = (poll.clone(), stop.clone());
                tokio::spawn(async move { poll.run(stop).await })
            })
            .collect();
        (poll, stop_tx, tasks)
    }

    async fn stopped(stop_tx: watch::Sender<bool>, tasks: Vec<tokio::task::JoinHandle<()>>) {
        stop_tx.send_replace(true);
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("a poller stops").expect("task");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pollers_sleep_once_requests_stop_and_wake_at_the_next_one() {
        // A window long enough for the test to see them awake on a loaded machine.
        let (poll, stop_tx, tasks) = pollers(Duration::from_millis(500));
        until("both asleep with no request", || poll.asleep() == 2).await;
        poll.noticed();
        until("both awake after a request", || poll.asleep() == 0).await;
        until("both asleep again once requests stopped", || poll.asleep() == 2).await;
        stopped(stop_tx, tasks).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pollers_stop_while_polling() {
        let (poll, stop_tx, tasks) = pollers(Duration::from_secs(3600));
        poll.noticed();
        assert_eq!(poll.asleep(), 0, "an hour's window: still polling");
        stopped(stop_tx, tasks).await;
    }

    #[tokio::test]
    async fn off_it_never_runs() {
        let poll = BusyPoll::new(Duration::ZERO);
        poll.noticed();
        let (_stop_tx, stop) = watch::channel(false);
        tokio::time::timeout(Duration::from_secs(10), poll.run(stop)).await.expect("returns at once");
    }
}
