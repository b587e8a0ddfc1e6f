//! Hybrid logical clock.
//!
//! A timestamp is `(wall-clock milliseconds << 16) | counter`. `now()` never goes backwards and
//! never repeats on one node, even if the wall clock steps back (unless the node sets it back
//! with `rewind_if_ahead`, for stamps made while its wall clock was off); `observe()` folds in timestamps
//! seen from other nodes, so a write made after seeing another write always gets a higher
//! version (causality within the cluster) while timestamps stay close to real time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const COUNTER_BITS: u32 = 16;

pub struct Hlc {
    last: AtomicU64,
    wall_ms: fn() -> u64,
}

fn system_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Default for Hlc {
    fn default() -> Self {
        Self::with_clock(system_ms)
    }
}

impl Hlc {
    /// A clock reading time from `wall_ms` (milliseconds); tests pass a fake.
    pub fn with_clock(wall_ms: fn() -> u64) -> Self {
        Hlc { last: AtomicU64::new(0), wall_ms }
    }

    /// A fresh timestamp, greater than every timestamp this clock produced or observed.
    pub fn now(&self) -> u64 {
        let wall = (self.wall_ms)() << COUNTER_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match self.last.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// The smallest timestamp of wall-clock millisecond `ms` (to compare versions with times).
    /// A millisecond past what a timestamp holds (from 2^48 ms, the year 10889: deadlines such as
    /// `PXAT 9223372036854775807` are that far) saturates to the last timestamp rather than wrap
    /// round to one long past, which would make a value that never expires look long dead.
    pub fn ts_at_ms(ms: u64) -> u64 {
        ms.saturating_mul(1 << COUNTER_BITS)
    }

    /// The wall-clock milliseconds of a timestamp.
    pub fn ms_of(ts: u64) -> u64 {
        ts >> COUNTER_BITS
    }

    /// Wall-clock milliseconds now, as this clock reads them.
    pub fn wall_ms(&self) -> u64 {
        (self.wall_ms)()
    }

    /// Whether this clock has produced or observed `ts` or a later timestamp: then folding `ts`
    /// in would change nothing.
    pub fn has_reached(&self, ts: u64) -> bool {
        self.last.load(Ordering::Acquire) >= ts
    }

    /// Fold in a timestamp seen from elsewhere, so later `now()` values exceed it.
    pub fn observe(&self, ts: u64) {
        self.last.fetch_max(ts, Ordering::AcqRel);
    }

    /// How many milliseconds `ts` is ahead of the wall clock reading `wall_ms`, if that is more
    /// than `max_ahead_ms`: a timestamp this far ahead came from a clock that is off.
    pub fn too_far_ahead(ts: u64, wall_ms: u64, max_ahead_ms: u64) -> Option<u64> {
        let ms = Self::ms_of(ts);
        (ms > wall_ms.saturating_add(max_ahead_ms)).then(|| ms - wall_ms)
    }

    /// Set the clock back to `wall_ms` if it is more than `max_ahead_ms` ahead of it, and say by
    /// how many milliseconds it was. Only for a clock that stamped while its wall clock was off
    /// (see `life/clock.rs` of the node): `now()` is then no longer above every earlier stamp,
    /// which the node's writes allow for (a write below a version held is stamped above it).
    pub fn rewind_if_ahead(&self, wall_ms: u64, max_ahead_ms: u64) -> Option<u64> {
        let ahead = Self::too_far_ahead(self.last.load(Ordering::Acquire), wall_ms, max_ahead_ms)?;
        self.last.fetch_min(Self::ts_at_ms(wall_ms), Ordering::AcqRel);
        Some(ahead)
    }

    /// [`Hlc::observe`] `ts` unless it is more than `max_ahead_ms` ahead of the wall clock
    /// reading `wall_ms`; then the clock is left as it was and the error says by how many
    /// milliseconds `ts` is ahead. Following a timestamp that far ahead would drag this clock,
    /// and every clock its writes reach, as far ahead as the clock that is off.
    pub fn follow(&self, ts: u64, wall_ms: u64, max_ahead_ms: u64) -> Result<(), u64> {
        match Self::too_far_ahead(ts, wall_ms, max_ahead_ms) {
            Some(ahead) => Err(ahead),
            None => {
                self.observe(ts);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_even_when_wall_clock_is_stuck() {
        let clock = Hlc::with_clock(|| 1_000);
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
        assert_eq!(a >> COUNTER_BITS, 1_000);
    }

    #[test]
    fn observing_a_future_timestamp_moves_the_clock_past_it() {
        let clock = Hlc::with_clock(|| 1_000);
        let remote = 5_000 << COUNTER_BITS;
        clock.observe(remote);
        assert!(clock.now() > remote);
    }

    #[test]
    fn a_clock_has_reached_what_it_stamped_and_observed_only() {
        let clock = Hlc::with_clock(|| 1_000);
        let stamped = clock.now();
        assert!(clock.has_reached(stamped) && clock.has_reached(stamped - 1));
        assert!(!clock.has_reached(stamped + 1));
        clock.observe(stamped + 10);
        assert!(clock.has_reached(stamped + 10) && !clock.has_reached(stamped + 11));
    }

    #[test]
    fn a_clock_past_the_bound_is_set_back_and_one_within_it_is_not() {
        let c = Hlc::with_clock(|| 1_000_000);
        c.observe(Hlc::ts_at_ms(1_000_400));
        assert_eq!(c.rewind_if_ahead(1_000_000, 500), None, "within the bound");
        assert!(c.now() > Hlc::ts_at_ms(1_000_400));
        c.observe(Hlc::ts_at_ms(4_600_000));
        assert_eq!(c.rewind_if_ahead(1_000_000, 500), Some(3_600_000));
        let after = c.now();
        assert!(after > Hlc::ts_at_ms(1_000_000) && after < Hlc::ts_at_ms(1_000_001), "back at the wall clock");
    }

    #[test]
    fn a_timestamp_past_the_bound_is_not_followed() {
        let clock = Hlc::with_clock(|| 1_000);
        let at = |ms: u64| ms << COUNTER_BITS;
        assert_eq!(clock.follow(at(1_500), 1_000, 500), Ok(()), "at the bound: followed");
        assert!(clock.now() > at(1_500));
        assert_eq!(clock.follow(at(1_501), 1_000, 500), Err(501), "past it: says how far ahead");
        assert!(clock.now() < at(1_501), "and the clock did not move");
        assert_eq!(Hlc::too_far_ahead(at(900), 1_000, 0), None, "behind the wall clock");
        assert_eq!(Hlc::too_far_ahead(u64::MAX, u64::MAX >> COUNTER_BITS, u64::MAX), None, "no overflow");
    }
}
