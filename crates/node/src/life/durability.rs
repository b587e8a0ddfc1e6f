//! When a write counts as stored: the `--fsync` policy, with group commit.
//!
//! `always`: a write is acknowledged only after an fsync that started after it was applied. One
//! syncer thread runs the fsyncs back to back; every write that arrives while one is running
//! waits for the next, so under load one fsync covers a whole batch of writes (group commit) and
//! the disk, not the number of writers, bounds the rate.
//!
//! `periodic`: writes are acknowledged once in the engine's log (handed to the OS, so they
//! survive the process being killed), and a timer fsyncs every interval, bounding what a machine
//! crash can lose to that interval. A failed fsync ends that bound (after one, the kernel may
//! have dropped the pages it could not write and call them clean, so a later fsync that succeeds
//! proves nothing): from then on the node acknowledges no write, as under `always`.
//!
//! A memory engine has nothing to sync; then [`Durability::wait`] returns at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use dkv_storage::Engine;
use tokio::sync::watch;

use crate::error::NodeError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// fsync before acknowledging, batched across concurrent writes.
    Always,
    /// fsync on a timer.
    Periodic(Duration),
}

#[derive(Default)]
struct Tickets {
    /// Writes that asked to be synced (a counter: the n-th asker holds ticket n).
    requested: u64,
    stopping: bool,
}

pub struct Durability {
    engine: Arc<dyn Engine>,
    mode: Fsync,
    tickets: Mutex<Tickets>,
    wake: Condvar,
    /// Highest ticket made durable, or the error that stopped the syncer.
    synced: watch::Sender<Result<u64, String>>,
    /// A periodic fsync failed: no write is acknowledged any more.
    failed: AtomicBool,
}

impl Durability {
    /// Start the syncer (a thread for `always`, a task for `periodic`) when the engine is durable.
    pub fn start(engine: Arc<dyn Engine>, mode: Fsync) -> Arc<Durability> {
        let d = Arc::new(Durability {
            engine,
            mode,
            tickets: Mutex::default(),
            wake: Condvar::new(),
            synced: watch::channel(Ok(0)).0,
            failed: AtomicBool::new(false),
        });
        if d.engine.is_durable() {
            match mode {
                Fsync::Always => {
                    let d = d.clone();
                    std::thread::Builder::new()
                        .name("dkv-fsync".into())
                        .spawn(move || d.sync_loop())
                        .expect("spawning the fsync thread");
                }
                Fsync::Periodic(every) => {
                    tokio::spawn(periodic(Arc::downgrade(&d), every));
                }
            }
        }
        d
    }

    fn needs_wait(&self) -> bool {
        self.mode == Fsync::Always && self.engine.is_durable()
    }

    /// Return once every write this task applied before calling is durable under the policy.
    pub async fn wait(&self) -> Result<(), NodeError> {
        if !self.needs_wait() {
            if self.failed.load(Ordering::Relaxed) {
                return Err(NodeError::Internal(
                    "write not durable: a periodic fsync failed, and this node acknowledges no write since; \
                     restart it on a working disk"
                        .into(),
                ));
            }
            return Ok(());
        }
        let mut synced = self.synced.subscribe();
        let ticket = {
            let mut t = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
            t.requested += 1;
            t.requested
        };
        self.wake.notify_one();
        let result = synced.wait_for(|s| s.as_ref().map_or(true, |&done| done >= ticket)).await;
        match result.as_deref() {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(NodeError::Internal(format!("write not durable, fsync failed: {e}"))),
            Err(_) => Err(NodeError::Unavailable("node is stopping".into())),
        }
    }

    /// The syncer: fsync whenever tickets are waiting; each fsync covers every ticket handed out
    /// before it started.
    fn sync_loop(&self) {
        let mut done = 0;
        loop {
            let target = {
                let mut t = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
                while t.requested == done && !t.stopping {
                    t = self.wake.wait(t).unwrap_or_else(|e| e.into_inner());
                }
                if t.stopping && t.requested == done {
                    return;
                }
                t.requested
            };
            if let Err(e) = self.engine.sync() {
                tracing::error!("fsync failed; this node can no longer acknowledge writes: {e}");
                let _ = self.synced.send_replace(Err(e.to_string()));
                return;
            }
            done = target;
            let _ = self.synced.send_replace(Ok(done));
        }
    }

    /// Sync what is left and stop the syncer thread (called once, at shutdown); whether the
    /// store is synced.
    pub fn shutdown(&self) -> bool {
        self.tickets.lock().unwrap_or_else(|e| e.into_inner()).stopping = true;
        self.wake.notify_all();
        match self.engine.sync() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("final fsync failed: {e}");
                false
            }
        }
    }
}

async fn periodic(d: std::sync::Weak<Durability>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(d) = d.upgrade() else { return };
        let engine = d.engine.clone();
        match tokio::task::spawn_blocking(move || engine.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!("periodic fsync failed; this node can no longer acknowledge writes: {e}");
                d.failed.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => tracing::error!("periodic fsync task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_storage::{DurableEngine, Entry, Version};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counts syncs, to show that concurrent waiters share them; fails them once told to.
    struct Counting(DurableEngine, AtomicU64, std::sync::atomic::AtomicBool);

    impl Engine for Counting {
        fn get(&self, h: u64, k: &[u8]) -> dkv_storage::StorageResult<Option<Entry>> {
            self.0.get(h, k)
        }
        fn apply(&self, h: u64, k: &[u8], e: Entry) -> dkv_storage::StorageResult<dkv_storage::Applied> {
            self.0.apply(h, k, e)
        }
        fn remove_if(&self, h: u64, k: &[u8], v: Version) -> dkv_storage::StorageResult<bool> {
            self.0.remove_if(h, k, v)
        }
        fn scan(
            &self,
            s: Option<&dkv_storage::Cursor>,
            e: u64,
            l: usize,
            o: &mut Vec<(u64, bytes::Bytes, Entry)>,
        ) -> dkv_storage::StorageResult<Option<dkv_storage::Cursor>> {
            self.0.scan(s, e, l, o)
        }
        fn purge_tombstones(&self, b: u64) -> dkv_storage::StorageResult<u64> {
            self.0.purge_tombstones(b)
        }
        fn expire_if(&self, h: u64, k: &[u8], v: Version) -> dkv_storage::StorageResult<bool> {
            self.0.expire_if(h, k, v)
        }
        fn stats(&self) -> dkv_storage::EngineStats {
            self.0.stats()
        }
        fn is_durable(&self) -> bool {
            true
        }
        fn sync(&self) -> dkv_storage::StorageResult<()> {
            self.1.fetch_add(1, Ordering::Relaxed);
            if self.2.load(Ordering::Relaxed) {
                return Err(dkv_storage::StorageError("an I/O error, as the test asked".into()));
            }
            self.0.sync()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_fsyncs() {
        let dir = std::env::temp_dir().join(format!("dkv-group-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Arc::new(Counting(DurableEngine::open(&dir).unwrap(), AtomicU64::new(0), Default::default()));
        let d = Durability::start(engine.clone(), Fsync::Always);
        let writers: Vec<_> = (0..200u64)
            .map(|i| {
                let (d, engine) = (d.clone(), engine.clone());
                tokio::spawn(async move {
                    let entry = Entry::value(Version { ts: 1, node: 1 }, bytes::Bytes::from_static(b"v"));
                    engine.apply(i, &i.to_be_bytes(), entry).unwrap();
                    d.wait().await.unwrap();
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let syncs = engine.1.load(Ordering::Relaxed);
        assert!((1..200).contains(&syncs), "200 writers should share fsyncs, got {syncs}");
        d.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Under `periodic`, writes are acknowledged without waiting for an fsync, until one fails:
    /// from then on none is, as under `always`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_periodic_fsync_stops_acknowledging_writes() {
        let dir = std::env::temp_dir().join(format!("dkv-periodic-failure-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Arc::new(Counting(DurableEngine::open(&dir).unwrap(), AtomicU64::new(0), Default::default()));
        let d = Durability::start(engine.clone(), Fsync::Periodic(Duration::from_millis(10)));
        d.wait().await.expect("acknowledged while fsyncs succeed");
        engine.2.store(true, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while d.wait().await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "writes still acknowledged 10 s after a failed fsync");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        engine.2.store(false, Ordering::Relaxed);
        let err = d.wait().await.unwrap_err();
        assert!(err.to_string().contains("periodic fsync failed"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
