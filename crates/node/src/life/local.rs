//! What a node keeps in its data directory besides the keys: its identity (in `dkv.json`), the
//! last membership view it adopted (`view.json`), its pending hints (`hints.log`, see
//! [`super::hint_file`]), when it was last in service (`service.json`, see [`super::absence`]),
//! and, from a
//! clean stop to the next start, the view it was settled under (`settled.json`).
//!
//! With these a restarted node registers as itself — same id, same tokens, same place on the
//! ring, so nothing moves — and, if the seed restarted too, hands it the view to rebuild the
//! membership from. Hints kept since the last save are appended every heartbeat interval and
//! at shutdown; a crash loses at most the hints of the last interval, and anti-entropy repairs
//! what those would have carried.
//!
//! Anti-entropy keeps no state of its own to save: its digests are recomputed from the store,
//! and a restarted node runs a round as soon as it is serving.
//!
//! A node restarted on its directory does not know which views it missed while it was down, so
//! none of its answers is complete until that round (`replication/settled.rs`), and the round
//! needs every peer. A node that stopped cleanly, settled, records the view it was settled under
//! once its store is synced ([`Local::save_settled`]); started again under that same view (no
//! member came, went or changed meanwhile), it is a replica of the same keys that missed some
//! writes while down, as any replica may, and holds every write it acknowledged: it is settled
//! at once, provided its store opens holding what it held at that stop ([`StoreMark`]; a
//! journal cut short while it was stopped is not a replica that merely missed writes). Start-up
//! removes the record, so a crash later never finds it. With `--fsync always`
//! every acknowledged write is on disk when it is acknowledged, so the node records the view
//! the first time it settles under it, and a node killed and started again is settled at once
//! too, provided its journal opens whole: fjall drops every record after damage in the middle
//! of a journal without an error, and [`unless_journal_cut`] is what notices. Otherwise a node
//! killed (its last writes may be lost), or one stopped unsettled, waits for its round as
//! before.
//!
//! A view is saved by a thread of its own ([`ViewSaver`]), not by the caller: views are adopted
//! on the request and heartbeat paths, and a save is a write, an fsync and a rename. The saver
//! keeps only the latest view asked for, so a burst of changes costs one write, and what it last
//! writes is the view adopted last.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use dkv_membership::{NodeId, View};
use dkv_storage::{DataDir, DurableEngine, Engine, Identity, JournalCut, MemoryEngine};

use super::absence::Service;
use super::hint_file;
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::replication::hints::{Hints, Save, SavedHint};

const VIEW: &str = "view.json";
const SETTLED: &str = "settled.json";
const SERVICE: &str = "service.json";

/// The view a node was settled under (when it stopped cleanly, or with `--fsync always` when it
/// settled): its epoch and digest, which name one membership (see the module doc), and, from a
/// clean stop, what its store held then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SettledAt {
    pub epoch: u64,
    pub digest: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreMark>,
}

impl SettledAt {
    pub fn of(topo: &dkv_membership::Topology) -> SettledAt {
        SettledAt { epoch: topo.epoch(), digest: topo.digest().0, store: None }
    }

    /// Whether this names the view `topo`.
    pub fn names(&self, topo: &dkv_membership::Topology) -> bool {
        (self.epoch, self.digest) == (topo.epoch(), topo.digest().0)
    }

    /// This record, with what `engine` holds now: taken at a clean stop, once no write lands.
    pub fn with_store(self, engine: &dyn Engine) -> SettledAt {
        SettledAt { store: StoreMark::of(engine), ..self }
    }
}

/// What a store held at a clean stop: its counts and the digest of every entry's hash and
/// version ([`dkv_storage::Digests::total`]). A store that opens holding anything else changed
/// while the node was stopped — a journal cut short, a file restored from a backup or deleted —
/// and may lack writes this node acknowledged: its record of a settled stop is not used (found
/// by cutting the journal of a stopped node, 2026-12-06).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreMark {
    pub keys: u64,
    pub tombstones: u64,
    pub digest: u64,
}

impl StoreMark {
    /// `None` for an engine that keeps no digests.
    fn of(engine: &dyn Engine) -> Option<StoreMark> {
        let stats = engine.stats();
        let digest = engine.digests()?.total();
        Some(StoreMark { keys: stats.keys, tombstones: stats.tombstones, digest })
    }
}

/// The record of a settled stop, if the store opened as it was at that stop. A record without
/// a mark (written with `--fsync always` as the node settled, or by a release before marks)
/// cannot be checked, and is used as before.
fn unless_store_changed(at: Option<SettledAt>, engine: &dyn Engine) -> Option<SettledAt> {
    let (at, then) = match at {
        Some(SettledAt { store: Some(then), .. }) => (at, then),
        at => return at,
    };
    let now = StoreMark::of(engine);
    if now == Some(then) {
        return at;
    }
    let now = now.unwrap_or(StoreMark { keys: 0, tombstones: 0, digest: 0 });
    tracing::warn!(
        keys_then = then.keys,
        keys_now = now.keys,
        tombstones_then = then.tombstones,
        tombstones_now = now.tombstones,
        "the store does not hold what it held at the node's last clean stop: one of its files changed while the node \
         was stopped (a journal cut short, a file restored or removed), and writes this node acknowledged may be \
         missing; its answers count as incomplete until its first anti-entropy round with every peer, which brings \
         back what the other replicas hold"
    );
    None
}

/// The record of a settled stop, unless opening the store cut written records off its journal:
/// a crash's torn last write, or damage in the middle of the file, after which every record is
/// gone (see [`dkv_storage::JournalCut`]). Said either way, as fjall says nothing.
fn unless_journal_cut(at: Option<SettledAt>, cut: &[JournalCut]) -> Option<SettledAt> {
    if cut.is_empty() {
        return at;
    }
    let cut: Vec<String> = cut.iter().map(ToString::to_string).collect();
    tracing::warn!(
        journals = ?cut,
        "opening the store dropped written bytes from its journal: either a write torn by a crash or a kill (a \
         value over 8 KiB goes out in several writes), which loses only that unfinished write, or damage in the \
         middle of the file (a disk error), after which every later record is gone, acknowledged writes too; the \
         bytes do not tell which, so this node's answers count as incomplete until its first anti-entropy round \
         with every peer, which brings back what the other replicas hold"
    );
    None
}

/// The data directory of a running node (absent for an in-memory node).
pub struct Local {
    dir: Arc<Mutex<DataDir>>,
    views: Arc<ViewSaver>,
    /// The saver thread, once started; joined when the `Local` goes.
    saver: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The bytes the hints files take on disk (see [`hint_file`]).
    hint_bytes: Mutex<u64>,
}

/// What start-up finds: the engine to serve from and what the node knew before it stopped.
pub struct Opened {
    pub engine: Arc<dyn Engine>,
    pub local: Option<Local>,
    pub identity: Option<Identity>,
    pub view: Option<View>,
    pub hints: Vec<SavedHint>,
    /// The node began to leave before it stopped (see [`Local::mark_leaving`]).
    pub leaving: bool,
    /// The view the node was settled under when it stopped cleanly (see the module doc).
    pub settled: Option<SettledAt>,
    /// When it was last a settled member (see `absence.rs`).
    pub service: Service,
}

/// Open the data directory and engine named by the config (or a memory engine without one).
pub fn open(config: &NodeConfig) -> Result<Opened, NodeError> {
    let Some(path) = &config.data_dir else {
        return Ok(Opened {
            engine: Arc::new(MemoryEngine::new()),
            local: None,
            identity: None,
            view: None,
            hints: Vec::new(),
            leaving: false,
            settled: None,
            service: Service::default(),
        });
    };
    let fatal = |e: String| NodeError::BadRequest(e);
    let mut dir = DataDir::open(path, &config.cluster_name).map_err(|e| fatal(e.to_string()))?;
    if dir.path().join(dkv_storage::SEED_RECORD).exists() {
        // Written into, it would be lost to the seed, which then refuses it as a node's.
        return Err(fatal(format!(
            "{} is a seed's data directory (it holds {}): give the node a directory of its own",
            path.display(),
            dkv_storage::SEED_RECORD
        )));
    }
    if dir.has_left() {
        // Restarted by an orchestrator (a StatefulSet, a restart policy) after `dkv leave`: coming
        // back as a new member would pull ranges only to be scaled away.
        if !config.rejoin {
            return Err(fatal(format!(
                "this node left the cluster (dkv leave): {} records it, and its keys were handed off; \
                 it does not start again by itself. Start it with --rejoin (DKV_REJOIN=true) to join \
                 as a new, empty node, or give it another --data-dir",
                path.join("dkv.json").display()
            )));
        }
        tracing::info!(dir = %path.display(), "this node left the cluster before; --rejoin: starting afresh as a new node");
        dir.rejoin_afresh().map_err(|e| fatal(e.to_string()))?;
    }
    let identity = dir.identity().map_err(|e| fatal(e.to_string()))?;
    let view = match dir.read(VIEW).map_err(|e| fatal(format!("reading {VIEW}: {e}")))? {
        Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            fatal(format!("{} is unreadable ({e}); move it away to start without it", dir.path().join(VIEW).display()))
        })?),
        None => None,
    };
    let (hints, hint_bytes) =
        hint_file::read(&dir, hint_file::read_bound(config.max_hint_bytes, config.max_hints)).map_err(fatal)?;
    let started = Instant::now();
    // What a drop of the store left, if the node stopped in the middle of it (`empty_store`).
    let aside = dropped_store(&dir.store_path());
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(|e| fatal(format!("removing {}: {e}", aside.display())))?;
    }
    // Taken (and removed) before the store opens: fjall cuts a damaged journal for good as it
    // opens, so a start killed after that and before the record went would find the journal
    // whole and the record still there (found by review, 2026-12-07).
    let settled = take_settled(&dir);
    let engine = DurableEngine::open(&dir.store_path()).map_err(|e| fatal(e.to_string()))?;
    let stats = engine.stats();
    tracing::info!(
        dir = %path.display(),
        keys = stats.keys,
        tombstones = stats.tombstones,
        took = ?started.elapsed(),
        id = ?identity.as_ref().map(|i| NodeId(i.id).to_string()),
        "opened the data directory"
    );
    let leaving = dir.is_leaving();
    let settled = unless_store_changed(unless_journal_cut(settled, engine.cut_at_open()), &engine);
    let service = read_service(&dir);
    let local = Some(Local::new(dir, hint_bytes));
    Ok(Opened { engine: Arc::new(engine), local, identity, view, hints, leaving, settled, service })
}

/// The record of service; none (never in service, as far as this node knows) when absent or
/// unreadable.
fn read_service(dir: &DataDir) -> Service {
    let read = dir.read(SERVICE).map_err(|e| e.to_string()).and_then(|bytes| match bytes {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        None => Ok(Service::default()),
    });
    read.unwrap_or_else(|e| {
        tracing::warn!("{SERVICE} is unreadable ({e}): this start does not know how long the node was away");
        Service::default()
    })
}

/// The record of a clean, settled stop, removed as it is read: only the start right after that
/// stop may use it. One unreadable, or that cannot be removed, is not used.
fn take_settled(dir: &DataDir) -> Option<SettledAt> {
    let bytes = match dir.read(SETTLED) {
        Ok(bytes) => bytes?,
        Err(e) => {
            tracing::warn!("reading {SETTLED}: {e}; this node waits for its first anti-entropy round");
            return None;
        }
    };
    if let Err(e) = dir.remove(SETTLED) {
        tracing::warn!("removing {SETTLED}: {e}; this node waits for its first anti-entropy round");
        return None;
    }
    serde_json::from_slice(&bytes)
        .inspect_err(|e| {
            tracing::warn!("{SETTLED} is unreadable ({e}); this node waits for its first anti-entropy round")
        })
        .ok()
}

/// Where a store being dropped goes first (see [`Local::empty_store`]).
fn dropped_store(store: &std::path::Path) -> std::path::PathBuf {
    store.with_file_name("store.dropped")
}

fn lock_dir(dir: &Mutex<DataDir>) -> std::sync::MutexGuard<'_, DataDir> {
    dir.lock().unwrap_or_else(|e| e.into_inner())
}

impl Local {
    fn new(dir: DataDir, hint_bytes: u64) -> Local {
        let (views, saver, hint_bytes) = (Arc::default(), Mutex::default(), Mutex::new(hint_bytes));
        Local { dir: Arc::new(Mutex::new(dir)), views, saver, hint_bytes }
    }

    fn dir(&self) -> std::sync::MutexGuard<'_, DataDir> {
        lock_dir(&self.dir)
    }

    /// Record the id and tokens the seed confirmed, if they differ from what is stored.
    pub fn save_identity(&self, id: NodeId, tokens: &[u64]) -> Result<(), NodeError> {
        let mut dir = self.dir();
        let identity = Identity { id: id.0, tokens: tokens.to_vec() };
        if dir.identity().ok().flatten().as_ref() == Some(&identity) {
            return Ok(());
        }
        dir.set_identity(Some(&identity))
            .map_err(|e| NodeError::Internal(format!("saving the node identity in {}: {e}", dir.path().display())))
    }

    /// Have `view` saved, by the saver thread: returns at once. Of views asked for faster than
    /// they are written, only the last is.
    pub fn save_view(&self, view: &View) {
        let start = {
            let mut p = self.views.lock();
            if p.left {
                return;
            }
            p.view = Some(view.clone());
            !std::mem::replace(&mut p.started, true)
        };
        if start {
            let (views, dir) = (self.views.clone(), self.dir.clone());
            match std::thread::Builder::new().name("dkv-view-saver".into()).spawn(move || views.run(&dir)) {
                Ok(handle) => *self.saver.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
                Err(e) => {
                    tracing::error!("starting the view saver: {e}; saving the view here");
                    self.views.lock().started = false;
                    self.views.save_pending(&self.dir);
                }
            }
        }
        self.views.wake.notify_all();
    }

    /// Block until every view asked for is on disk (for shutdown and tests).
    pub fn flush_views(&self) {
        let mut p = self.views.lock();
        while p.started && (p.view.is_some() || p.saving) {
            p = self.views.wake.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Record that this node is settled under `at` with every write it acknowledged on disk: at
    /// a clean stop once its store is synced, or with `--fsync always` when it settles.
    pub fn save_settled(&self, at: SettledAt) {
        let dir = self.dir();
        let bytes = serde_json::to_vec(&at).expect("integers encode");
        if let Err(e) = dir.write(SETTLED, &bytes) {
            tracing::warn!(
                "saving {SETTLED} in {}: {e}; the next start waits for its first round",
                dir.path().display()
            );
        }
    }

    /// Replace the store `engine` (the last reference to it) with an empty one (see
    /// `absence.rs`): the old one is closed, its directory renamed and removed, and a new one
    /// opened, in the time file removal takes, where removing each key took about 7 µs. A node
    /// stopped in the middle finds the renamed directory at its next start, and removes it.
    ///
    /// `Err(engine)`, given back, when something else still holds it; `Ok(Err(why))` when the
    /// new store could not be made, after the old one was closed.
    #[allow(clippy::type_complexity)]
    pub fn empty_store(&self, engine: Arc<dyn Engine>) -> Result<Result<Arc<dyn Engine>, String>, Arc<dyn Engine>> {
        if Arc::strong_count(&engine) != 1 || Arc::weak_count(&engine) != 0 {
            return Err(engine);
        }
        drop(engine); // closes it: fjall's workers stop (on Linux a file still open is renamed and removed all the same)
        let path = self.dir().store_path();
        let aside = dropped_store(&path);
        let emptied = (|| {
            std::fs::rename(&path, &aside).map_err(|e| format!("renaming {} aside: {e}", path.display()))?;
            std::fs::remove_dir_all(&aside).map_err(|e| format!("removing {}: {e}", aside.display()))?;
            let engine: Arc<dyn Engine> = Arc::new(DurableEngine::open(&path).map_err(|e| e.to_string())?);
            Ok(engine)
        })();
        Ok(emptied)
    }

    /// Record `service` (see `absence.rs`): a small write and a rename.
    pub fn save_service(&self, service: &Service) {
        let dir = self.dir();
        let bytes = serde_json::to_vec(service).expect("integers encode");
        if let Err(e) = dir.write(SERVICE, &bytes) {
            static FAILED: dkv_transport::Throttle = dkv_transport::Throttle::new();
            if let Some(more) = FAILED.allow("service") {
                tracing::warn!("saving {SERVICE} in {}: {e}{more}", dir.path().display());
            }
        }
    }

    /// What saving `hints` now would write (see [`Save`]); counted as saved once asked. Cheap:
    /// the saver asks after hints changed, and writes only when there is something.
    pub fn hints_to_save(&self, hints: &Hints) -> Save {
        hints.to_save(*self.hint_bytes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Write `save`, from [`Local::hints_to_save`]. Blocking. If it fails (false), the next save
    /// writes every pending hint.
    pub fn write_hints(&self, save: &Save, hints: &Hints) -> bool {
        let mut on_disk = self.hint_bytes.lock().unwrap_or_else(|e| e.into_inner());
        let dir = self.dir();
        match hint_file::write(&dir, save, &mut on_disk) {
            Ok(()) => true,
            Err(e) => {
                hints.save_whole();
                tracing::warn!(
                    "saving pending hints in {}: {e}; tried again whole in a heartbeat interval",
                    dir.path().display()
                );
                false
            }
        }
    }

    /// Save what is new of `hints` now (at shutdown). Blocking.
    pub fn save_hints(&self, hints: &Hints) {
        let save = self.hints_to_save(hints);
        let _ = self.write_hints(&save, hints);
    }

    /// The node begins to leave: recorded before the seed hears of it, in the directory's own
    /// file and at once, so that a node stopped a moment later registers as `leaving` when it
    /// starts again. (The view that says so is saved a moment later, by the saver thread: a node
    /// killed in between came back as a member, its accepted leave dropped without a word.)
    /// A leave that cannot be recorded does not begin: a node stopped during it, or after it,
    /// would come back as a member with its old store (until 2026-12-06 it went on with a
    /// warning, found by trying with a data directory made immutable).
    pub fn mark_leaving(&self) -> Result<(), String> {
        let mut dir = self.dir();
        dir.set_leaving(true).map_err(|e| format!("recording the start of the leave in {}: {e}", dir.path().display()))
    }

    /// The node took its leave back (`replication/movement.rs`): a start from here is a member's.
    pub fn unmark_leaving(&self) {
        let mut dir = self.dir();
        if let Err(e) = dir.set_leaving(false) {
            tracing::warn!(
                "recording in {} that the leave was taken back: {e}; a restart would begin the leave again",
                dir.path().display()
            );
        }
    }

    /// The node left for good: forget its identity; its data goes at the next start. An error
    /// says that the directory still names the node (the caller makes the process fail with it).
    pub fn mark_left(&self) -> Result<(), String> {
        // No view is saved after this (the saver checks under the directory lock taken below).
        {
            let mut p = self.views.lock();
            p.left = true;
            p.view = None;
        }
        self.views.wake.notify_all();
        let mut dir = self.dir();
        let _ = dir.remove(VIEW);
        let _ = dir.remove(hint_file::FILE);
        let _ = dir.remove(hint_file::OLD_FILE);
        let _ = dir.remove(SETTLED);
        dir.mark_left().map_err(|e| {
            format!(
                "the leave ended, but recording it in {} failed: {e}; that directory still names this node, so do \
                 not start a node on it again as it is: remove it, or start with --rejoin to join as a new, empty node",
                dir.path().display()
            )
        })
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // The saver writes what is pending, then ends.
        self.views.lock().closing = true;
        self.views.wake.notify_all();
        if let Some(saver) = self.saver.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = saver.join();
        }
    }
}

/// The view waiting to be saved, and the thread that saves it.
#[derive(Default)]
struct ViewSaver {
    pending: Mutex<PendingView>,
    /// Wakes the saver (a view is pending, or it should stop) and [`Local::flush_views`].
    wake: Condvar,
}

#[derive(Default)]
struct PendingView {
    view: Option<View>,
    /// A view is being written.
    saving: bool,
    started: bool,
    /// The node left: no view is saved any more.
    left: bool,
    /// The [`Local`] is gone: save what is pending and stop.
    closing: bool,
}

impl ViewSaver {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingView> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, dir: &Mutex<DataDir>) {
        loop {
            {
                let mut p = self.lock();
                while p.view.is_none() && !p.closing {
                    p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                if p.view.is_none() {
                    return;
                }
            }
            self.save_pending(dir);
        }
    }

    /// Write the pending view, if any (and the node has not left).
    fn save_pending(&self, dir: &Mutex<DataDir>) {
        let dir = lock_dir(dir);
        let view = {
            let mut p = self.lock();
            let view = p.view.take().filter(|_| !p.left);
            p.saving = view.is_some();
            view
        };
        if let Some(view) = view {
            let bytes = serde_json::to_vec(&view).expect("views serialize");
            if let Err(e) = dir.write(VIEW, &bytes) {
                tracing::warn!("saving the membership view in {}: {e}", dir.path().display());
            }
            self.lock().saving = false;
        }
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use dkv_membership::Member;

    use super::*;

    fn temp_local(name: &str) -> (Local, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("dkv-local-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        (Local::new(DataDir::open(&path, "dkv").unwrap(), 0), path)
    }

    #[test]
    fn a_store_is_emptied_at_once_and_what_a_stop_left_aside_is_removed_at_the_next_open() {
        let (local, path) = temp_local("empty");
        let engine: Arc<dyn Engine> = Arc::new(DurableEngine::open(&local.dir().store_path()).unwrap());
        for i in 0..1000u64 {
            let entry = dkv_storage::Entry::value(dkv_storage::Version { ts: i + 1, node: 1 }, "v".into());
            engine.apply(i, format!("k{i}").as_bytes(), entry).unwrap();
        }
        let held = engine.clone();
        let Err(engine) = local.empty_store(engine) else { panic!("held elsewhere: it is given back") };
        drop(held);
        let Ok(Ok(engine)) = local.empty_store(engine) else { panic!("the last reference: emptied") };
        assert_eq!(engine.stats().keys, 0);
        assert!(!path.join("store.dropped").exists());
        drop(engine);
        // A stop between the rename and the removal.
        std::fs::create_dir_all(path.join("store.dropped/keyspaces")).unwrap();
        drop(local);
        let config = NodeConfig { data_dir: Some(path.clone()), ..NodeConfig::default() };
        let opened = open(&config).unwrap();
        assert!(!path.join("store.dropped").exists());
        assert_eq!(opened.engine.stats().keys, 0);
        drop(opened);
        let _ = std::fs::remove_dir_all(&path);
    }

    fn view(epoch: u64) -> View {
        let m = Member {
            id: NodeId(1),
            addr: "127.0.0.1:1".into(),
            tokens: vec![1].into(),
            state: dkv_membership::NodeState::Normal,
            last_seen_ms: 0,
        };
        View { epoch, nodes: vec![m] }
    }

    fn saved(path: &std::path::Path) -> Option<u64> {
        let bytes = std::fs::read(path.join(VIEW)).ok()?;
        Some(serde_json::from_slice::<View>(&bytes).unwrap().epoch)
    }

    /// A seed's directory is refused: written into, the seed would refuse it afterwards as a
    /// node's, and its record of the membership would be lost.
    #[test]
    fn a_seeds_data_directory_is_refused() {
        let path = std::env::temp_dir().join(format!("dkv-local-seeds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        drop(DataDir::open(&path, "dkv").unwrap());
        std::fs::write(path.join(dkv_storage::SEED_RECORD), b"{}").unwrap();
        let config = NodeConfig { data_dir: Some(path.clone()), ..NodeConfig::default() };
        let err = open(&config).err().expect("refused");
        assert!(err.to_string().contains("a seed's data directory"), "{err}");
        std::fs::remove_dir_all(&path).unwrap();
    }

    /// The record of a clean, settled stop is read once: the start after it removes it, so a
    /// crash after that start finds none. One that does not parse is not used.
    #[test]
    fn the_record_of_a_settled_stop_is_read_once() {
        let (local, path) = temp_local("settled");
        let at = SettledAt { epoch: 7, digest: 0xfeed, store: None };
        local.save_settled(at);
        assert_eq!(take_settled(&local.dir()), Some(at));
        assert_eq!(take_settled(&local.dir()), None, "removed as it was read");
        local.dir().write(SETTLED, b"{\"epoch\": 7").unwrap();
        assert_eq!(take_settled(&local.dir()), None, "unreadable: not used");
        assert!(!path.join(SETTLED).exists(), "and removed");
        drop(local);
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn views_are_saved_by_the_saver_and_the_last_one_wins() {
        let (local, path) = temp_local("views");
        for epoch in 1..=200 {
            local.save_view(&view(epoch));
        }
        local.flush_views();
        assert_eq!(saved(&path), Some(200));
        local.mark_left().unwrap();
        local.save_view(&view(201));
        local.flush_views();
        assert_eq!(saved(&path), None, "no view is saved once the node left");
        drop(local);
        std::fs::remove_dir_all(&path).unwrap();
    }
}
