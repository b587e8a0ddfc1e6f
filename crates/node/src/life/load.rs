//! What this node reports of its work with every heartbeat (see `dkv_membership::load` for why
//! the figures travel that way): requests and their 99th percentile over the last interval, the
//! hints it holds, and its data movements with their progress.
//!
//! Requests are counted in a [`Window`] of atomics, which each report empties: a count and a
//! log-scale histogram of four buckets per doubling (so the percentile is within 25%), nothing
//! allocated on the request path. Movements are kept in [`Moves`], one slot per kind; the code
//! that moves data holds a [`Moving`] for as long as the movement runs and tells it what moved
//! and how far along it is. A slot keeps a finished movement for [`LINGER`], so the dashboard
//! shows a join shorter than a heartbeat as done rather than never. The last report is kept too,
//! so `/stats` shows the same figures without emptying the window under the heartbeat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dkv_membership::load::{Load, Move, MoveKind};

use crate::life::state::Node;

/// How long a finished movement is still reported.
pub const LINGER: Duration = Duration::from_secs(30);

/// Histogram buckets: values below 4 µs have one each, then four per doubling up to 2^40 µs.
const BUCKETS: usize = 160;

fn bucket(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros() as usize; // ≥ 2
    let sub = ((micros >> (exp - 2)) & 3) as usize;
    (4 * (exp - 1) + sub).min(BUCKETS - 1)
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let (exp, sub) = (i / 4 + 1, (i % 4) as u64);
    ((5 + sub) << (exp - 2)) - 1
}

/// Requests finished since the last report, and how long they took.
pub struct Window {
    count: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Window {
    fn default() -> Self {
        Window { count: AtomicU64::new(0), buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl Window {
    pub fn observe(&self, took: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.buckets[bucket(took.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
    }

    /// Empty the window: the requests counted and their 99th percentile in µs. A request that
    /// finishes meanwhile lands in this report or the next, never in none.
    ///
    /// A window that counted nothing leaves its buckets alone: an idle node reports every
    /// heartbeat, and emptying 160 buckets it did not fill was a twentieth of its CPU. A request
    /// counted just before this report but filed in its bucket just after waits in that bucket
    /// for the next report that has any requests.
    fn take(&self) -> (u64, Option<u64>) {
        let count = self.count.swap(0, Ordering::Relaxed);
        if count == 0 {
            return (0, None);
        }
        let counts: [u64; BUCKETS] = std::array::from_fn(|i| self.buckets[i].swap(0, Ordering::Relaxed));
        (count, percentile(&counts, 0.99))
    }
}

fn percentile(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(upper(i));
        }
    }
    Some(upper(counts.len() - 1))
}

#[derive(Clone, Debug)]
struct Slot {
    report: Move,
    finished: Option<Instant>,
}

/// The movements of this node, one slot per kind.
pub struct Moves {
    slots: [Mutex<Option<Slot>>; 4],
    /// When the last report was made and what it said (for `/stats`).
    last: Mutex<Option<(Instant, Load)>>,
    /// Where the first report's window starts.
    created: Instant,
}

impl Default for Moves {
    fn default() -> Self {
        Moves { slots: Default::default(), last: Mutex::new(None), created: Instant::now() }
    }
}

fn index(kind: MoveKind) -> usize {
    match kind {
        MoveKind::Join => 0,
        MoveKind::Leave => 1,
        MoveKind::Rebalance => 2,
        MoveKind::Repair => 3,
    }
}

impl Moves {
    /// A movement of `kind` starts (replacing any earlier one of that kind); it is finished when
    /// the returned handle is dropped.
    pub fn begin(&self, kind: MoveKind, planned_keys: Option<u64>, planned_bytes: Option<u64>) -> Moving<'_> {
        let report = Move { kind, active: true, keys: 0, bytes: 0, planned_keys, planned_bytes, permille: 0 };
        *self.slot(kind) = Some(Slot { report, finished: None });
        Moving { moves: self, kind }
    }

    fn slot(&self, kind: MoveKind) -> std::sync::MutexGuard<'_, Option<Slot>> {
        self.slots[index(kind)].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Movements running, or finished within [`LINGER`] of `now`.
    pub fn report(&self, now: Instant) -> Vec<Move> {
        let mut out = Vec::new();
        for slot in &self.slots {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(s) if s.finished.is_some_and(|at| now.duration_since(at) > LINGER) => *slot = None,
                // Every view change starts a rebalance scan and every interval a repair round;
                // only those that move something are worth showing, and no finished movement
                // that moved nothing (the join of a node into an empty cluster).
                Some(s)
                    if s.report.keys == 0
                        && (!s.report.active || matches!(s.report.kind, MoveKind::Rebalance | MoveKind::Repair)) => {}
                Some(s) => out.push(s.report.clone()),
                None => {}
            }
        }
        out
    }
}

/// A movement in progress; dropping it marks it finished.
pub struct Moving<'a> {
    moves: &'a Moves,
    kind: MoveKind,
}

impl Moving<'_> {
    /// `keys` more moved, of `bytes`.
    pub fn moved(&self, keys: u64, bytes: u64) {
        if let Some(s) = &mut *self.moves.slot(self.kind) {
            s.report.keys += keys;
            s.report.bytes += bytes;
        }
    }

    /// How far along: `done` of `of` (any unit), shown as thousandths.
    pub fn progress(&self, done: f64, of: f64) {
        let permille = if of > 0.0 { (1000.0 * done / of).clamp(0.0, 1000.0) as u64 } else { 0 };
        if let Some(s) = &mut *self.moves.slot(self.kind) {
            s.report.permille = permille;
        }
    }

    /// The totals, when they become known (or better estimated) as the movement runs.
    pub fn plan(&self, keys: Option<u64>, bytes: Option<u64>) {
        if let Some(s) = &mut *self.moves.slot(self.kind) {
            s.report.planned_keys = keys;
            s.report.planned_bytes = bytes;
        }
    }

    /// The keys and bytes moved so far.
    pub fn so_far(&self) -> (u64, u64) {
        self.moves.slot(self.kind).as_ref().map_or((0, 0), |s| (s.report.keys, s.report.bytes))
    }
}

impl Drop for Moving<'_> {
    fn drop(&mut self) {
        if let Some(s) = &mut *self.moves.slot(self.kind) {
            if s.report.active {
                s.report.active = false;
                s.finished = Some(Instant::now());
            }
        }
    }
}

/// The share of the hash space below `hash`, from 0 to 1: how far a scan in hash order got.
pub fn share_below(hash: u64) -> f64 {
    hash as f64 / 18_446_744_073_709_551_616.0
}

impl Node {
    /// This heartbeat's report: empties the request window.
    pub fn load_report(&self) -> Load {
        let now = Instant::now();
        let (requests, p99_us) = self.metrics.window.take();
        let mut last = self.moves.last.lock().unwrap_or_else(|e| e.into_inner());
        let since = last.as_ref().map_or(self.moves.created, |(at, _)| *at);
        let load = Load {
            requests,
            window_ms: now.duration_since(since).as_millis() as u64,
            p99_us,
            hints_pending: self.hints.stats().pending as u64,
            moves: self.moves.report(now),
        };
        *last = Some((now, load.clone()));
        load
    }

    /// What the last heartbeat reported, with the movements as they are now (for `/stats`).
    pub fn last_load(&self) -> Load {
        let last = self.moves.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, l)| l.clone());
        Load {
            hints_pending: self.hints.stats().pending as u64,
            moves: self.moves.report(Instant::now()),
            ..last.unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_within_a_quarter() {
        let mut prev = 0;
        for v in 1..200_000u64 {
            let b = bucket(v);
            assert!(b == prev || b == prev + 1, "{v}: bucket {b} after {prev}");
            assert!(upper(b) >= v, "{v} above its bucket's bound {}", upper(b));
            assert!(upper(b) as f64 <= v as f64 * 1.25 + 1.0, "{v}: bound {} too loose", upper(b));
            prev = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_window_gives_the_99th_percentile_and_empties() {
        let w = Window::default();
        for _ in 0..990 {
            w.observe(Duration::from_micros(100));
        }
        for _ in 0..10 {
            w.observe(Duration::from_millis(50));
        }
        let (count, p99) = w.take();
        assert_eq!(count, 1000);
        let p99 = p99.unwrap();
        assert!((100..=125).contains(&p99), "p99 {p99}");
        w.observe(Duration::from_millis(50));
        let (count, p99) = w.take();
        assert_eq!(count, 1);
        assert!((50_000..=62_500).contains(&p99.unwrap()));
        assert_eq!(w.take(), (0, None));

        // A request counted before a report and filed in its bucket after it: the next report
        // with requests has it.
        w.buckets[bucket(50_000)].fetch_add(1, Ordering::Relaxed);
        assert_eq!(w.take(), (0, None));
        w.observe(Duration::from_micros(100));
        let (count, p99) = w.take();
        assert_eq!(count, 1);
        assert!((50_000..=62_500).contains(&p99.unwrap()), "the late one is in: p99 {p99:?}");
    }

    #[test]
    fn a_movement_is_reported_while_it_runs_and_a_while_after() {
        let moves = Moves::default();
        {
            let m = moves.begin(MoveKind::Leave, Some(10), Some(1000));
            m.moved(4, 400);
            m.progress(4.0, 10.0);
            let now = moves.report(Instant::now());
            assert_eq!(now.len(), 1);
            assert_eq!((now[0].keys, now[0].bytes, now[0].permille, now[0].active), (4, 400, 400, true));
        }
        let done = moves.report(Instant::now());
        assert!(!done[0].active, "finished when the handle is dropped");
        assert!(moves.report(Instant::now() + LINGER + Duration::from_secs(1)).is_empty());
    }
}
