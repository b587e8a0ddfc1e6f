//! Log lines that whoever connects can cause, bounded.
//!
//! A refused connection is worth a line: a wrong cluster secret, a certificate another CA signed,
//! plain TCP on a TLS port. That line is how an operator finds a misconfigured member. But each
//! one is caused by the party connecting, at the rate it connects, so a line per connection would
//! let anyone fill the disk and bury the lines that matter. A [`Throttle`] lets one line a second
//! through for each reason, and the next line of that reason says how many were left out. Reasons
//! are told apart so that a scanner's noise cannot hide the one member with the wrong CA.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a line of one reason gets through.
const EVERY: Duration = Duration::from_secs(1);
/// Reasons counted apart; any further ones share one more slot. This bounds both the memory and
/// the lines a second, whatever reasons a peer makes up (an error text may carry its words).
const REASONS: usize = 16;
/// A reason with nothing left unreported and no line for this long gives its slot to a new one,
/// so reasons seen once long ago do not push new ones into the shared slot for good.
const IDLE: Duration = Duration::from_secs(60);

/// The lines of one call site: see the module doc.
///
/// ```ignore
/// static REFUSED: Throttle = Throttle::new();
/// if let Some(more) = REFUSED.allow(reason) {
///     tracing::warn!(%peer, "refused a connection: {reason}{more}");
/// }
/// ```
pub struct Throttle {
    reasons: Mutex<Vec<Reason>>,
}

struct Reason {
    /// `None` for the slot that the reasons beyond [`REASONS`] share.
    text: Option<String>,
    logged: Instant,
    left_out: u64,
}

/// How many lines of a reason were left out before this one: shown as nothing when none were,
/// else as ` (N more like it in the last S s, not logged)`, to follow the line's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftOut {
    count: u64,
    over: Duration,
}

impl fmt::Display for LeftOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            0 => Ok(()),
            n => write!(f, " ({n} more like it in the last {:.1} s, not logged)", self.over.as_secs_f64()),
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl Throttle {
    pub const fn new() -> Self {
        Throttle { reasons: Mutex::new(Vec::new()) }
    }

    /// Whether a line for `reason` may be written now, and if so what was left out before it.
    pub fn allow(&self, reason: &str) -> Option<LeftOut> {
        self.allow_at(reason, Instant::now())
    }

    fn allow_at(&self, reason: &str, now: Instant) -> Option<LeftOut> {
        let mut reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        let found = reasons.iter().position(|r| r.text.as_deref() == Some(reason));
        let idle = |r: &Reason| r.text.is_some() && r.left_out == 0 && now.saturating_duration_since(r.logged) >= IDLE;
        let slot = match found {
            Some(i) => i,
            None if reasons.len() < REASONS || reasons.iter().any(idle) => {
                let fresh = Reason { text: Some(reason.to_string()), logged: now, left_out: 0 };
                match reasons.iter().position(idle) {
                    Some(i) => reasons[i] = fresh,
                    None => reasons.push(fresh),
                }
                return Some(LeftOut { count: 0, over: Duration::ZERO });
            }
            None => match reasons.iter().position(|r| r.text.is_none()) {
                Some(i) => i,
                None => {
                    reasons.push(Reason { text: None, logged: now, left_out: 0 });
                    return Some(LeftOut { count: 0, over: Duration::ZERO });
                }
            },
        };
        let r = &mut reasons[slot];
        let over = now.saturating_duration_since(r.logged);
        if over < EVERY {
            r.left_out += 1;
            return None;
        }
        let left = LeftOut { count: r.left_out, over };
        r.logged = now;
        r.left_out = 0;
        Some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_per_reason_and_the_next_says_how_many_were_left_out() {
        let t = Throttle::new();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(t.allow_at("bad secret", at(0)).map(|l| l.to_string()), Some(String::new()));
        for ms in 1..=50 {
            assert_eq!(t.allow_at("bad secret", at(ms * 10)), None, "within the second");
        }
        // Another reason is not held back by the first one's flood.
        assert!(t.allow_at("UnknownIssuer", at(500)).is_some());
        let next = t.allow_at("bad secret", at(1_200)).expect("a second later");
        assert_eq!(next.to_string(), " (50 more like it in the last 1.2 s, not logged)");
        assert_eq!(t.allow_at("bad secret", at(2_300)).map(|l| l.to_string()), Some(String::new()));
    }

    #[test]
    fn reasons_beyond_the_bound_share_one_slot() {
        let t = Throttle::new();
        let now = Instant::now();
        for i in 0..REASONS {
            assert!(t.allow_at(&format!("reason {i}"), now).is_some());
        }
        assert!(t.allow_at("one more", now).is_some(), "the shared slot's first line");
        assert_eq!(t.allow_at("and another", now), None, "the shared slot is throttled as one reason");
        assert_eq!(t.allow_at("reason 3", now), None);
        assert_eq!(t.reasons.lock().unwrap().len(), REASONS + 1, "memory stays bounded");
        let later = t.allow_at("yet another", now + EVERY).expect("a second later");
        assert_eq!(later.count, 1);
    }

    #[test]
    fn a_reason_idle_for_a_minute_gives_its_slot_to_a_new_one() {
        let t = Throttle::new();
        let start = Instant::now();
        for i in 0..REASONS {
            assert!(t.allow_at(&format!("reason {i}"), start).is_some());
        }
        // Reason 0 is still being left out: its count must not be lost, so it keeps its slot.
        assert_eq!(t.allow_at("reason 0", start + Duration::from_millis(10)), None);
        let later = start + IDLE;
        assert!(t.allow_at("new", later).is_some(), "takes the slot of an idle reason");
        assert!(t.allow_at("newer", later).is_some(), "and another idle one's");
        let reasons = t.reasons.lock().unwrap();
        assert_eq!(reasons.len(), REASONS, "no shared slot was needed");
        assert!(reasons.iter().any(|r| r.text.as_deref() == Some("reason 0")), "the reason with a count kept");
    }
}
