//! Views from peers, while the seed does not answer.
//!
//! Views are made by the seed alone, and nodes learn them from it: by their heartbeats, and at
//! once when a peer's notice or a refused call shows a newer epoch. With the seed down that
//! fetch fails, and a node that missed the seed's last change before it went stayed behind the
//! others until it came back. A leave begun a moment before the seed was killed split four
//! nodes two and two on epochs 9 and 10: each refused the other's calls as stale, and a fifth
//! to a third of all requests failed for the whole outage (found by a hunt, 2026-12-07).
//!
//! So when the seed does not answer a refresh, the node asks its peers for their view, each
//! answering only if theirs is newer than the asker's ([`Kind::View`]), and takes the newest as
//! it would the seed's: a peer's view is one the seed made, passed on. It asks at most once a
//! heartbeat interval, and the answers of peers that are not ahead are a few bytes.

use std::sync::Mutex;
use std::time::Instant;

use dkv_membership::compact;
use dkv_membership::View;

use crate::life::state::Node;
use crate::transport::seed::VERSION;
use crate::transport::wire::{Kind, ViewRequest};

/// When this node last asked its peers for their views.
#[derive(Default)]
pub struct PeerViews {
    asked: Mutex<Option<Instant>>,
}

impl Node {
    /// The seed did not answer a refresh: take the newest view a peer holds, if newer than ours.
    pub(crate) async fn views_from_peers(&self) {
        {
            let mut asked = self.peer_views.asked.lock().expect("peer views lock");
            if asked.is_some_and(|at| at.elapsed() < self.config.heartbeat_interval) {
                return;
            }
            *asked = Some(Instant::now());
        }
        let topo = self.topology();
        let epoch = topo.epoch();
        let asks = topo.view.nodes.iter().filter(|m| m.id != self.me).map(|m| async move {
            let answer = self.peers.call_raw(&m.addr, Kind::View, &ViewRequest { epoch }).await;
            match answer.map(|bytes| (!bytes.is_empty()).then(|| compact::decode::<View>(&bytes, VERSION))) {
                Ok(Some(Ok(view))) => Some(view),
                Ok(None) => None,
                Ok(Some(Err(e))) => {
                    tracing::debug!("{}'s view could not be read: {e}", m.addr);
                    None
                }
                Err(e) => {
                    tracing::debug!("asking {} for its view: {e}", m.addr);
                    None
                }
            }
        });
        let views = futures_util::future::join_all(asks).await;
        let Some(newest) = views.into_iter().flatten().max_by_key(|v| v.epoch) else { return };
        let theirs = newest.epoch;
        self.adopt(newest);
        if self.epoch() >= theirs {
            tracing::info!(epoch = theirs, "the seed did not answer; took the newer view a peer holds");
        }
    }
}

/// The answer to [`Kind::View`]: this node's view in the seed's compact encoding if it is newer
/// than the asker's `epoch`, else nothing.
pub fn view_if_newer(node: &Node, req: ViewRequest) -> Vec<u8> {
    let topo = node.topology();
    match topo.epoch() > req.epoch {
        true => compact::encode(&topo.view, VERSION),
        false => Vec::new(),
    }
}
