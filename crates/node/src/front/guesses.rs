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
//! - a right password forgets the source's count; ten minutes without a wrong one do too.
//!
//! A source is an IPv4 address, or an IPv6 /64 (what one host is usually given). A client with
//! the password behind the same address as a guesser waits with it: a shared NAT's clients do.
//! At most [`MAX_SOURCES`] are remembered; past that, sources whose wait is over are forgotten,
//! and a new one is not recorded while every remembered one still waits (a guesser with more
//! addresses than that is slowed on the first ones only). With no wrong password in the last
//! ten minutes, a check costs one atomic load more than before.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The wait after a source's first wrong password.
pub const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// How long a source's count is kept after its last wrong password.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// The most sources remembered at once (about 40 bytes each).
pub const MAX_SOURCES: usize = 65_536;

/// Where guesses come from, as counted: an IPv4 address or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Source(u128);

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(u32::from(v4))),
                None => Source((u128::from(v6) >> 64 << 64) | 1), // the low bit: never an IPv4's
            },
        }
    }
}

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
    record: Mutex<Record>,
    /// How many sources are remembered: 0 nearly always, and then nothing is locked.
    remembered: AtomicUsize,
}

#[derive(Debug, Default)]
struct Record {
    sources: HashMap<Source, Count>,
    /// When sources quiet for ten minutes were last forgotten (at most once a minute: a right
    /// password comes with every HTTP request).
    swept: Option<Instant>,
}

impl Guesses {
    /// Whether a password from `from` may be checked at `now`; `Err` with the time left when
    /// its source must wait.
    pub fn may_check(&self, from: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.remembered.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let record = self.lock();
        match record.sources.get(&Source::from(from)) {
            Some(c) if c.next > now => Err(c.next - now),
            _ => Ok(()),
        }
    }

    /// A wrong password from `from` at `now`.
    pub fn wrong(&self, from: IpAddr, now: Instant) {
        let mut record = self.lock();
        let sources = &mut record.sources;
        let source = Source::from(from);
        if !sources.contains_key(&source) && sources.len() >= MAX_SOURCES {
            sources.retain(|_, c| c.next > now);
            if sources.len() >= MAX_SOURCES {
                return;
            }
        }
        let count = sources.entry(source).or_insert(Count { wrong: 0, next: now, last_wrong: now });
        if now.saturating_duration_since(count.last_wrong) > FORGET_AFTER {
            count.wrong = 0;
        }
        count.wrong += 1;
        count.last_wrong = now;
        count.next = now + wait_after(count.wrong);
        self.remembered.store(sources.len(), Ordering::Relaxed);
    }

    /// A right password from `from`: its count is forgotten. Sources quiet for ten minutes are
    /// forgotten here too, once a minute.
    pub fn right(&self, from: IpAddr, now: Instant) {
        if self.remembered.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut record = self.lock();
        record.sources.remove(&Source::from(from));
        if record.swept.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60)) {
            record.sources.retain(|_, c| now.saturating_duration_since(c.last_wrong) <= FORGET_AFTER);
            record.swept = Some(now);
        }
        self.remembered.store(record.sources.len(), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
        assert_eq!(g.may_check(ip("10.0.0.1"), now), Ok(()));
        g.wrong(ip("10.0.0.1"), now);
        assert_eq!(g.may_check(ip("10.0.0.1"), now), Err(FIRST_WAIT));
        assert_eq!(g.may_check(ip("10.0.0.2"), now), Ok(()), "another address is not held up");
        let later = now + FIRST_WAIT;
        assert_eq!(g.may_check(ip("10.0.0.1"), later), Ok(()), "its turn came");
        g.wrong(ip("10.0.0.1"), later);
        assert_eq!(g.may_check(ip("10.0.0.1"), later), Err(FIRST_WAIT * 2), "twice as long");
        // A right password forgets the count.
        g.right(ip("10.0.0.1"), later + FIRST_WAIT * 2);
        assert_eq!(g.may_check(ip("10.0.0.1"), later), Ok(()));
        g.wrong(ip("10.0.0.1"), later);
        assert_eq!(g.may_check(ip("10.0.0.1"), later), Err(FIRST_WAIT), "counted from 1 again");
        // Ten quiet minutes forget it too.
        let much_later = later + Duration::from_secs(601);
        g.wrong(ip("10.0.0.1"), much_later);
        assert_eq!(g.may_check(ip("10.0.0.1"), much_later), Err(FIRST_WAIT));
    }

    #[test]
    fn an_ipv6_host_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        let g = Guesses::default();
        let now = Instant::now();
        g.wrong(ip("2001:db8:1:2::1"), now);
        assert!(g.may_check(ip("2001:db8:1:2::ffff"), now).is_err(), "the same /64");
        assert!(g.may_check(ip("2001:db8:1:3::1"), now).is_ok());
        g.wrong(ip("::ffff:192.0.2.7"), now);
        assert!(g.may_check(ip("192.0.2.7"), now).is_err());
        assert!(g.may_check(ip("0.0.0.1"), now).is_ok(), "an IPv6 /64 is never an IPv4 address");
    }

    #[test]
    fn remembered_sources_are_bounded() {
        let g = Guesses::default();
        let now = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            g.wrong(IpAddr::from(i.to_be_bytes()), now);
        }
        let new = ip("255.255.255.255");
        g.wrong(new, now);
        assert!(g.may_check(new, now).is_ok(), "not recorded while every remembered one waits");
        // Once their waits are over, they make room.
        let later = now + MAX_WAIT;
        g.wrong(new, later);
        assert!(g.may_check(new, later).is_err());
        assert_eq!(g.lock().sources.len(), 1);
    }
}
