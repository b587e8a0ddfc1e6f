//! `--move-rate`: one budget of bytes a second for the data a node moves in the background.
//!
//! A join's copy, a rebalance's hand-off and anti-entropy's exchanges all draw on it, together:
//! a pace per movement let a join's own copy run at the rate while the anti-entropy rounds that
//! the same membership change started pushed the joiner's ranges to it at full speed (a join
//! paced at 128 KiB/s held every key within 0.5 s, found by trying, 2026-12-06). A leave is not
//! paced: it must end within `--leave-timeout`.
//!
//! A paced movement gives way to the tombstone grace: from half a `--tombstone-grace` after it
//! began, it waits no more. An old owner's hand-off of a key it no longer replicates, paced to
//! reach that key a grace after the change, brought back values deleted after the change: the
//! new replicas had purged the delete's tombstone by then (345–468 of 1 500 deleted keys came
//! back at 200 KiB/s with a 3 s grace, found by a hunt, 2026-12-07). A delete issued after the
//! movement began is purged no sooner than a grace after it began; the movement, unpaced for
//! its second half, has ended by then, where the pace alone would have set no bound. (With the
//! default grace of a day this takes a movement that a pace stretched over half a day.)
//!
//! The budget is a clock of when the bytes moved so far could have been moved at the rate. Each
//! page moved pushes it on by its bytes, and the mover waits until it is due. A budget unused for
//! a while gives back at most [`CREDIT`], so a burst after a pause is small, and a movement slower
//! than the rate on its own (a slow disk, a slow peer) waits for nothing.

use std::sync::Mutex;
use std::time::Duration;

use dkv_transport::Throttle;
use tokio::sync::watch;
use tokio::time::Instant;

/// How far behind the present the budget's clock may fall: what a movement may take at once
/// after a pause, at the rate.
const CREDIT: Duration = Duration::from_millis(100);

/// The node's budget (`0`: no limit).
pub struct MoveRate {
    rate: u64,
    /// How long a movement is paced: half the tombstone grace.
    paced_for: Duration,
    /// When the bytes moved so far could all have been moved at the rate.
    due: Mutex<Option<Instant>>,
}

impl MoveRate {
    /// `rate` bytes a second, for movements on a node that keeps tombstones for `grace`.
    pub fn new(rate: u64, grace: Duration) -> MoveRate {
        MoveRate { rate, paced_for: grace / 2, due: Mutex::new(None) }
    }

    /// Count `bytes` moved, and return when the mover may go on: at once without a limit.
    fn take(&self, bytes: u64, now: Instant) -> Instant {
        if self.rate == 0 {
            return now;
        }
        let mut due = self.due.lock().expect("move rate lock");
        let from = due.map_or(now, |d| d.max(now.checked_sub(CREDIT).unwrap_or(now)));
        let next = from + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        *due = Some(next);
        next
    }
}

/// One movement's use of the node's budget. Once the node stops, nothing waits: shutdown is not
/// held up by a pace.
pub struct Pace<'a> {
    budget: &'a MoveRate,
    stop: Option<watch::Receiver<bool>>,
    /// Paced until then (see the module's doc).
    until: Instant,
    /// Not paced (a leave), or the node stopped.
    off: bool,
}

impl<'a> Pace<'a> {
    pub fn new(budget: &'a MoveRate, stop: Option<watch::Receiver<bool>>) -> Pace<'a> {
        Pace::since(budget, stop, Instant::now())
    }

    /// A movement that began at `began` (a hand-off retried pass after pass counts from its first).
    pub fn since(budget: &'a MoveRate, stop: Option<watch::Receiver<bool>>, began: Instant) -> Pace<'a> {
        Pace { budget, stop, until: began + budget.paced_for, off: budget.rate == 0 }
    }

    /// A movement that is not paced (a leave).
    pub fn unpaced(budget: &'a MoveRate) -> Pace<'a> {
        Pace { budget, stop: None, until: Instant::now(), off: true }
    }

    /// `bytes` were moved: wait until the node's budget has room for them.
    pub async fn after(&mut self, bytes: u64) {
        if self.off {
            return;
        }
        if Instant::now() >= self.until {
            static SAID: Throttle = Throttle::new();
            if let Some(more) = SAID.allow("past half the grace") {
                tracing::warn!(
                    paced_for = ?self.budget.paced_for,
                    "a data movement paced by --move-rate runs past half the --tombstone-grace: it goes on unpaced, \
                     since a value it carries could otherwise outlive the tombstone of a delete made since{more}"
                );
            }
            self.off = true;
            return;
        }
        // No wait past the end of the paced part, however far the budget is booked.
        let due = self.budget.take(bytes, Instant::now()).min(self.until);
        let Some(stop) = &mut self.stop else { return tokio::time::sleep_until(due).await };
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|s| *s) => self.off = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn movements_share_one_budget() {
        let budget = MoveRate::new(1000, DAY);
        let t0 = Instant::now();
        assert_eq!(budget.take(500, t0), t0 + 500 * MS);
        // A second movement at the same moment waits behind the first.
        assert_eq!(budget.take(500, t0), t0 + 1000 * MS);
    }

    #[test]
    fn an_unused_budget_gives_back_only_its_credit() {
        let budget = MoveRate::new(1000, DAY);
        let t0 = Instant::now();
        budget.take(1000, t0);
        // A second later than due: the clock starts again at most CREDIT back.
        let late = t0 + 2000 * MS;
        assert_eq!(budget.take(1000, late), late - CREDIT + 1000 * MS);
    }

    #[test]
    fn no_limit_waits_for_nothing() {
        let budget = MoveRate::new(0, DAY);
        let t0 = Instant::now();
        assert_eq!(budget.take(u64::MAX, t0), t0);
    }

    #[tokio::test]
    async fn a_movement_past_half_the_grace_waits_no_more() {
        // A megabyte at a byte a second, on a node whose grace is 200 ms: the first wait ends
        // with the paced part, 100 ms on, and the next does not wait.
        let budget = MoveRate::new(1, Duration::from_millis(200));
        let mut pace = Pace::new(&budget, None);
        let t0 = Instant::now();
        pace.after(1_000_000).await;
        pace.after(1_000_000).await;
        assert!(t0.elapsed() < Duration::from_secs(5), "waited {:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn a_stopped_node_waits_for_nothing() {
        // A megabyte at a byte a second: eleven days, unless the stop ends the wait.
        let budget = MoveRate::new(1, DAY);
        let (tx, rx) = watch::channel(false);
        let mut pace = Pace::new(&budget, Some(rx));
        tx.send(true).unwrap();
        let t0 = Instant::now();
        pace.after(1_000_000).await;
        pace.after(1_000_000).await;
        assert!(t0.elapsed() < Duration::from_secs(5), "waited {:?}", t0.elapsed());
    }
}
