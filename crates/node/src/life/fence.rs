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
//! are counted by generation, a drain starts a new generation and waits only for the older one
//! to empty. A drain therefore ends even under a steady stream of writes.
//!
//! Every write enters and leaves, so both must be cheap: two counters, one per generation, used
//! in turn. A write adds itself to the current generation's counter and checks that the
//! generation did not change meanwhile (if it did, it takes itself out and enters the new one).
//! A drain moves the generation on, then waits for the old counter to reach zero. The write's
//! add and check, and the drain's move and wait, are sequentially consistent: either the write
//! sees the new generation, or the drain sees the write. Drains run one at a time, and each first
//! waits for the counter new writes will go to to hold none of the writes before: only a drain
//! cancelled while it waited (its task ended) leaves some there. This replaced a mutex over a
//! list of generations, about 200 instructions per write (callgrind), with four atomic operations.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Fence {
    /// The generation a write entering now joins; it counts in `writes[generation % 2]`.
    generation: AtomicU64,
    /// Writes in flight, by the parity of the generation they entered in.
    writes: [AtomicUsize; 2],
    /// Woken when a generation older than the current one empties.
    emptied: Notify,
    /// Held by the drain under way: one at a time.
    draining: tokio::sync::Mutex<()>,
}

/// A write in flight; leaving the fence on drop.
#[must_use = "the write is fenced only while the guard lives"]
pub struct Entered<'a> {
    fence: &'a Fence,
    generation: u64,
}

impl Fence {
    /// Enter as a write; never waits.
    pub fn enter(&self) -> Entered<'_> {
        loop {
            let generation = self.generation.load(SeqCst);
            self.writes[slot(generation)].fetch_add(1, SeqCst);
            if self.generation.load(SeqCst) == generation {
                return Entered { fence: self, generation };
            }
            // A drain began in between: it may not have seen this write. Enter the new generation.
            self.leave(generation);
        }
    }

    /// Wait until every write that entered before this call has left. Writes entering meanwhile
    /// are neither blocked nor waited for.
    pub async fn drain(&self) {
        let _one_at_a_time = self.draining.lock().await;
        // Writes the other counter still holds were left by a drain cancelled before they left
        // (its task ended): they entered before this drain too, and new writes must not join them.
        let now = self.generation.load(SeqCst);
        self.emptied_of(slot(now + 1)).await;
        let before = self.generation.fetch_add(1, SeqCst);
        self.emptied_of(slot(before)).await;
    }

    /// Wait until no write is counted in `slot`, which is not the current generation's.
    async fn emptied_of(&self, slot: usize) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check, so a generation emptying right after it still wakes us.
            emptied.as_mut().enable();
            if self.writes[slot].load(SeqCst) == 0 {
                return;
            }
            emptied.await;
        }
    }

    /// Writes in flight now.
    pub fn in_flight(&self) -> usize {
        self.writes.iter().map(|n| n.load(SeqCst)).sum()
    }

    fn leave(&self, generation: u64) {
        let last = self.writes[slot(generation)].fetch_sub(1, SeqCst) == 1;
        // Only a drain begun since this write entered (it moved the generation on) waits for it.
        if last && self.generation.load(SeqCst) != generation {
            self.emptied.notify_waiters();
        }
    }
}

fn slot(generation: u64) -> usize {
    (generation % 2) as usize
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.fence.leave(self.generation);
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

    /// Give the other tasks time to do what they would: for checks that something did *not*
    /// happen. (What must happen is polled for: [`began`].)
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// Wait until a drain has moved the fence on to `generation`, polling with a deadline.
    async fn began(fence: &Fence, generation: u64) {
        let waited = async {
            while fence.generation.load(SeqCst) < generation {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), waited).await.expect("the drain begins");
    }

    #[tokio::test]
    async fn a_drain_waits_for_earlier_writes_only() {
        let fence = Arc::new(Fence::default());
        let early = fence.enter();
        let drain = spawn_drain(&fence);
        began(&fence, 1).await;
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
    async fn a_drain_after_a_cancelled_one_still_waits_for_the_writes_before_it() {
        let fence = Arc::new(Fence::default());
        let early = fence.enter();
        let cancelled = spawn_drain(&fence);
        began(&fence, 1).await;
        cancelled.abort(); // it moved the generation on, and waited for `early`
        assert!(cancelled.await.unwrap_err().is_cancelled());
        let late = fence.enter();
        let drain = spawn_drain(&fence);
        settle().await;
        drop(late);
        settle().await;
        assert!(!drain.is_finished(), "`early` entered before the drain and is still in flight");
        drop(early);
        tokio::time::timeout(Duration::from_secs(1), drain).await.expect("the drain ends").unwrap();
        assert_eq!(fence.in_flight(), 0);
    }

    /// Writers on threads of their own enter and leave as fast as they can while drains run: a
    /// write seen inside the fence before a drain began must have left when the drain returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drain_returns_only_after_the_writes_inside_when_it_began() {
        use std::sync::atomic::AtomicBool;
        const WRITERS: usize = 3;
        let fence = Arc::new(Fence::default());
        let inside: Arc<[AtomicBool; WRITERS]> = Arc::new(Default::default());
        let left: Arc<[AtomicU64; WRITERS]> = Arc::new(Default::default());
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (fence, inside, left, stop) = (fence.clone(), inside.clone(), left.clone(), stop.clone());
                std::thread::spawn(move || {
                    for i in 0..u64::MAX {
                        if stop.load(SeqCst) {
                            break;
                        }
                        let entered = fence.enter();
                        inside[w].store(true, SeqCst);
                        for _ in 0..(i % 64) {
                            std::hint::spin_loop();
                        }
                        inside[w].store(false, SeqCst);
                        left[w].fetch_add(1, SeqCst); // counted before it leaves: a drain waits for it
                        drop(entered);
                    }
                })
            })
            .collect();
        for _ in 0..300 {
            // The count first: a writer then seen inside is in a write that count does not include.
            let before: Vec<Option<u64>> = (0..WRITERS)
                .map(|w| {
                    let n = left[w].load(SeqCst);
                    inside[w].load(SeqCst).then_some(n)
                })
                .collect();
            tokio::time::timeout(Duration::from_secs(5), fence.drain()).await.expect("the drain ends");
            for (w, before) in before.iter().enumerate() {
                if let Some(n) = before {
                    assert!(left[w].load(SeqCst) > *n, "writer {w} was inside before the drain and still is");
                }
            }
        }
        stop.store(true, SeqCst);
        writers.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(fence.in_flight(), 0);
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
