//! Views from peers, while the seed does not answer.
//!
//! Views are made by the seed alone, and nodes learn them from it: by their heartbeats, and at
//! once when a peer's notice or a refused call shows a newer epoch. With the seed down that
//! fetch fails, and a node that missed the seed's last change before it went stayed behind the
//! others until it came back. A leave begun a moment before the seed was killed split four
//! nodes two and two on epochs 9 and 10: each refused the other's calls as stale, and a fifth
//! to a third of all requests failed for the whole outage (found by a hunt, 2026-12-07).
//!
//! So when the seed cannot be reached for a refresh (no answer: one that answers with an error is
//! the seed's word), the node asks its peers for their view, each answering only if theirs is
//! newer than the asker's ([`Kind::View`]), and takes the first newer one that lists it, as it
//! would the seed's: views come from the seed, passed on (a leaving node marks itself leaving in
//! its own copy a moment before the seed shows it). It asks at most once a heartbeat interval,
//! waits a second at most, and the answers of peers that are not ahead are a few bytes.
//!
//! Epochs are compared as the seed's: a seed restarted without its record counts them again
//! from below, and until every node has registered with it again, a node of its new views that
//! asks while the seed is out of reach may take an older view of the old seed's from a peer
//! that has not. The next heartbeat that reaches the seed puts it right (the seed is then behind
//! it, and it registers again).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dkv_membership::registry::validate_view;
use dkv_membership::{compact, View};
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::life::state::Node;
use crate::life::stats::bump;
use crate::transport::seed::VERSION;
use crate::transport::wire::{Kind, ViewRequest};

/// When this node last asked its peers for their views.
#[derive(Default)]
pub struct PeerViews {
    asked: Mutex<Option<Instant>>,
}

impl Node {
    /// The seed could not be reached for a refresh: take a newer view a peer holds, the first
    /// that comes. Only a view that lists this node: a node the seed expired, cut off from it,
    /// must learn that from the seed itself, as the rest of its life expects (it comes back
    /// `joining`, with its tokens, its store checked for staleness); a view without it would have
    /// it hand off and drop its whole store.
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
        // Short: a refresh waits on this, and so may requests; a peer that is paused or cut off
        // as well must not hold them the whole request timeout.
        let within = self.peers.timeout().min(ASK_WITHIN);
        let mut asks: FuturesUnordered<_> = topo
            .view
            .nodes
            .iter()
            .filter(|m| m.id != self.me)
            .map(|m| async move {
                let answer = self.peers.call_raw_within(&m.addr, Kind::View, &ViewRequest { epoch }, within).await;
                (m.addr.as_str(), answer)
            })
            .collect();
        while let Some((addr, answer)) = asks.next().await {
            let view = match answer {
                Ok(bytes) if bytes.is_empty() => continue, // not newer than ours
                Ok(bytes) => compact::decode::<View>(&bytes, VERSION).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let view = view.and_then(|v| validate_view(&v).map(|()| v).map_err(|e| e.to_string()));
            match view {
                Ok(view) if view.member(self.me).is_none() => {
                    bump(&self.stats.peer_views_not_listing);
                    tracing::debug!(
                        epoch = view.epoch,
                        "{addr}'s view does not list this node: left for the seed to say"
                    );
                }
                Ok(view) => {
                    let theirs = view.epoch;
                    self.adopt(view); // whether placement changed, which does not matter here
                    if self.epoch() >= theirs {
                        bump(&self.stats.peer_views_taken);
                        tracing::info!(
                            epoch = theirs,
                            "the seed could not be reached; took the newer view {addr} holds"
                        );
                    }
                    return;
                }
                Err(e) => tracing::debug!("asking {addr} for its view: {e}"),
            }
        }
    }
}

/// Longest a peer is waited for when asked for its view.
const ASK_WITHIN: Duration = Duration::from_secs(1);

/// The answer to [`Kind::View`]: this node's view in the seed's compact encoding if it is newer
/// than the asker's `epoch`, else nothing.
pub fn view_if_newer(node: &Node, req: ViewRequest) -> Vec<u8> {
    let topo = node.topology();
    match topo.epoch() > req.epoch {
        true => compact::encode(&topo.view, VERSION),
        false => Vec::new(),
    }
}
