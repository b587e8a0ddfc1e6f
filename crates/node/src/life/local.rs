//! What a node keeps in its data directory besides the keys: its identity (in `dkv.json`), the
//! last membership view it adopted (`view.json`) and its pending hints (`hints.bin`).
//!
//! With these a restarted node registers as itself — same id, same tokens, same place on the
//! ring, so nothing moves — and, if the seed restarted too, hands it the view to rebuild the
//! membership from. Hints are written every heartbeat interval while they change and at shutdown;
//! a crash loses at most the hints of the last interval, and anti-entropy repairs what those
//! would have carried.
//!
//! Anti-entropy keeps no state of its own to save: its digests are recomputed from the store,
//! and a restarted node runs a round as soon as it is serving.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use dkv_membership::{NodeId, View};
use dkv_storage::{DataDir, DurableEngine, Engine, Identity, MemoryEngine};

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::replication::hints::SavedHint;
use crate::transport::wire::{self};

const VIEW: &str = "view.json";
const HINTS: &str = "hints.bin";

/// The data directory of a running node (absent for an in-memory node).
pub struct Local {
    dir: Mutex<DataDir>,
}

/// What start-up finds: the engine to serve from and what the node knew before it stopped.
pub struct Opened {
    pub engine: Arc<dyn Engine>,
    pub local: Option<Local>,
    pub identity: Option<Identity>,
    pub view: Option<View>,
    pub hints: Vec<SavedHint>,
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
        });
    };
    let fatal = |e: String| NodeError::BadRequest(e);
    let dir = DataDir::open(path, &config.cluster_name).map_err(|e| fatal(e.to_string()))?;
    let identity = dir.identity().map_err(|e| fatal(e.to_string()))?;
    let view = match dir.read(VIEW).map_err(|e| fatal(format!("reading {VIEW}: {e}")))? {
        Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            fatal(format!("{} is unreadable ({e}); move it away to start without it", dir.path().join(VIEW).display()))
        })?),
        None => None,
    };
    let hints = match dir.read(HINTS).map_err(|e| fatal(format!("reading {HINTS}: {e}")))? {
        Some(bytes) => wire::decode(&bytes).map_err(|e| {
            fatal(format!(
                "{} is unreadable ({e}); move it away to start without it (anti-entropy repairs what the hints carried)",
                dir.path().join(HINTS).display()
            ))
        })?,
        None => Vec::new(),
    };
    let started = Instant::now();
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
    Ok(Opened { engine: Arc::new(engine), local: Some(Local { dir: Mutex::new(dir) }), identity, view, hints })
}

impl Local {
    fn dir(&self) -> std::sync::MutexGuard<'_, DataDir> {
        self.dir.lock().unwrap_or_else(|e| e.into_inner())
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

    pub fn save_view(&self, view: &View) {
        let bytes = serde_json::to_vec(view).expect("views serialize");
        let dir = self.dir();
        if let Err(e) = dir.write(VIEW, &bytes) {
            tracing::warn!("saving the membership view in {}: {e}", dir.path().display());
        }
    }

    pub fn save_hints(&self, hints: &[SavedHint]) {
        let dir = self.dir();
        let result = if hints.is_empty() { dir.remove(HINTS) } else { dir.write(HINTS, &wire::encode(&hints)) };
        if let Err(e) = result {
            tracing::warn!("saving {} pending hints in {}: {e}", hints.len(), dir.path().display());
        }
    }

    /// The node left for good: forget its identity; its data goes at the next start.
    pub fn mark_left(&self) {
        let mut dir = self.dir();
        let _ = dir.remove(VIEW);
        let _ = dir.remove(HINTS);
        if let Err(e) = dir.mark_left() {
            tracing::warn!("recording the leave in {}: {e}", dir.path().display());
        }
    }
}
