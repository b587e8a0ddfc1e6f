//! The write fence: lets a data move wait until every write that started before it has landed,
//! without ever making a write wait.
//!
//! Writes (a coordinated write, from planning to quorum; a peer's apply; an anti-entropy bucket)
//! [`enter`](Fence::enter) the fence and hold the guard while they run. A move — rebalance, leave,
//! or the first page of a range a joining node pulls — first [`drain`](Fence::drain)s: it waits
//! until every write that entered *before* the drain began has left, so its scan sees whatever
//! was planned under an older view.
//!
//! It used to be a fair read-write lock, whose writer-side drain makes new readers queue behind
//! it. A coordinated write holds the fence across the network quorum, and the peer's apply enters
//! the peer's fence: two nodes rebalancing while writing to each other then each waited for a
//! drain that waited for the other, until the request timeout. Here entering never waits: writes
//! are counted per generation, a drain starts a new generation and waits only for the older ones
//! to empty. A drain therefore ends even under a steady stream of writes.
//!
//! Every write enters and leaves, so both stay cheap: a short lock, no allocation once the list
//! of generations has its room, and no wake-up unless a drain began since the write entered.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Fence {
    state: Mutex<State>,
    /// Woken whenever a generation empties.
    emptied: Notify,
}

#[derive(Default)]
struct State {
    /// The generation a write entering now joins.
    current: u64,
    /// Writes in flight by the generation they entered in, oldest first (no empty generations
    /// kept). Writes enter only the newest generation, so the order keeps itself.
    active: VecDeque<(u64, usize)>,
}

/// A write in flight; leaving the fence on drop.
#[must_use = "the write is fenced only while the guard lives"]
pub struct Entered<'a> {
    fence: &'a Fence,
    generation: u64,
}

impl Fence {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enter as a write; never waits.
    pub fn enter(&self) -> Entered<'_> {
        let mut s = self.lock();
        let generation = s.current;
        match s.active.back_mut() {
            Some((g, n)) if *g == generation => *n += 1,
            _ => s.active.push_back((generation, 1)),
        }
        Entered { fence: self, generation }
    }

    /// Wait until every write that entered before this call has left. Writes entering meanwhile
    /// are neither blocked nor waited for.
    pub async fn drain(&self) {
        let before = {
            let mut s = self.lock();
            let g = s.current;
            s.current += 1;
            g
        };
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check, so a generation emptying right after it still wakes us.
            emptied.as_mut().enable();
            if self.lock().active.front().is_none_or(|&(g, _)| g > before) {
                return;
            }
            emptied.await;
        }
    }

    /// Writes in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().active.iter().map(|(_, n)| n).sum()
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let wake = {
            let mut s = self.fence.lock();
            let at = s.active.iter().position(|&(g, _)| g == self.generation);
            let at = at.expect("an entered generation is active");
            s.active[at].1 -= 1;
            let emptied = s.active[at].1 == 0;
            if emptied {
                s.active.remove(at);
            }
            // Only a drain begun since this write entered (it moved `current` on) waits for it.
            emptied && self.generation < s.current
        };
        if wake {
            self.fence.emptied.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn spawn_drain(fence: &Arc<Fence>) -> tokio::task::JoinHandle<()> {
        let fence = fence.clone();
        tokio::spawn(async move { fence.drain().await })
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn a_drain_waits_for_earlier_writes_only() {
        let fence = Arc::new(Fence::default());
        let early = fence.enter();
        let drain = spawn_drain(&fence);
        settle().await;
        // A write entering during the drain is not held up, and the drain does not wait for it.
        let late = fence.enter();
        assert_eq!(fence.in_flight(), 2);
        assert!(!drain.is_finished(), "the early write is still in flight");
        drop(early);
        tokio::time::timeout(Duration::from_secs(1), drain).await.expect("the drain ends").unwrap();
        assert_eq!(fence.in_flight(), 1);
        drop(late);
        tokio::time::timeout(Duration::from_secs(1), fence.drain()).await.expect("nothing in flight: at once");
    }

    #[tokio::test]
    async fn drains_end_under_a_steady_stream_of_writes() {
        let fence = Arc::new(Fence::default());
        let mut held = std::collections::VecDeque::from([fence.enter()]);
        let drain = spawn_drain(&fence);
        let second = spawn_drain(&fence);
        for _ in 0..50 {
            // Always some write in flight: a lock that waited for "no writes at all" never ends.
            held.push_back(fence.enter());
            held.pop_front();
            tokio::task::yield_now().await;
        }
        tokio::time::timeout(Duration::from_secs(1), drain).await.expect("the drain ends").unwrap();
        tokio::time::timeout(Duration::from_secs(1), second).await.expect("the second drain ends").unwrap();
        assert_eq!(fence.in_flight(), 1);
    }
}
