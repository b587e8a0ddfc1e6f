//! Node-to-node endpoints (`/internal/*`) and the admin endpoints (`/admin/*`).
//!
//! Bodies are postcard messages (see `wire`). A request from a node with an older membership epoch
//! is refused with 409 so the sender re-plans with the current view; a request from a node with a
//! newer epoch first makes this node refresh its view.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dkv_membership::NodeId;
use serde::de::DeserializeOwned;

use crate::life::state::{Life, Node, Stop};
use crate::life::stats::add;
use crate::replication::antientropy;
use crate::transport::wire::{
    self, ApplyKind, ApplyRequest, KeyEntry, RangeRequest, ReadRequest, ReadResponse, RefreshRequest, SyncBucket,
    SyncDiff, SyncSummary,
};

/// Entries per frame of a range stream.
const RANGE_BATCH: usize = 512;

// A ready error response is what a handler's `?` needs; its size does not matter here.
#[allow(clippy::result_large_err)]
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    wire::decode(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response())
}

/// Bring our view up to the sender's epoch, or refuse a sender that is behind ours.
async fn check_epoch(node: &Node, epoch: u64) -> Result<(), Response> {
    node.refresh_to(epoch).await;
    let mine = node.topology().epoch();
    if epoch < mine {
        let status = StatusCode::from_u16(wire::STATUS_STALE_EPOCH).expect("valid status");
        return Err(
            (status, format!("stale epoch {epoch}: this node is at epoch {mine}; refresh and retry\n")).into_response()
        );
    }
    Ok(())
}

fn node_error(e: crate::error::NodeError) -> Response {
    e.into_response()
}

/// Handlers answer `Err` with a ready error response, so checks chain with `?`.
type Answer = Result<Response, Response>;

pub async fn apply(State(node): State<Node>, body: Bytes) -> Answer {
    let req: ApplyRequest = decode(&body)?;
    check_epoch(&node, req.epoch).await?;
    let _writes = node.fence.read().await;
    if matches!(req.kind, ApplyKind::Handoff | ApplyKind::Hint) && matches!(node.life(), Life::Leaving | Life::Left) {
        let status = StatusCode::from_u16(wire::STATUS_LEAVING).expect("valid status");
        return Err(
            (status, "this node is leaving and takes no hand-offs; send to the remaining members\n").into_response()
        );
    }
    let n = req.entries.len() as u64;
    node.apply_local(req.entries).await.map_err(node_error)?;
    if req.kind == ApplyKind::Handoff {
        add(&node.stats.moved_in, n);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn read(State(node): State<Node>, body: Bytes) -> Answer {
    let req: ReadRequest = decode(&body)?;
    check_epoch(&node, req.epoch).await?;
    let entry = node.engine.get(dkv_placement::key_hash(&req.key), &req.key).map_err(|e| node_error(e.into()))?;
    Ok(wire::encode(&ReadResponse { entry }).into_response())
}

/// Stream every entry whose future replicas include the requesting (joining) node.
pub async fn range(State(node): State<Node>, body: Bytes) -> Answer {
    let req: RangeRequest = decode(&body)?;
    node.refresh_to(req.epoch).await;
    // Writes planned before we knew of the newcomer did not go to it; let them land first so the
    // scan below sees them.
    node.drain_writes().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let for_node = NodeId(req.for_node);
    tokio::spawn(async move {
        let mut cursor = None;
        let mut page = Vec::with_capacity(RANGE_BATCH);
        loop {
            page.clear();
            cursor = match node.engine.scan(cursor.as_ref(), u64::MAX, RANGE_BATCH, &mut page) {
                Ok(c) => c,
                Err(e) => {
                    // Dropping the sender ends the stream mid-frame: the puller sees it broken.
                    tracing::error!("streaming a range failed: {e}");
                    return;
                }
            };
            let topo = node.topology();
            let batch: Vec<KeyEntry> = page
                .drain(..)
                .filter(|(hash, _, _)| topo.is_future_replica(for_node, *hash))
                .map(|(_, key, entry)| KeyEntry { key, entry })
                .collect();
            if !batch.is_empty() && tx.send(wire::encode_frame(&batch)).await.is_err() {
                return; // the puller went away; it will retry
            }
            if cursor.is_none() {
                return;
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Ok(Body::from_stream(stream).into_response())
}

/// Anti-entropy step 1: which buckets differ between the sender's digests and ours.
pub async fn sync_summary(State(node): State<Node>, body: Bytes) -> Answer {
    let req: SyncSummary = decode(&body)?;
    check_epoch(&node, req.epoch).await?;
    if req.digests.len() != antientropy::BUCKETS {
        return Err((StatusCode::BAD_REQUEST, "summary with the wrong number of buckets\n").into_response());
    }
    let topo = node.topology();
    let mine = tokio::task::block_in_place(|| antientropy::summarize_for(&node, &topo, NodeId(req.from)));
    let buckets = (0..antientropy::BUCKETS as u32).filter(|&b| mine[b as usize] != req.digests[b as usize]).collect();
    Ok(wire::encode(&SyncDiff { buckets }).into_response())
}

/// Anti-entropy step 2: take the sender's entries of a bucket, answer with ours it lacks.
pub async fn sync_bucket(State(node): State<Node>, body: Bytes) -> Answer {
    let req: SyncBucket = decode(&body)?;
    check_epoch(&node, req.epoch).await?;
    if req.bucket as usize >= antientropy::BUCKETS {
        return Err((StatusCode::BAD_REQUEST, "no such bucket\n").into_response());
    }
    let _writes = node.fence.read().await;
    let topo = node.topology();
    let reply = antientropy::answer_bucket(&node, &topo, req).await.map_err(node_error)?;
    Ok(wire::encode(&reply).into_response())
}

pub async fn refresh(State(node): State<Node>, body: Bytes) -> Answer {
    let req: RefreshRequest = decode(&body)?;
    tokio::spawn(async move { node.refresh_to(req.epoch).await });
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /admin/stop`: exit without handing data off (the whole cluster is stopping).
pub async fn admin_stop(State(node): State<Node>) -> Response {
    node.request_stop(Stop::Now);
    (StatusCode::ACCEPTED, "stopping\n").into_response()
}

/// `POST /admin/leave`: hand every key to the remaining members, then exit.
pub async fn admin_leave(State(node): State<Node>) -> Response {
    node.request_stop(Stop::Leave);
    (StatusCode::ACCEPTED, "leaving: handing keys to the remaining members, then exiting\n").into_response()
}
