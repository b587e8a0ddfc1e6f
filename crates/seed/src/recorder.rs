//! Writing the seed's record (`record.rs`) off the registry's lock, one write for every change
//! made while the one before was on its way to the disk (a group commit).
//!
//! Why: the seed wrote the record while it held the registry, after every change. At 1 000
//! members a write takes about 7 ms (2.7 MB, an fsync and a rename), so a cluster's cold start,
//! a join and a `ready` per member, held the registry for two thousand such writes in a row, and
//! every heartbeat waited behind them. Measured with `bench/seed-record.py 1000` (2026-12-05):
//! 1 000 members registered and made ready in 11.0 s against 4.4 s without a record, with
//! heartbeats answered in 25 ms at the median against 2.6 ms; written this way, in 5.6 s and
//! 10 ms.
//!
//! How: a call that changes the registry notices it while it still holds the registry
//! ([`Recorder::notice`]: the view's epoch and digest moved), which counts a change and wakes the
//! writer, a thread of its own. The writer takes the registry only to copy the view and the count
//! of changes it covers, writes that view, and publishes the count. Every answer, whether its
//! own call changed the view or another's did, waits until the record covers every change
//! noticed before it read the registry ([`Recorder::covered`]), so the record is still never
//! older than a view some node holds. A failed write removes the record (`Record::write`),
//! releases the answers waiting for it, as a seed without a record would answer, and is tried
//! again every second until one succeeds.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use dkv_membership::{Digest, Registry};
use tokio::sync::watch;

use crate::record::Record;

/// How long after a failed write the writer tries again, changes or not.
const RETRY: Duration = Duration::from_secs(1);

/// The seed's handle on its record's writer; the writer stops when the last handle is dropped.
pub(crate) struct Recorder {
    shared: Arc<Shared>,
    /// The changes the record covers, as the writer publishes them.
    covered: watch::Receiver<u64>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    /// Changes of the view noticed so far.
    noticed: u64,
    /// The epoch and digest of the view last noticed; `None` before the first call, so the
    /// registry as the seed started with it is written once.
    last: Option<(u64, Digest)>,
    /// The seed is gone: the writer ends.
    closed: bool,
}

impl Recorder {
    /// Start the writer of `record`, which copies the view from `registry`.
    pub fn start(record: Record, registry: &Arc<Mutex<Registry>>) -> std::io::Result<Recorder> {
        let shared = Arc::new(Shared { pending: Mutex::default(), wake: Condvar::new() });
        let (tx, covered) = watch::channel(0);
        let (writer, registry) = (shared.clone(), Arc::downgrade(registry));
        std::thread::Builder::new().name("seed-record".into()).spawn(move || writer.run(record, registry, tx))?;
        Ok(Recorder { shared, covered })
    }

    /// Called with `registry` held, after every call on it: counts a change when its view moved
    /// since the last call. The changes the record must cover before an answer drawn from
    /// `registry` now may leave.
    pub fn notice(&self, registry: &Registry) -> u64 {
        let now = (registry.epoch(), registry.digest());
        let mut p = self.shared.lock();
        if p.last != Some(now) {
            p.last = Some(now);
            p.noticed += 1;
            self.shared.wake.notify_one();
        }
        p.noticed
    }

    /// Wait until the record covers `changes` (written, or removed after a failed write).
    pub async fn covered(&self, changes: u64) {
        let mut covered = self.covered.clone();
        // An error: the writer is gone (it panicked); answers go on as without a record.
        let _ = covered.wait_for(|c| *c >= changes).await;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer: write the latest view whenever changes are noticed that the record does not
    /// cover, until the seed is gone.
    fn run(&self, mut record: Record, registry: Weak<Mutex<Registry>>, covered: watch::Sender<u64>) {
        let (mut done, mut failed) = (0, false);
        loop {
            let mut p = self.lock();
            while !p.closed && p.noticed == done && !failed {
                p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            if failed && !p.closed && p.noticed == done {
                p = self.wake.wait_timeout(p, RETRY).unwrap_or_else(|e| e.into_inner()).0;
            }
            if p.closed {
                return;
            }
            drop(p);
            let Some(registry) = registry.upgrade() else { return };
            // The registry first, then the count: the order in which `notice` takes them.
            let (view, changes) = {
                let r = registry.lock().unwrap_or_else(|e| e.into_inner());
                (r.view(), self.lock().noticed)
            };
            drop(registry);
            failed = !record.write(&view);
            done = changes;
            covered.send_replace(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_membership::api::RegisterRequest;

    fn reg(addr: &str) -> RegisterRequest {
        RegisterRequest { addr: addr.into(), ..Default::default() }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("dkv-seed-recorder-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    /// A recorder of a new registry, in a new directory named after `name`.
    fn started(name: &str) -> (std::path::PathBuf, Arc<Mutex<Registry>>, Recorder) {
        let p = tmp(name);
        let (record, _) = Record::open(&p, "c1").unwrap();
        let registry = Arc::new(Mutex::new(Registry::new(0, 1_000).for_cluster("c1")));
        let recorder = Recorder::start(record, &registry).unwrap();
        (p, registry, recorder)
    }

    fn recorded(p: &std::path::Path) -> Option<dkv_membership::View> {
        let bytes = std::fs::read(p.join("membership.json")).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    /// Changes are counted once each, heartbeats count none, and once the record covers the
    /// count, the file holds the registry's view.
    #[tokio::test]
    async fn a_change_is_written_before_it_is_covered_and_heartbeats_count_none() {
        let (p, registry, recorder) = started("changes");
        let with = |f: &dyn Fn(&mut Registry)| {
            let mut r = registry.lock().unwrap();
            f(&mut r);
            recorder.notice(&r)
        };
        let first = with(&|r| drop(r.register(reg("h:1"), 0).unwrap()));
        let id = registry.lock().unwrap().view().nodes[0].id;
        let second = with(&|r| drop(r.register(reg("h:2"), 0).unwrap()));
        assert_eq!(second, first + 1);
        assert_eq!(with(&|r| drop(r.heartbeat(id, 5).unwrap())), second, "a heartbeat changes nothing");
        recorder.covered(second).await;
        let expected = registry.lock().unwrap().view();
        let view = recorded(&p).expect("written");
        assert_eq!(view.epoch, expected.epoch);
        assert!(view.same_placement(&expected), "the last view, whole");
        drop(recorder);
        std::fs::remove_dir_all(&p).unwrap();
    }

    /// A failed write removes the record and releases the answers; the writer tries again
    /// without a change, and the record is back.
    #[tokio::test]
    async fn a_failed_write_removes_the_record_and_is_tried_again() {
        let (p, registry, recorder) = started("failing");
        let register = |addr: &str| {
            let mut r = registry.lock().unwrap();
            r.register(reg(addr), 0).unwrap();
            recorder.notice(&r)
        };
        recorder.covered(register("h:1")).await;
        assert!(recorded(&p).is_some());
        // The write's temporary file cannot be created: a directory stands in its way.
        let blocker = p.join(".membership.json.tmp");
        std::fs::create_dir(&blocker).unwrap();
        recorder.covered(register("h:2")).await;
        assert!(recorded(&p).is_none(), "the older view is gone");
        std::fs::remove_dir(&blocker).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while recorded(&p).is_none_or(|v| v.nodes.len() != 2) {
            assert!(std::time::Instant::now() < deadline, "the record was not written again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(recorder);
        std::fs::remove_dir_all(&p).unwrap();
    }

    /// The writer ends with the seed, and lets the directory go: it can be opened again.
    #[tokio::test]
    async fn the_writer_ends_with_the_seed_and_unlocks_the_directory() {
        let (p, _registry, recorder) = started("ends");
        drop(recorder);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Err(e) = Record::open(&p, "c1") {
            assert!(std::time::Instant::now() < deadline, "still locked: {e}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::fs::remove_dir_all(&p).unwrap();
    }
}
