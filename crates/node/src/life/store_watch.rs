//! A store that takes no more writes stops the node.
//!
//! fjall refuses every write after one it could not finish (a full disk, a data directory it
//! may no longer write: it calls itself "poisoned"), until it is opened again, and asks the
//! application to crash and recover. Until 2026-12-06 the node went on: every write failed with
//! `500 … Poisoned`, even after the disk had room again, while `/health` answered 200, so no
//! orchestrator took the node out or started it again (found by trying). Now `/health` answers
//! `503` from the failure on, and the node stops within a second ([`Stop::StoreFailed`], exit
//! code 1, the first failure in its last line). It stays a member: started again, it opens
//! its store from the journal, and its replicas held the writes meanwhile (hints and
//! anti-entropy bring them back), as after any crash.

use std::time::Duration;

use tokio::sync::watch;

use crate::life::state::{Node, Stop};

/// How often the store is asked.
const EVERY: Duration = Duration::from_secs(1);

/// Until `stop`: ask the store whether it failed, and stop the node once it has.
pub async fn store_watch_loop(node: Node, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(EVERY.min(node.config.heartbeat_interval)) => {}
        }
        if let Some(why) = node.engine.failed() {
            tracing::error!("{why}: stopping, to be started again once the data directory takes writes");
            node.request_stop(Stop::StoreFailed);
            return;
        }
    }
}
