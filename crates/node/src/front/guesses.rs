//! Password guessing slowed down, per source address.
//!
//! A client password is compared in constant time, which hides where a guess differs, not
//! whether it was right: a node answered 100 000 pipelined `AUTH`s with wrong passwords as fast
//! as it answered `GET`s (found by trying, 2026-12-06). Answering wrong passwords late does not
//! help: a right one is answered at once, so a guesser that gives up on each guess after a few
//! milliseconds learns as fast as before (found by review the same day, when that was tried).
//! So what is limited here is how often a password is *checked*:
//!
//! - after a wrong password, its source waits before its next password is checked: 100 ms after
//!   the first, twice as long after each further one, at most 10 s ([`wait_after`]);
//! - while it waits, a password from that source is refused unchecked, at once, with the time
//!   left (RESP `-ERR`, HTTP `429` with `Retry-After`), so nothing is held meanwhile and a guess
//!   made early tells nothing;
//! - a source's count is forgotten ten minutes after its last wrong password, not by a right
//!   one: a guesser holding the read-only password, or behind the same address as a busy client
//!   with the right one, reset it at will and guessed ten times a second (found by review);
//! - guesses from one address that arrive together on several threads may all be checked (one
//!   per worker thread at most; 1 of 200 connections and of 100 HTTP/2 streams sent at once was
//!   checked, found by review): reserving the check before the comparison would refuse a
//!   client's concurrent requests with the right password whenever its address is counted.
//!
//! A source is an address, IPv4 or IPv6 (a /64 would shut out every pod of a Kubernetes node's
//! range for one of them; a guesser with many addresses is slowed per address, not in total).
//! A client with the password behind the same address as a guesser waits with it: a shared
//! NAT's clients do. At most [`MAX_SOURCES`] are remembered; a full record forgets sources
//! quiet for ten minutes (looked for at most once a second), and records no new one until there
//! is room. With no source remembered a check costs one atomic load more than before, and a
//! read lock while some are (forgotten ten minutes after their last wrong password).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// The wait after a source's first wrong password.
pub const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// How long a source's count is kept after its last wrong password.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// The most sources remembered at once (about 60 bytes each).
pub const MAX_SOURCES: usize = 65_536;

/// A source's wrong passwords.
#[derive(Clone, Copy, Debug)]
struct Count {
    wrong: u32,
    /// When its next password may be checked.
    next: Instant,
    last_wrong: Instant,
}

/// The wait after a source's `wrong`-th wrong password in a row.
pub fn wait_after(wrong: u32) -> Duration {
    let doublings = wrong.saturating_sub(1).min(16);
    (FIRST_WAIT * (1u32 << doublings)).min(MAX_WAIT)
}

/// The node's record of who guessed wrong lately.
#[derive(Debug, Default)]
pub struct Guesses {
    record: RwLock<Record>,
    /// How many sources are remembered: 0 nearly always, and then nothing is locked.
    remembered: AtomicUsize,
}

#[derive(Debug, Default)]
struct Record {
    sources: HashMap<IpAddr, Count>,
    /// When a full record last looked for sources to forget.
    swept: Option<Instant>,
    /// When sources quiet for ten minutes were last forgotten (once a minute at most).
    forgot: Option<Instant>,
}

/// A check that may go ahead: [`Guesses::checked`] is told how it came out.
#[must_use]
#[derive(Debug)]
pub struct Turn(());

impl Guesses {
    /// Whether a password from `from` may be checked at `now`; `Err` with the time left when
    /// its source must wait.
    pub fn may_check(&self, from: IpAddr, now: Instant) -> Result<Turn, Duration> {
        if self.remembered.load(Ordering::Relaxed) == 0 {
            return Ok(Turn(()));
        }
        let (counted, forget) = {
            let record = self.read();
            let forget = record.forgot.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60));
            (record.sources.get(&from).copied(), forget)
        };
        if forget {
            self.forget_quiet(now);
        }
        match counted {
            Some(c) if c.next > now => Err(c.next - now),
            _ => Ok(Turn(())),
        }
    }

    /// How the check `turn` allowed came out: `right` or wrong. A right one leaves the count
    /// as it is (see the module note).
    pub fn checked(&self, from: IpAddr, turn: Turn, right: bool, now: Instant) {
        let Turn(()) = turn;
        if !right {
            self.wrong(from, now);
        }
    }

    /// A wrong password from `from` at `now`.
    fn wrong(&self, from: IpAddr, now: Instant) {
        let mut record = self.write();
        if !record.sources.contains_key(&from) && record.sources.len() >= MAX_SOURCES {
            if record.swept.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
                return;
            }
            record.swept = Some(now);
            record.sources.retain(|_, c| now.saturating_duration_since(c.last_wrong) <= FORGET_AFTER);
            if record.sources.len() >= MAX_SOURCES {
                return;
            }
        }
        let count = record.sources.entry(from).or_insert(Count { wrong: 0, next: now, last_wrong: now });
        if now.saturating_duration_since(count.last_wrong) > FORGET_AFTER {
            count.wrong = 0;
        }
        count.wrong += 1;
        count.last_wrong = now;
        count.next = now + wait_after(count.wrong);
        self.remembered.store(record.sources.len(), Ordering::Relaxed);
    }

    /// Forget the sources quiet for ten minutes, so that checks go back to costing an atomic
    /// load (a check does this once a minute while some are remembered; skipped if the record
    /// is busy).
    fn forget_quiet(&self, now: Instant) {
        let Ok(mut record) = self.record.try_write() else { return };
        record.sources.retain(|_, c| now.saturating_duration_since(c.last_wrong) <= FORGET_AFTER);
        record.forgot = Some(now);
        self.remembered.store(record.sources.len(), Ordering::Relaxed);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Record> {
        self.record.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Record> {
        self.record.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One check from `from` at `now` of a password that is `right` or not; `Err` when it may
    /// not be checked.
    fn try_one(g: &Guesses, from: &str, right: bool, now: Instant) -> Result<(), Duration> {
        let turn = g.may_check(ip(from), now)?;
        g.checked(ip(from), turn, right, now);
        Ok(())
    }

    #[test]
    fn the_wait_doubles_with_each_wrong_password_up_to_the_bound() {
        assert_eq!(wait_after(1), Duration::from_millis(100));
        assert_eq!(wait_after(2), Duration::from_millis(200));
        assert_eq!(wait_after(7), Duration::from_millis(6400));
        assert_eq!(wait_after(8), MAX_WAIT);
        assert_eq!(wait_after(u32::MAX), MAX_WAIT);
    }

    #[test]
    fn a_source_waits_after_a_wrong_password_and_others_do_not() {
        let g = Guesses::default();
        let now = Instant::now();
        assert_eq!(try_one(&g, "10.0.0.1", false, now), Ok(()));
        assert_eq!(try_one(&g, "10.0.0.1", true, now), Err(FIRST_WAIT), "the right one is not checked");
        assert_eq!(try_one(&g, "10.0.0.2", true, now), Ok(()), "another address is not held up");
        let later = now + FIRST_WAIT;
        assert_eq!(try_one(&g, "10.0.0.1", false, later), Ok(()), "its turn came");
        assert_eq!(g.may_check(ip("10.0.0.1"), later).unwrap_err(), FIRST_WAIT * 2, "twice as long");
        // A right password does not forget the count: the read-only one, or a busy client's
        // behind the same address, would reset it at will.
        let t = later + FIRST_WAIT * 2;
        assert_eq!(try_one(&g, "10.0.0.1", true, t), Ok(()));
        assert_eq!(try_one(&g, "10.0.0.1", true, t), Ok(()), "a right one leaves no wait");
        assert_eq!(try_one(&g, "10.0.0.1", false, t), Ok(()));
        assert_eq!(g.may_check(ip("10.0.0.1"), t).unwrap_err(), FIRST_WAIT * 4, "the third wrong one");
        // Ten quiet minutes forget it.
        let much_later = t + Duration::from_secs(601);
        assert_eq!(try_one(&g, "10.0.0.1", false, much_later), Ok(()));
        assert_eq!(g.may_check(ip("10.0.0.1"), much_later).unwrap_err(), FIRST_WAIT);
        assert!(try_one(&g, "10.0.0.9", true, much_later + Duration::from_secs(601)).is_ok());
        assert_eq!(g.remembered.load(Ordering::Relaxed), 0, "checks cost an atomic load again");
    }

    #[test]
    fn every_ipv6_address_is_its_own_source() {
        let g = Guesses::default();
        let now = Instant::now();
        assert_eq!(try_one(&g, "2001:db8:1:2::1", false, now), Ok(()));
        assert!(g.may_check(ip("2001:db8:1:2::1"), now).is_err());
        assert!(g.may_check(ip("2001:db8:1:2::2"), now).is_ok(), "a pod beside it is not held up");
    }

    #[test]
    fn remembered_sources_are_bounded_and_a_full_record_wipes_no_count() {
        let g = Guesses::default();
        let now = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            assert_eq!(try_one(&g, &std::net::Ipv4Addr::from(i).to_string(), false, now), Ok(()));
        }
        let new = "255.255.255.255";
        let later = now + MAX_WAIT;
        assert_eq!(try_one(&g, new, false, later), Ok(()));
        assert!(g.may_check(ip(new), later).is_ok(), "not recorded while the record is full");
        assert_eq!(try_one(&g, "0.0.0.7", false, later), Ok(()));
        assert_eq!(g.may_check(ip("0.0.0.7"), later).unwrap_err(), FIRST_WAIT * 2, "its count was kept");
        // Once they have been quiet for ten minutes, they make room.
        let much_later = now + Duration::from_secs(601);
        assert_eq!(try_one(&g, new, false, much_later), Ok(()));
        assert!(g.may_check(ip(new), much_later).is_err());
        assert!(g.read().sources.len() <= 2);
    }
}
