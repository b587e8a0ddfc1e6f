//! Hinted hand-off store: writes a replica missed, kept by the coordinator until that replica can
//! take them. Pure bookkeeping with explicit time; `delivery.rs` delivers.
//!
//! Bounded three ways, and anti-entropy repairs whatever a bound drops:
//! * at most `max_count` hints and `max_bytes` of keys and values in all (a hint may carry a
//!   value of megabytes), hints out for delivery included: past either, the *oldest* hints go,
//!   counted as evicted — the newest writes are the likeliest to be still missing when the
//!   replica comes back, and the oldest the likeliest to have been repaired meanwhile. A hint
//!   alone over the byte bound is refused, counted as dropped. (Until 2026-12-06 the count bound
//!   refused the newest hint instead, against what the README's limits said.)
//! * at most `max_age` old: a replica away for longer is refilled by anti-entropy instead.
//!   A hint's age counts from when its write was made, by its version's wall time ([`age_of`]:
//!   a write in flight across a pause of the node fails after it); a failed delivery puts it
//!   back with that age, so hints for a replica that stays unreachable do expire.
//!
//! A hint is a versioned entry, so delivering it can never overwrite a newer value.
//!
//! Hints out for delivery stay here until the delivery ends (`delivered` or `put_back`): they
//! still count as pending in `/stats`, and a node that saves its hints while one is out saves
//! it too. A delivery to a paused replica waits out its whole timeout, and the count used to
//! drop to zero for all that time.
//!
//! A durable node keeps its hints in a file that grows by what was kept since the last save
//! (`life/hint_file.rs`); [`Hints::to_save`] says what to write: the new hints, or all of them
//! when the file holds more than twice what is pending (delivered, evicted or expired hints), or
//! nothing. Taking hints out for delivery and putting them back changes nothing to save. Until
//! 2026-12-05 the node wrote every pending hint each heartbeat interval in which anything moved,
//! and a failed delivery to a replica that was down moved them: with 100 000 hints of 1 KiB
//! pending, 107 MB written and fsynced every second on a runtime thread.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dkv_membership::NodeId;
use dkv_storage::{Hlc, Version};

use serde::{Deserialize, Serialize};

use crate::transport::wire::KeyEntry;

/// Default bound on the key and value bytes of all pending hints.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// A kept write and when it was made.
pub struct Hint {
    pub kv: KeyEntry,
    at: Instant,
}

impl Hint {
    fn bytes(&self) -> usize {
        self.kv.bytes()
    }
}

#[derive(Default)]
struct Inner {
    by_target: HashMap<NodeId, VecDeque<Hint>>,
    /// Taken for delivery and not yet delivered or put back, by target.
    out: HashMap<NodeId, Vec<Hint>>,
    /// Hints in `by_target`, and their bytes: what the bounds apply to.
    total: usize,
    bytes: usize,
    /// Hints in `out`, and their bytes.
    out_total: usize,
    out_bytes: usize,
    /// Refused (alone over the byte bound) or expired.
    dropped: u64,
    /// The oldest, dropped to stay under the bounds.
    evicted: u64,
    /// Hints kept since the saver last took them, to be appended to the file; `None` when the
    /// file is to be written whole instead (at start, after restored hints, after a failed
    /// write, or when more were kept between two saves than the store holds).
    unsaved: Option<Vec<(NodeId, Hint)>>,
    /// What those will take in the file, about.
    unsaved_bytes: usize,
}

/// What the saver is to do with the hints file (see [`Hints::to_save`]).
pub enum Save {
    Nothing,
    /// No hint is pending: the file goes.
    Remove,
    /// Hints kept since the last save, to add at the end of the file.
    Append(Vec<SavedHint>),
    /// Every pending hint: the file is written anew with these alone.
    Replace(Vec<SavedHint>),
}

/// About what a saved hint takes besides its key and value (ids, times, version, lengths).
const SAVED_OVERHEAD: usize = 48;

/// The file is written anew once it holds more than twice the pending hints and this much.
const FILE_SLACK: u64 = 4 << 20;

impl Inner {
    /// The hints out for `target`, no longer counted as out.
    fn take_out(&mut self, target: NodeId) -> Vec<Hint> {
        let batch = self.out.remove(&target).unwrap_or_default();
        self.out_total -= batch.len();
        self.out_bytes -= batch.iter().map(Hint::bytes).sum::<usize>();
        batch
    }
}

/// What the store holds and has let go, for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HintCounts {
    pub pending: usize,
    pub bytes: usize,
    pub dropped: u64,
    pub evicted: u64,
}

pub struct Hints {
    inner: Mutex<Inner>,
    /// Woken by every hint kept, so delivery sleeps while there is none (see [`Hints::kept`]).
    added: tokio::sync::Notify,
    /// Woken by every hint kept or delivered, so the saver sleeps while nothing changed (see
    /// [`Hints::changed`]).
    changes: tokio::sync::Notify,
    max_count: usize,
    max_bytes: usize,
    max_age: Duration,
    /// The wall clock, ms since the Unix epoch ([`wall_ms`]; tests pass a fake).
    wall: fn() -> u64,
}

impl Hints {
    pub fn new(max_count: usize, max_age: Duration) -> Self {
        Hints {
            inner: Mutex::default(),
            added: tokio::sync::Notify::new(),
            changes: tokio::sync::Notify::new(),
            max_count,
            max_bytes: DEFAULT_MAX_BYTES,
            max_age,
            wall: wall_ms,
        }
    }

    /// Read the wall clock from `wall` (ms since the Unix epoch) instead of the system's.
    #[cfg(test)]
    pub fn with_wall(mut self, wall: fn() -> u64) -> Self {
        self.wall = wall;
        self
    }

    /// Bound the key and value bytes of all pending hints (default [`DEFAULT_MAX_BYTES`]).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `kv` for `target`, dropping the oldest hints if the store is full. False when it is
    /// not kept: no hint may be, or it alone is over the byte bound (counted as dropped), or
    /// every older hint is out for delivery and the bounds leave it no room (counted as
    /// evicted).
    pub fn add(&self, target: NodeId, kv: KeyEntry, now: Instant) -> bool {
        // Copied: a hint is kept for minutes.
        let hint = Hint { kv: kv.detached(), at: now };
        let mut g = self.lock();
        if self.max_count == 0 || hint.bytes() > self.max_bytes {
            g.dropped += 1;
            return false;
        }
        g.total += 1;
        g.bytes += hint.bytes();
        let saved = Hint { kv: hint.kv.clone(), at: hint.at };
        g.by_target.entry(target).or_default().push_back(hint);
        // The new hint is the last of its queue: the queue was emptied only if it went too.
        let kept = !self.evict_oldest(&mut g).contains(&target);
        if kept {
            self.note_unsaved(&mut g, target, &saved);
        }
        drop(g);
        self.added.notify_one();
        self.changes.notify_one();
        kept
    }

    /// [`Hints::add`] a hint `age` old, or older by its write's version ([`age_of`], by this
    /// store's wall clock): dropped at once (counted as dropped) past the bound on age, or where
    /// an `Instant` cannot reach back that far (on Linux it can), rather than kept as new.
    pub fn add_aged(&self, target: NodeId, kv: KeyEntry, now: Instant, age: Duration) -> bool {
        let age = age.max(age_of(kv.entry.version, (self.wall)()));
        match self.made_at(now, age) {
            Some(at) => self.add(target, kv, at),
            None => {
                self.lock().dropped += 1;
                false
            }
        }
    }

    /// When a hint `age` old at `now` was made: `None` past the bound on age, or where an
    /// `Instant` cannot reach back that far.
    fn made_at(&self, now: Instant, age: Duration) -> Option<Instant> {
        now.checked_sub(age).filter(|_| age <= self.max_age)
    }

    /// Add a hint just queued for `target` to those the next save appends; past what the store
    /// itself may hold, the next save writes the file whole instead, so the list stays bounded
    /// as the store is.
    fn note_unsaved(&self, g: &mut Inner, target: NodeId, hint: &Hint) {
        let Some(list) = g.unsaved.as_mut() else { return };
        if list.len() < self.max_count && g.unsaved_bytes + hint.bytes() <= self.max_bytes {
            g.unsaved_bytes += hint.bytes() + SAVED_OVERHEAD;
            list.push((target, Hint { kv: hint.kv.clone(), at: hint.at }));
        } else {
            (g.unsaved, g.unsaved_bytes) = (None, 0);
        }
    }

    /// Until a hint is kept: returns at once when one was kept since the last call returned.
    pub async fn kept(&self) {
        self.added.notified().await
    }

    /// Until a hint is kept or delivered: returns at once when one was since the last call
    /// returned. What the hints file's saver waits for.
    pub async fn changed(&self) {
        self.changes.notified().await
    }

    /// Drop the oldest hints, whoever they are for, until the store is under its bounds. Hints
    /// out for delivery count (they come back if the delivery fails) but stay: the oldest of
    /// those waiting go.
    /// Returns the targets whose queues it emptied.
    fn evict_oldest(&self, g: &mut Inner) -> Vec<NodeId> {
        let mut emptied = Vec::new();
        while g.total + g.out_total > self.max_count || g.bytes + g.out_bytes > self.max_bytes {
            // Each queue is oldest first; the oldest of all is at the front of one of them.
            let Some(target) =
                g.by_target.iter().filter_map(|(t, q)| q.front().map(|h| (h.at, *t))).min().map(|(_, t)| t)
            else {
                break;
            };
            let q = g.by_target.get_mut(&target).expect("a target just found");
            let h = q.pop_front().expect("a front just found");
            if q.is_empty() {
                g.by_target.remove(&target);
                emptied.push(target);
            }
            g.total -= 1;
            g.bytes -= h.bytes();
            g.evicted += 1;
        }
        emptied
    }

    pub fn targets(&self) -> Vec<NodeId> {
        self.lock().by_target.iter().filter(|(_, q)| !q.is_empty()).map(|(id, _)| *id).collect()
    }

    /// Take up to `max` hints for `target` out for delivery, oldest first, discarding expired
    /// ones: older than the bound by `now`, or by the wall clock from their write's version
    /// ([`age_of`]; a VM suspended past the grace does not advance `Instant`, and a hint it
    /// kept before would be young on waking). They stay counted until [`Hints::delivered`] or
    /// [`Hints::put_back`].
    pub fn take(&self, target: NodeId, max: usize, now: Instant) -> Vec<KeyEntry> {
        self.take_aged(target, max, now).into_iter().map(|(kv, _)| kv).collect()
    }

    /// [`Hints::take`], with each hint's age.
    pub fn take_aged(&self, target: NodeId, max: usize, now: Instant) -> Vec<(KeyEntry, Duration)> {
        let mut g = self.lock();
        let inner = &mut *g;
        let Some(q) = inner.by_target.get_mut(&target) else { return Vec::new() };
        let out = inner.out.entry(target).or_default();
        let mut batch = Vec::new();
        let now_ms = (self.wall)();
        while batch.len() < max {
            let Some(h) = q.pop_front() else { break };
            inner.total -= 1;
            inner.bytes -= h.bytes();
            let age = now.saturating_duration_since(h.at).max(age_of(h.kv.entry.version, now_ms));
            if age > self.max_age {
                inner.dropped += 1;
                continue;
            }
            inner.out_total += 1;
            inner.out_bytes += h.bytes();
            batch.push((h.kv.clone(), age));
            out.push(h);
        }
        if q.is_empty() {
            inner.by_target.remove(&target);
        }
        batch
    }

    /// The hints out for `target` were delivered: forget them. Returns how many there were.
    pub fn delivered(&self, target: NodeId) -> usize {
        let n = self.lock().take_out(target).len();
        if n > 0 {
            self.changes.notify_one();
        }
        n
    }

    /// The delivery of the hints out for `target` failed: back at the front of its queue, with
    /// the age they had.
    pub fn put_back(&self, target: NodeId) {
        let mut g = self.lock();
        let batch = g.take_out(target);
        g.total += batch.len();
        g.bytes += batch.iter().map(Hint::bytes).sum::<usize>();
        let q = g.by_target.entry(target).or_default();
        for h in batch.into_iter().rev() {
            q.push_front(h);
        }
        // Hints added while these were out may have filled the store.
        self.evict_oldest(&mut g);
    }

    /// Of the hints out for `from`, those `route` gives other destinations for (the keys `from`
    /// no longer replicates, or all of them once it left) are queued for each of those instead,
    /// with the age they had: a destination that cannot take them then holds only its own
    /// queue, not `from`'s batch and every other destination's share of it. Returns how many
    /// hints were handed over; the rest stay out for `from`.
    pub fn hand_over<D: IntoIterator<Item = NodeId>>(
        &self,
        from: NodeId,
        route: impl Fn(&KeyEntry) -> Option<D>,
    ) -> usize {
        let mut g = self.lock();
        let Some(out) = g.out.get_mut(&from) else { return 0 };
        let mut moved: HashMap<NodeId, Vec<Hint>> = HashMap::new();
        let (mut handed, mut gone_bytes) = (0, 0);
        out.retain(|h| {
            let Some(dests) = route(&h.kv) else { return true };
            for dest in dests {
                moved.entry(dest).or_default().push(Hint { kv: h.kv.clone(), at: h.at });
            }
            handed += 1;
            gone_bytes += h.bytes();
            false
        });
        g.out_total -= handed;
        g.out_bytes -= gone_bytes;
        self.queue_aged(g, moved);
        handed
    }

    /// Keep hints another node handed on (a leaving one), each with its age at `now`: dropped
    /// (counted) past the bound on age, or where an `Instant` cannot reach back that far, as
    /// [`Hints::add_aged`] does.
    pub fn adopt(&self, now: Instant, hints: impl IntoIterator<Item = (NodeId, KeyEntry, Duration)>) {
        let mut by_target: HashMap<NodeId, Vec<Hint>> = HashMap::new();
        let mut too_old = 0;
        for (target, kv, age) in hints {
            match self.made_at(now, age) {
                // Copied: a slice of the frame they came in would pin it whole.
                Some(at) => by_target.entry(target).or_default().push(Hint { kv: kv.detached(), at }),
                None => too_old += 1,
            }
        }
        let mut g = self.lock();
        g.dropped += too_old;
        self.queue_aged(g, by_target);
    }

    /// Queue hints of any age, each queue kept oldest first (as the bounds and `take` expect),
    /// then drop the oldest of all past the bounds.
    fn queue_aged(&self, mut g: std::sync::MutexGuard<'_, Inner>, hints: HashMap<NodeId, Vec<Hint>>) {
        if hints.is_empty() {
            return;
        }
        for (target, mut hints) in hints {
            g.total += hints.len();
            g.bytes += hints.iter().map(Hint::bytes).sum::<usize>();
            for h in &hints {
                self.note_unsaved(&mut g, target, h);
            }
            hints.sort_by_key(|h| h.at);
            let q = g.by_target.entry(target).or_default();
            *q = merge_by_age(std::mem::take(q), hints);
        }
        self.evict_oldest(&mut g);
        drop(g);
        self.added.notify_one();
        self.changes.notify_one();
    }

    /// What to write to a hints file of `file_bytes` now (see [`Save`]); what it returns counts
    /// as saved. The first call writes the file whole.
    pub fn to_save(&self, file_bytes: u64) -> Save {
        let mut g = self.lock();
        let (pending, bytes) = (g.total + g.out_total, g.bytes + g.out_bytes);
        let unsaved = g.unsaved.replace(Vec::new());
        let unsaved_bytes = std::mem::take(&mut g.unsaved_bytes) as u64;
        if pending == 0 {
            return if file_bytes > 0 { Save::Remove } else { Save::Nothing };
        }
        let live = (bytes + SAVED_OVERHEAD * pending) as u64;
        match unsaved {
            Some(new) if file_bytes + unsaved_bytes <= 2 * live + FILE_SLACK => {
                if new.is_empty() {
                    Save::Nothing
                } else {
                    let at = Clock::now();
                    Save::Append(new.iter().map(|(target, h)| at.saved(*target, h)).collect())
                }
            }
            _ => Save::Replace(snapshot(&g)),
        }
    }

    /// Write the file whole at the next save: after hints were restored into the store, or after a
    /// failed write (which may have left part of an append at its end).
    pub fn save_whole(&self) {
        let mut g = self.lock();
        (g.unsaved, g.unsaved_bytes) = (None, 0);
    }

    /// Every pending hint, out for delivery or not, with its age turned into wall-clock time: what
    /// a save that writes the file whole holds (for tests; the saver goes through `to_save`).
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<SavedHint> {
        snapshot(&self.lock())
    }

    /// (pending, dropped), dropped counting evicted hints too.
    pub fn counts(&self) -> (usize, u64) {
        let c = self.stats();
        (c.pending, c.dropped + c.evicted)
    }

    pub fn stats(&self) -> HintCounts {
        let g = self.lock();
        let (pending, bytes) = (g.total + g.out_total, g.bytes + g.out_bytes);
        HintCounts { pending, bytes, dropped: g.dropped, evicted: g.evicted }
    }
}

/// Two queues of hints, each oldest first, as one.
fn merge_by_age(a: VecDeque<Hint>, b: Vec<Hint>) -> VecDeque<Hint> {
    let mut merged = VecDeque::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.at <= y.at => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(h) => merged.push_back(h),
            None => return merged,
        }
    }
}

/// Now, on both clocks: a hint's age is kept as an `Instant` and saved as wall-clock time.
struct Clock {
    now: Instant,
    now_ms: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock { now: Instant::now(), now_ms: wall_ms() }
    }

    fn saved(&self, target: NodeId, h: &Hint) -> SavedHint {
        let at_ms = self.now_ms.saturating_sub(self.now.duration_since(h.at).as_millis() as u64);
        SavedHint { target: target.0, at_ms, kv: h.kv.clone() }
    }
}

fn snapshot(g: &Inner) -> Vec<SavedHint> {
    let at = Clock::now();
    let queued = g.by_target.iter().flat_map(|(target, q)| q.iter().map(move |h| (target, h)));
    let out = g.out.iter().flat_map(|(target, hs)| hs.iter().map(move |h| (target, h)));
    queued.chain(out).map(|(target, h)| at.saved(*target, h)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use dkv_storage::{Entry, Version};

    fn kv(k: &'static str) -> KeyEntry {
        KeyEntry { key: Bytes::from_static(k.as_bytes()), entry: Entry::tombstone(fresh()) }
    }

    /// A version made now by the wall clock: hints are aged from their version too.
    fn fresh() -> Version {
        Version { ts: Hlc::ts_at_ms(wall_ms()), node: 1 }
    }

    #[test]
    fn a_hint_is_aged_from_its_writes_version_not_from_when_it_is_kept() {
        const NOW_MS: u64 = 1_000_000_000_000;
        let made = |ms_ago: u64| Version { ts: Hlc::ts_at_ms(NOW_MS - ms_ago), node: 1 };
        assert_eq!(age_of(made(5_000), NOW_MS), Duration::from_secs(5));
        let ahead = Version { ts: Hlc::ts_at_ms(NOW_MS + 300), node: 1 };
        assert_eq!(age_of(ahead, NOW_MS), Duration::ZERO, "a version ahead by the offset allowed");
        let h = Hints::new(10, Duration::from_secs(60)).with_wall(|| NOW_MS);
        let t0 = Instant::now();
        // A write in flight across a pause of two minutes fails when the node wakes: its hint
        // would outlive the bound on age counted from the write, so it is not kept.
        let entry = |key: &'static str, version| KeyEntry {
            key: Bytes::from_static(key.as_bytes()),
            entry: Entry::tombstone(version),
        };
        assert!(!h.add_aged(NodeId(1), entry("across a pause", made(120_000)), t0, age_of(made(120_000), NOW_MS)));
        assert_eq!(h.stats(), HintCounts { pending: 0, bytes: 0, dropped: 1, evicted: 0 });
        // One made 5 s ago expires 55 s after it is kept, not 60.
        assert!(h.add_aged(NodeId(1), entry("recent", made(5_000)), t0, age_of(made(5_000), NOW_MS)));
        assert!(h.take(NodeId(1), 10, t0 + Duration::from_secs(56)).is_empty());
        assert_eq!(h.counts(), (0, 2));
        // Saved decades ago: dropped as it is restored, not kept until a delivery looks at it.
        restore(&h, vec![SavedHint { target: 1, at_ms: 1, kv: kv("decades old") }]);
        assert_eq!(h.counts(), (0, 3));
    }

    /// A VM suspended past the bound does not advance `Instant`: a hint kept before the
    /// suspension is young by it on waking, and old by the wall clock and its version.
    #[test]
    fn a_hint_kept_before_a_suspension_is_aged_by_the_wall_clock_too() {
        static WALL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000_000_000);
        let wall = || WALL.load(std::sync::atomic::Ordering::Relaxed);
        let h = Hints::new(10, Duration::from_secs(60)).with_wall(wall);
        let t0 = Instant::now();
        let version = Version { ts: Hlc::ts_at_ms(wall()), node: 1 };
        let kv = KeyEntry { key: Bytes::from_static(b"k"), entry: Entry::tombstone(version) };
        assert!(h.add_aged(NodeId(1), kv, t0, Duration::ZERO));
        WALL.fetch_add(3_600_000, std::sync::atomic::Ordering::Relaxed); // an hour suspended
        assert!(h.take(NodeId(1), 10, t0 + Duration::from_millis(10)).is_empty(), "an hour old by its version");
        assert_eq!(h.counts(), (0, 1));
    }

    #[test]
    fn bounded_by_count_and_age_and_kept_in_order() {
        let t0 = Instant::now();
        let h = Hints::new(3, Duration::from_secs(10));
        let a = NodeId(1);
        assert!(h.add(a, kv("a"), t0));
        assert!(h.add(a, kv("b"), t0 + Duration::from_secs(5)));
        assert!(h.add(NodeId(2), kv("c"), t0));
        assert!(h.add(a, kv("d"), t0), "full: the oldest goes");
        assert_eq!(h.stats(), HintCounts { pending: 3, bytes: 3, dropped: 0, evicted: 1 });
        // "a" went ("c" is as old, but node 1 comes first among equals): node 1 holds "b", "d".
        let batch = h.take(a, 10, t0 + Duration::from_secs(12));
        assert_eq!(batch.len(), 1, "the hint older than max_age is dropped");
        assert_eq!(batch[0].key, Bytes::from_static(b"b"));
        assert_eq!(h.counts(), (2, 2), "a hint out for delivery is still pending");
        h.put_back(a);
        assert_eq!(h.counts(), (2, 2));
        let mut targets = h.targets();
        targets.sort();
        assert_eq!(targets, vec![NodeId(1), NodeId(2)]);
    }

    /// The count bound holds with hints out for delivery: they come back if it fails (a
    /// coordinator showed 100 039 hints pending under a bound of 100 000). The oldest of those
    /// waiting go, not the ones out.
    #[test]
    fn hints_out_for_delivery_count_towards_the_bound() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let h = Hints::new(3, Duration::from_secs(100));
        assert!(h.add(NodeId(1), kv("a"), at(1)));
        assert!(h.add(NodeId(1), kv("b"), at(2)));
        assert!(h.add(NodeId(2), kv("c"), at(3)));
        assert_eq!(h.take(NodeId(1), 10, at(4)).len(), 2);
        assert!(h.add(NodeId(2), kv("d"), at(5)), "\"c\" goes, the oldest waiting");
        assert!(h.add(NodeId(2), kv("e"), at(6)), "then \"d\"");
        assert_eq!(h.stats(), HintCounts { pending: 3, bytes: 3, dropped: 0, evicted: 2 });
        h.put_back(NodeId(1));
        assert_eq!(h.stats().pending, 3);
        let keys: Vec<_> = h.take(NodeId(2), 10, at(7)).into_iter().map(|kv| kv.key).collect();
        assert_eq!(keys, vec![Bytes::from_static(b"e")]);
    }

    #[test]
    fn a_hint_put_back_keeps_its_age() {
        let t0 = Instant::now();
        let h = Hints::new(10, Duration::from_secs(10));
        assert!(h.add(NodeId(1), kv("a"), t0));
        let batch = h.take(NodeId(1), 10, t0 + Duration::from_secs(5));
        assert_eq!(batch.len(), 1);
        h.put_back(NodeId(1));
        assert!(h.take(NodeId(1), 10, t0 + Duration::from_secs(12)).is_empty(), "12 s old: expired");
        assert_eq!(h.counts(), (0, 1));
    }

    /// Hints handed over from one target's batch join each destination's queue with their
    /// age, in age order among that queue's own; those not handed over stay out.
    #[test]
    fn hints_handed_over_keep_their_age_and_each_queue_its_order() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let h = Hints::new(100, Duration::from_secs(10));
        let (left, a, b) = (NodeId(1), NodeId(2), NodeId(3));
        assert!(h.add(left, kv("old"), at(1)));
        assert!(h.add(left, kv("stays"), at(2)));
        assert!(h.add(left, kv("newer"), at(4)));
        assert!(h.add(a, kv("a's own"), at(3)));
        assert_eq!(h.take(left, 10, at(5)).len(), 3);
        let moved = h.hand_over(left, |kv| (kv.key != "stays").then(|| vec![a, b]));
        assert_eq!(moved, 2);
        assert_eq!(h.stats().pending, 1 + 2 * 2 + 1, "one out, two for each of a and b, a's own");
        let keys = |hs: Vec<KeyEntry>| hs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
        assert_eq!(keys(h.take(a, 10, at(6))), vec!["old", "a's own", "newer"], "oldest first");
        assert_eq!(h.delivered(left), 1, "the one left out");
        // Their age came with them: 11 s after the first was made, it has expired.
        assert_eq!(keys(h.take(b, 10, at(12))), vec!["newer"]);
    }

    /// A delivery to a paused replica takes its whole timeout: meanwhile its hints are still
    /// counted, and saved, and they are gone only once delivered.
    #[test]
    fn hints_out_for_delivery_stay_pending_and_saved_until_delivered() {
        let t0 = Instant::now();
        let h = Hints::new(10, Duration::from_secs(10));
        assert!(h.add(NodeId(1), kv("a"), t0));
        assert!(h.add(NodeId(1), kv("b"), t0));
        assert!(h.add(NodeId(2), kv("c"), t0));
        assert_eq!(h.take(NodeId(1), 10, t0).len(), 2);
        assert_eq!(h.stats().pending, 3);
        assert_eq!(h.snapshot().len(), 3, "saved while out");
        assert!(h.targets() == vec![NodeId(2)], "not taken twice");
        assert_eq!(h.delivered(NodeId(1)), 2);
        assert_eq!(h.stats().pending, 1);
        assert_eq!(h.snapshot().len(), 1);
        assert_eq!(h.delivered(NodeId(1)), 0, "nothing out any more");
    }

    /// A file written whole while a batch was out holds that batch after the rest, though it is
    /// older: restored, each queue is oldest first again, so the bounds drop the oldest.
    #[test]
    fn restored_hints_are_oldest_first_whatever_the_files_order() {
        let h = Hints::new(2, Duration::from_secs(1000));
        let now_ms = wall_ms();
        let saved = |k: &'static str, ago_ms: u64| SavedHint { target: 1, at_ms: now_ms - ago_ms, kv: kv(k) };
        restore(&h, vec![saved("newer", 3_000), saved("older", 10_000)]);
        assert!(h.add(NodeId(1), kv("new"), Instant::now()));
        let keys: Vec<_> = h.take(NodeId(1), 10, Instant::now()).into_iter().map(|kv| kv.key).collect();
        assert_eq!(keys, vec![Bytes::from_static(b"newer"), Bytes::from_static(b"new")], "the older went");
    }

    fn big(k: &'static str, len: usize) -> KeyEntry {
        KeyEntry { key: Bytes::from_static(k.as_bytes()), entry: Entry::value(fresh(), Bytes::from(vec![0; len])) }
    }

    /// What the next save appends is bounded as the store is: past the byte bound the file is
    /// written whole instead, with the pending hints alone (not those evicted meanwhile).
    #[test]
    fn the_hints_to_append_are_bounded_by_bytes_too() {
        let t0 = Instant::now();
        let h = Hints::new(100, Duration::from_secs(1000)).with_max_bytes(1000);
        assert!(h.add(NodeId(1), big("a", 299), t0));
        assert!(matches!(h.to_save(0), Save::Replace(s) if s.len() == 1), "the first save writes the file whole");
        assert!(h.add(NodeId(1), big("b", 299), t0));
        assert!(matches!(h.to_save(400), Save::Append(s) if s.len() == 1));
        for k in ["c", "d", "e", "f"] {
            assert!(h.add(NodeId(1), big(k, 299), t0));
        }
        match h.to_save(800) {
            Save::Replace(s) => assert_eq!(s.len(), 3, "the pending hints, not the evicted ones"),
            _ => panic!("1 200 bytes kept since the last save, over the bound: the file is written whole"),
        }
    }

    #[test]
    fn bounded_by_bytes_dropping_the_oldest() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let h = Hints::new(100, Duration::from_secs(1000)).with_max_bytes(1000);
        assert!(h.add(NodeId(1), big("a", 299), at(1)));
        assert!(h.add(NodeId(2), big("b", 299), at(2)));
        assert!(h.add(NodeId(1), big("c", 299), at(3)));
        assert_eq!(h.stats(), HintCounts { pending: 3, bytes: 900, dropped: 0, evicted: 0 });
        // 1200 bytes: the oldest of all ("a", for node 1) goes, whichever node the new one is for.
        assert!(h.add(NodeId(2), big("d", 299), at(4)));
        assert_eq!(h.stats(), HintCounts { pending: 3, bytes: 900, dropped: 0, evicted: 1 });
        let keys = |hs: Vec<KeyEntry>| hs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
        // Taken out for delivery ("b", "d"), their bytes still count: a new hint makes the oldest
        // one waiting ("c") go. The failed batch comes back with its old ages, and the next hint
        // makes the oldest of all ("b") go.
        assert_eq!(h.take(NodeId(2), 10, at(5)).len(), 2);
        assert!(h.add(NodeId(1), big("e", 299), at(6)));
        assert_eq!(h.stats(), HintCounts { pending: 3, bytes: 900, dropped: 0, evicted: 2 });
        h.put_back(NodeId(2));
        assert!(h.add(NodeId(1), big("f", 299), at(7)));
        assert_eq!(keys(h.take(NodeId(2), 10, at(8))), vec![Bytes::from_static(b"d")]);
        assert_eq!(keys(h.take(NodeId(1), 10, at(8))), vec![Bytes::from_static(b"e"), Bytes::from_static(b"f")]);
        assert_eq!(h.stats(), HintCounts { pending: 3, bytes: 900, dropped: 0, evicted: 3 }, "out for delivery");
        // With every older hint out, a new one finds no room.
        assert!(!h.add(NodeId(1), big("g", 299), at(9)));
        assert_eq!(h.stats(), HintCounts { pending: 3, bytes: 900, dropped: 0, evicted: 4 });
        assert_eq!(h.delivered(NodeId(2)) + h.delivered(NodeId(1)), 3);
        assert_eq!(h.stats(), HintCounts { pending: 0, bytes: 0, dropped: 0, evicted: 4 });
        // A hint alone over the bound is refused.
        assert!(!h.add(NodeId(1), big("h", 1000), at(10)));
        assert_eq!(h.counts(), (0, 5));
    }
}

#[derive(Serialize, Deserialize)]
pub struct SavedHint {
    pub target: u64,
    /// Wall-clock time the hint was made, so its age survives the restart.
    pub at_ms: u64,
    pub kv: KeyEntry,
}

pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How old a write of `version` is at `now_ms`, by its version's wall time: what a hint of it is
/// aged by when it is kept. A write in flight when this node paused fails when it wakes, maybe
/// after the grace: a delete of its key made meanwhile may be purged everywhere, and the hint,
/// aged from then, would bring the value back. Aged from its version, it goes first: the bound
/// on age is under the grace (`--hint-max-age`). Never negative: a version may be ahead of this
/// clock by the offset allowed.
pub fn age_of(version: Version, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(Hlc::ms_of(version.ts)))
}

/// Put saved hints back in the store, with the age they had; the file is written whole at the
/// next save (it may hold hints delivered since it was last written whole).
pub fn restore(hints: &Hints, mut saved: Vec<SavedHint>) {
    let (now, now_ms) = (Instant::now(), wall_ms());
    // Oldest first, as each target's queue must be (the bounds drop from its front): a file
    // written whole holds the hints out for delivery after the rest, though they are older.
    saved.sort_by_key(|h| h.at_ms);
    for h in saved {
        let age = Duration::from_millis(now_ms.saturating_sub(h.at_ms));
        hints.add_aged(NodeId(h.target), h.kv, now, age);
    }
    hints.save_whole();
}
