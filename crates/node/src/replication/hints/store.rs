//! Hinted hand-off store: writes a replica missed, kept by the coordinator until that replica can
//! take them. Pure bookkeeping with explicit time; `delivery.rs` delivers.
//!
//! Bounded twice: at most `max_count` hints in all (a newer hint beyond that is refused and
//! counted as dropped — anti-entropy repairs what hints cannot carry) and at most `max_age` old
//! (a replica away for longer is refilled by anti-entropy instead). A hint is a versioned entry,
//! so delivering it can never overwrite a newer value.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dkv_membership::NodeId;

use serde::{Deserialize, Serialize};

use crate::transport::wire::KeyEntry;

struct Hint {
    kv: KeyEntry,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    by_target: HashMap<NodeId, VecDeque<Hint>>,
    total: usize,
    dropped: u64,
    /// Bumped by every change, so the saver writes only when something changed.
    generation: u64,
}

pub struct Hints {
    inner: Mutex<Inner>,
    max_count: usize,
    max_age: Duration,
}

impl Hints {
    pub fn new(max_count: usize, max_age: Duration) -> Self {
        Hints { inner: Mutex::default(), max_count, max_age }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `kv` for `target`; false (and counted as dropped) when the store is full.
    pub fn add(&self, target: NodeId, kv: KeyEntry, now: Instant) -> bool {
        let mut g = self.lock();
        if g.total >= self.max_count {
            g.dropped += 1;
            return false;
        }
        g.total += 1;
        g.generation += 1;
        g.by_target.entry(target).or_default().push_back(Hint { kv, at: now });
        true
    }

    pub fn targets(&self) -> Vec<NodeId> {
        self.lock().by_target.iter().filter(|(_, q)| !q.is_empty()).map(|(id, _)| *id).collect()
    }

    /// Take up to `max` hints for `target`, oldest first, discarding expired ones.
    pub fn take(&self, target: NodeId, max: usize, now: Instant) -> Vec<KeyEntry> {
        let mut g = self.lock();
        let inner = &mut *g;
        let Some(q) = inner.by_target.get_mut(&target) else { return Vec::new() };
        inner.generation += 1;
        let mut out = Vec::new();
        while out.len() < max {
            let Some(h) = q.pop_front() else { break };
            inner.total -= 1;
            if now.duration_since(h.at) > self.max_age {
                inner.dropped += 1;
                continue;
            }
            out.push(h.kv);
        }
        if q.is_empty() {
            inner.by_target.remove(&target);
        }
        out
    }

    /// Put back hints whose delivery failed (they keep their place at the front).
    pub fn put_back(&self, target: NodeId, batch: Vec<KeyEntry>, at: Instant) {
        let mut g = self.lock();
        g.total += batch.len();
        g.generation += 1;
        let q = g.by_target.entry(target).or_default();
        for kv in batch.into_iter().rev() {
            q.push_front(Hint { kv, at });
        }
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Every pending hint, with its age turned into wall-clock time, for saving.
    pub fn snapshot(&self) -> Vec<SavedHint> {
        let (now, now_ms) = (Instant::now(), wall_ms());
        let g = self.lock();
        g.by_target
            .iter()
            .flat_map(|(target, q)| {
                q.iter().map(move |h| SavedHint {
                    target: target.0,
                    at_ms: now_ms.saturating_sub(now.duration_since(h.at).as_millis() as u64),
                    kv: h.kv.clone(),
                })
            })
            .collect()
    }

    /// (pending, dropped)
    pub fn counts(&self) -> (usize, u64) {
        let g = self.lock();
        (g.total, g.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use dkv_storage::{Entry, Version};

    fn kv(k: &'static str) -> KeyEntry {
        KeyEntry { key: Bytes::from_static(k.as_bytes()), entry: Entry::tombstone(Version { ts: 1, node: 1 }) }
    }

    #[test]
    fn bounded_by_count_and_age_and_kept_in_order() {
        let t0 = Instant::now();
        let h = Hints::new(3, Duration::from_secs(10));
        let a = NodeId(1);
        assert!(h.add(a, kv("a"), t0));
        assert!(h.add(a, kv("b"), t0 + Duration::from_secs(5)));
        assert!(h.add(NodeId(2), kv("c"), t0));
        assert!(!h.add(a, kv("d"), t0), "full");
        assert_eq!(h.counts(), (3, 1));
        let batch = h.take(a, 10, t0 + Duration::from_secs(12));
        assert_eq!(batch.len(), 1, "the hint older than max_age is dropped");
        assert_eq!(batch[0].key, Bytes::from_static(b"b"));
        h.put_back(a, batch, t0 + Duration::from_secs(12));
        assert_eq!(h.counts(), (2, 2));
        let mut targets = h.targets();
        targets.sort();
        assert_eq!(targets, vec![NodeId(1), NodeId(2)]);
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

/// Put saved hints back in the store, with the age they had.
pub fn restore(hints: &Hints, saved: Vec<SavedHint>) {
    let (now, now_ms) = (Instant::now(), wall_ms());
    for h in saved {
        let age = Duration::from_millis(now_ms.saturating_sub(h.at_ms));
        hints.add(NodeId(h.target), h.kv, now.checked_sub(age).unwrap_or(now));
    }
}
