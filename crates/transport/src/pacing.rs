//! Wrong secrets answered slowly, so that guessing one is slow.
//!
//! A client password or a cluster secret is checked in constant time (`server.rs::same_secret`),
//! which hides where a guess differs but not whether it was right: a node answered 100 000
//! pipelined `AUTH`s with wrong passwords as fast as it answered `GET`s (found by trying,
//! 2026-12-06), and a seed's or a node's member endpoints a wrong secret as fast. So every
//! refusal of a wrong secret in a process (a node or a seed) waits for its turn here before it is
//! answered:
//!
//! - each waits at least [`DELAY`] from its arrival (what `auth_delay` does for PostgreSQL);
//! - the process answers at most one every [`SPACING`] (100 a second), whatever the number of
//!   connections the guesses come on: the rest queue;
//! - no wait is longer than [`MAX_WAIT`], so a queue of guesses cannot hold a connection past
//!   its timeouts; beyond `MAX_WAIT` × 100 guessers at once (1 000), each is answered after
//!   `MAX_WAIT`.
//!
//! A RESP connection runs nothing after a wrong `AUTH` until its answer has gone out, so one
//! connection guesses one password at a time (`resp/mod.rs`); HTTP/1 answers in order anyway.
//! A right secret is never delayed, nor is a request that carries none (that answer tells
//! nothing), so clients with the password do not notice a guesser.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time a wrong secret waits for its answer.
pub const DELAY: Duration = Duration::from_millis(200);
/// The least time between two answers to wrong secrets in one process.
pub const SPACING: Duration = Duration::from_millis(10);
/// The longest a wrong secret waits.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The queue of answers to wrong secrets: when the last one is due.
#[derive(Debug, Default)]
pub struct Pacing {
    last: Mutex<Option<Instant>>,
}

impl Pacing {
    pub const fn new() -> Pacing {
        Pacing { last: Mutex::new(None) }
    }

    /// When the answer to a wrong secret that arrived at `now` may go out.
    pub fn answer_at(&self, now: Instant) -> Instant {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let turn = last.map_or(now, |l| l.max(now)) + SPACING;
        let turn = turn.min(now + MAX_WAIT);
        *last = Some(turn);
        turn.max(now + DELAY)
    }
}

/// This process's queue: a node's client passwords and cluster secret, or a seed's secret.
pub static WRONG_SECRETS: Pacing = Pacing::new();

/// Wait for the turn of a wrong secret's answer (see the module note).
pub async fn after_wrong_secret() {
    let at = WRONG_SECRETS.answer_at(Instant::now());
    tokio::time::sleep_until(at.into()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_guess_waits_the_delay() {
        let p = Pacing::new();
        let now = Instant::now();
        assert_eq!(p.answer_at(now), now + DELAY);
        // Long after, the same again.
        let later = now + Duration::from_secs(60);
        assert_eq!(p.answer_at(later), later + DELAY);
    }

    #[test]
    fn guesses_at_once_are_answered_one_per_spacing() {
        let p = Pacing::new();
        let now = Instant::now();
        let turns: Vec<_> = (0..100).map(|_| p.answer_at(now)).collect();
        // The first 20 fall within the delay; from then on one every SPACING.
        assert!(turns[..20].iter().all(|&t| t == now + DELAY));
        for pair in turns[20..].windows(2) {
            assert_eq!(pair[1] - pair[0], SPACING);
        }
        assert_eq!(turns[99], now + SPACING * 100);
    }

    #[test]
    fn no_guess_waits_longer_than_the_bound_and_the_queue_keeps_no_debt() {
        let p = Pacing::new();
        let now = Instant::now();
        let waits: Vec<_> = (0..5_000).map(|_| p.answer_at(now) - now).collect();
        assert!(waits.iter().all(|&w| w <= MAX_WAIT));
        assert_eq!(*waits.last().unwrap(), MAX_WAIT);
        // Unbounded, the queue would now reach 50 s ahead; it stops at the bound, so once the
        // last answer it scheduled has gone out a guess waits the delay alone again.
        let soon = now + Duration::from_secs(1);
        assert_eq!(p.answer_at(soon) - soon, MAX_WAIT - Duration::from_secs(1) + SPACING);
        let later = now + MAX_WAIT * 2;
        assert_eq!(p.answer_at(later) - later, DELAY);
    }
}
