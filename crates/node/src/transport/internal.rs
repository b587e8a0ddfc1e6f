//! The answering side of node-to-node messages (see `wire` for what each one means).
//!
//! [`Internal`] is the transport's handler: it decodes a request by its kind, checks the sender's
//! membership epoch, runs it and encodes the answer. A request from a node with an older epoch is
//! refused with [`wire::STATUS_STALE_EPOCH`] so the sender re-plans with the current view; one
//! from a node with a newer epoch first makes this node refresh its view. Admin endpoints stay on
//! HTTP (`front/http.rs`).

use bytes::Bytes;
use dkv_membership::NodeId;
use dkv_storage::Entry;
use dkv_transport::{Handler, Refusal};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::NodeError;
use crate::life::state::{Life, Node};
use crate::life::stats::add;
use crate::replication::batch::prefetching;
use crate::replication::shape::Shape;
use crate::replication::{antientropy, pages};
use crate::transport::wire::{
    self, ApplyKind, ApplyReply, ApplyRequest, ClockReply, ForwardRequest, Head, Kind, RangePage, RangeRequest,
    ReadRequest, ReadResponse, ReadsReply, ReadsRequest, RefreshRequest, SyncBucket, SyncSummary, WritesReply,
    WritesRequest,
};

/// Most entries one range request looks at, so a page over a range this node mostly does not
/// share still answers promptly (with few entries and a cursor).
const SCAN_PER_PAGE: usize = 32 * 1024;

pub struct Internal(pub Node);

type Answer = Result<Vec<u8>, Refusal>;

impl Handler for Internal {
    async fn handle(&self, kind: u8, body: Bytes) -> Answer {
        let node = &self.0;
        node.busy_poll.noticed();
        // Every request runs as a task holding this future, so its size is paid (allocated and
        // moved) per request: the hot kinds run inline, the others are boxed. A forward holds
        // a whole coordination.
        match Kind::from_u8(kind) {
            Some(Kind::Apply) => apply(node, decode(&body)?).await,
            Some(Kind::Writes) => writes(node, WritesRequest::decode_shared(&body).map_err(undecodable)?).await,
            Some(Kind::Read) => read(node, decode(&body)?).await,
            Some(Kind::Reads) => reads::<Entry>(node, decode(&body)?).await,
            Some(Kind::Heads) => reads::<Head>(node, decode(&body)?).await,
            Some(Kind::Forward) => Box::pin(forward::<Entry>(node, decode(&body)?)).await,
            Some(Kind::ForwardHead) => Box::pin(forward::<Head>(node, decode(&body)?)).await,
            Some(Kind::Range) => {
                let (node, req) = (node.clone(), decode(&body)?);
                own_task(async move { range(&node, req).await }).await
            }
            Some(Kind::SyncSummary) => {
                let (node, req) = (node.clone(), decode(&body)?);
                own_task(async move { sync_summary(&node, req, None, false).await }).await
            }
            Some(Kind::SyncSummaryTracked) => {
                let (node, req) = (node.clone(), decode(&body)?);
                own_task(async move { sync_summary(&node, req, None, true).await }).await
            }
            Some(Kind::SyncSummarySettled) => {
                let (node, req): (_, wire::SyncSummarySettled) = (node.clone(), decode(&body)?);
                own_task(async move { sync_summary(&node, req.summary, Some(req.horizon), false).await }).await
            }
            Some(Kind::SyncBucket) => Box::pin(sync_bucket(node, decode(&body)?)).await,
            Some(Kind::SyncVersions) => {
                let (node, req) = (node.clone(), decode(&body)?);
                own_task(async move { sync_versions(&node, req).await }).await
            }
            Some(Kind::Refresh) => refresh(node, decode(&body)?),
            Some(Kind::Clock) => encode(&ClockReply { now_ms: node.hlc.wall_ms() }),
            Some(Kind::Lease) => encode(&wire::LeaseReply {
                epoch: node.epoch(),
                unheard_ms: node.lease.unheard(std::time::Instant::now()).map(|d| d.as_millis() as u64),
            }),
            Some(Kind::KeepHints) => keep_hints(node, decode(&body)?),
            Some(Kind::Settings) => encode(&crate::life::membership::settings(&node.config)),
            Some(Kind::View) => Ok(crate::life::peer_views::view_if_newer(node, decode(&body)?)),
            Some(Kind::Scan) => {
                let (node, req) = (node.clone(), decode(&body)?);
                own_task(async move { scan(&node, req).await }).await
            }
            None => Err(Refusal::new(400, format!("unknown message kind {kind}: is the peer of another release?"))),
        }
    }
}

/// A request that only reads a walk of the store (a range's page, an anti-entropy summary or
/// versions, a scan's page) runs as a task of its own: the requests of one connection run inside
/// its task, and a walk there (on the thread `block_in_place` gives it) held every other request
/// of the connection meanwhile, a replica's reads behind a scan's page 24–67 ms instead of 1
/// (found by a hunt, 2026-12-08). The task is aborted when the request is dropped (its
/// connection ended, or its time ran out), so what it holds stays within the connection's
/// bounds. Requests that write (an apply, an anti-entropy bucket) stay in the connection's task:
/// shutdown waits for those.
///
/// Not an `async fn`: its future holds only the task's handle, not the request's own state,
/// since [`Internal::handle`]'s future (whose size every request pays) holds this one.
fn own_task(
    request: impl std::future::Future<Output = Answer> + Send + 'static,
) -> impl std::future::Future<Output = Answer> + Send {
    struct AbortOnDrop(tokio::task::JoinHandle<Answer>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(request));
    async move {
        match (&mut task.0).await {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Refusal::new(500, format!("the request's task ended: {e}"))),
        }
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    postcard::from_bytes(body).map_err(undecodable)
}

fn undecodable(e: postcard::Error) -> Refusal {
    Refusal::new(400, format!("undecodable internal message: {e}"))
}

fn encode<T: Serialize>(msg: &T) -> Answer {
    postcard::to_allocvec(msg).map_err(|e| Refusal::new(500, format!("encoding the answer: {e}")))
}

fn refused(e: NodeError) -> Refusal {
    Refusal::new(e.status().as_u16(), e.to_string())
}

/// Bring our view up to the sender's epoch, or refuse a sender that is behind ours. Whether our
/// view is now the sender's: when the seed could not be asked, it stays older, and this node may
/// have gained keys in the sender's view that it does not know it lacks.
async fn check_epoch(node: &Node, epoch: u64) -> Result<Current, Refusal> {
    node.refresh_to(epoch).await;
    not_stale(node, epoch)?;
    Ok(Current(epoch == node.epoch()))
}

/// Refuse a sender whose epoch is behind ours. Checked again once a write holds the fence: a
/// view installed between the first check and the fence starts a drain that would not wait for
/// this write, and the hand-off pass after it would not see it.
fn not_stale(node: &Node, epoch: u64) -> Result<(), Refusal> {
    let mine = node.epoch();
    if epoch < mine {
        return Err(Refusal::new(
            wire::STATUS_STALE_EPOCH,
            format!("stale epoch {epoch}: this node is at epoch {mine}; refresh and retry"),
        ));
    }
    Ok(())
}

/// Refuse to answer what this node decides by its own view while that view is behind the
/// sender's (the seed could not be asked): a range page for a joiner it may not know of, an
/// anti-entropy comparison over ranges it does not know it shares. Answered from the older view,
/// the joiner would count the holder done, and the round would settle the sender, short of keys.
fn behind(node: &Node, epoch: u64) -> Result<(), Refusal> {
    if node.absence.emptying() {
        // Its old values must not reach the sender (`life/absence.rs`).
        return Err(Refusal::new(
            503,
            "this node is emptying a stale store before it copies its ranges; try again later",
        ));
    }
    let mine = node.epoch();
    if mine < epoch {
        return Err(Refusal::new(
            503,
            format!("this node's view (epoch {mine}) is behind the sender's (epoch {epoch}) and the seed did not answer; try again later"),
        ));
    }
    Ok(())
}

/// Whether this node's view is the sender's ([`check_epoch`]). A node behind still answers
/// (what it holds is still worth having), but vouches for no answer as complete: whether it is,
/// it judges by its own view, and in the sender's newer one it may replicate keys it never held.
#[derive(Clone, Copy)]
struct Current(bool);

impl Current {
    fn vouches(self, complete: bool) -> bool {
        self.0 && complete
    }

    fn outcome(self, outcome: wire::WriteOutcome) -> wire::WriteOutcome {
        match outcome {
            wire::WriteOutcome::Applied { complete } => {
                wire::WriteOutcome::Applied { complete: self.vouches(complete) }
            }
            other => other,
        }
    }
}

async fn apply(node: &Node, req: ApplyRequest) -> Answer {
    let current = check_epoch(node, req.epoch).await?;
    let _writes = node.fence.enter();
    not_stale(node, req.epoch)?;
    if matches!(req.kind, ApplyKind::Handoff | ApplyKind::Hint) && matches!(node.life(), Life::Leaving | Life::Left) {
        return Err(Refusal::new(
            wire::STATUS_LEAVING,
            "this node is leaving and takes no hand-offs; send to the remaining members",
        ));
    }
    if req.kind == ApplyKind::Write && req.entries.len() == 1 {
        let kv = req.entries.into_iter().next().expect("one entry");
        let outcome = current.outcome(node.apply_write(kv).await.map_err(refused)?);
        let ack = outcome.into_result().map_err(|(status, message)| Refusal::new(status, message))?;
        return encode(&ApplyReply::from(ack));
    }
    let stored = node.apply_local(req.entries).await.map_err(refused)?;
    if req.kind == ApplyKind::Handoff {
        // Copies this node did not hold yet (a hand-off retried, or of a key it already had,
        // moves nothing in).
        add(&node.stats.moved_in, stored as u64);
    }
    encode(&ApplyReply::default())
}

/// Client writes a coordinator sent together: each judged as a single write would be.
async fn writes(node: &Node, req: WritesRequest) -> Answer {
    let current = check_epoch(node, req.epoch).await?;
    let _writes = node.fence.enter();
    not_stale(node, req.epoch)?;
    let outcomes = node.apply_writes(req.entries).await.map_err(refused)?;
    let outcomes = outcomes.into_iter().map(|o| current.outcome(o)).collect();
    encode(&WritesReply { outcomes })
}

async fn read(node: &Node, req: ReadRequest) -> Answer {
    let current = check_epoch(node, req.epoch).await?;
    let hash = dkv_placement::key_hash(&req.key);
    let (read, settled) = node.read_complete(&[hash], || node.engine.get(hash, &req.key));
    let entry = read.map_err(|e| refused(e.into()))?;
    encode(&ReadResponse { entry, settled: current.vouches(settled) })
}

/// Reads a coordinator sent together: what this node holds for as many of the keys as fit in a
/// batch's bytes (at least one), whole or their heads; the sender asks again for the rest.
async fn reads<S: Shape>(node: &Node, req: ReadsRequest) -> Answer {
    let current = check_epoch(node, req.epoch).await?;
    let hashes: Vec<u64> = req.keys.iter().map(|k| dkv_placement::key_hash(k)).collect();
    // One flag for the batch: complete only if it is for every key asked (a batch cut short by
    // its bytes answers fewer; the sender asks again for the rest).
    let (read, settled) = node.read_complete(&hashes, || {
        let mut entries = Vec::with_capacity(req.keys.len());
        let mut bytes = 0;
        for (key, hash) in req.keys.iter().zip(prefetching(&*node.engine, &hashes)) {
            if bytes > wire::BATCH_BYTES {
                break;
            }
            let entry = node.engine.get(hash, key)?.map(S::of);
            bytes += key.len() + entry.as_ref().map_or(0, S::bytes);
            entries.push(entry);
        }
        Ok::<_, dkv_storage::StorageError>(entries)
    });
    let entries = read.map_err(|e| refused(e.into()))?;
    encode(&ReadsReply { entries, settled: current.vouches(settled) })
}

/// One page of the entries whose future replicas include the requesting (joining) node.
async fn range(node: &Node, req: RangeRequest) -> Answer {
    node.refresh_to(req.epoch).await;
    behind(node, req.epoch)?;
    if req.after.is_none() {
        // Writes planned before we knew of the newcomer did not go to it; let them land first so
        // the scan sees them.
        node.drain_writes().await;
    }
    let for_node = NodeId(req.for_node);
    let topo = node.topology();
    let after = req.after.map(wire::cursor_from_wire);
    let mut keep = |hash| topo.is_future_replica(for_node, hash);
    // At most `BATCH_BYTES` of keys and values, or one larger entry alone: a frame carries it.
    let page = tokio::task::block_in_place(|| pages::page(&*node.engine, after, u64::MAX, SCAN_PER_PAGE, &mut keep))
        .map_err(|e| refused(e.into()))?;
    let (bytes, next) = (page.bytes, page.next.clone());
    let page = RangePage { entries: page.into_key_entries(), next: next.map(wire::cursor_to_wire) };
    // Sized up front: a page is megabytes, and growing a vector by doubling would copy and fault
    // in twice that.
    let out = Vec::with_capacity(bytes + 32 * page.entries.len() + 64);
    postcard::to_extend(&page, out).map_err(|e| Refusal::new(500, format!("encoding the answer: {e}")))
}

/// Anti-entropy step 1: which buckets differ between the sender's digests and ours (of the entries
/// up to `horizon`, when given; a `tracked` summary records the pair when none do).
async fn sync_summary(node: &Node, req: SyncSummary, horizon: Option<u64>, tracked: bool) -> Answer {
    check_epoch(node, req.epoch).await?;
    behind(node, req.epoch)?;
    if req.digests.len() != antientropy::BUCKETS {
        return Err(Refusal::new(400, "summary with the wrong number of buckets"));
    }
    encode(&antientropy::answer_summary(node, &req, horizon, tracked))
}

/// Anti-entropy step 2: take the sender's entries of a bucket, answer with ours it lacks.
async fn sync_bucket(node: &Node, req: SyncBucket) -> Answer {
    check_epoch(node, req.epoch).await?;
    behind(node, req.epoch)?;
    if req.bucket as usize >= antientropy::BUCKETS {
        return Err(Refusal::new(400, "no such bucket"));
    }
    let _writes = node.fence.enter();
    not_stale(node, req.epoch)?;
    let topo = node.topology();
    let reply = antientropy::answer_bucket(node, &topo, req).await.map_err(refused)?;
    encode(&reply)
}

async fn sync_versions(node: &Node, req: wire::SyncVersions) -> Answer {
    check_epoch(node, req.epoch).await?;
    behind(node, req.epoch)?;
    if req.bucket as usize >= antientropy::BUCKETS {
        return Err(Refusal::new(400, "no such bucket"));
    }
    let topo = node.topology();
    let reply = antientropy::answer_versions(node, &topo, req).await.map_err(refused)?;
    encode(&reply)
}

/// One page of a key scan from this node's store (see `replication/scan.rs`).
async fn scan(node: &Node, req: wire::ScanRequest) -> Answer {
    check_epoch(node, req.epoch).await?;
    match node.serve_scan_in_turn(&req).await {
        Ok(page) => encode(&page),
        Err(crate::error::PeerError::Refused { status, message, .. }) => Err(Refusal::new(status, message)),
        Err(e) => Err(Refusal::new(500, e.to_string())),
    }
}

fn refresh(node: &Node, req: RefreshRequest) -> Answer {
    let refreshing = node.clone();
    node.tasks.spawn(async move { refreshing.refresh_noticed(req.epoch).await });
    Ok(Vec::new())
}

/// Hints a leaving node could not deliver: kept here with their age, delivered as this node's
/// own (bounded as those are). A node that is leaving too takes none.
fn keep_hints(node: &Node, req: wire::KeepHintsRequest) -> Answer {
    if matches!(node.life(), Life::Leaving | Life::Left) {
        return Err(Refusal::new(
            wire::STATUS_LEAVING,
            "this node is leaving and keeps no hints; send them to another member",
        ));
    }
    let now = std::time::Instant::now();
    let aged = req.hints.into_iter().map(|h| (NodeId(h.target), h.kv, std::time::Duration::from_millis(h.age_ms)));
    node.hints.adopt(now, aged);
    Ok(Vec::new())
}

/// A client request another node passed on: serve it as if it had come here.
async fn forward<S: Shape>(node: &Node, req: ForwardRequest) -> Answer {
    if req.epoch > node.epoch() {
        node.refresh_to(req.epoch).await;
    }
    let reply: wire::ForwardReply<S::Live> = node.serve_forwarded::<S>(req).await;
    encode(&reply)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use dkv_membership::NodeState;
    use dkv_transport::Handler;

    use super::*;
    use crate::testing;
    use crate::transport::wire::KeyEntry;

    /// The stall of issue 11: a coordinated write holds the fence while it waits for a peer; a
    /// rebalance starts draining; then the peer's own write reaches this node. Were the apply to
    /// queue behind the drain (as readers do behind a writer in a fair lock), the two nodes' writes
    /// would wait on each other until the request timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drain_does_not_stall_writes_from_peers() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let node = nodes[0].node.clone();
        let in_flight = node.fence.enter();
        let drain = tokio::spawn({
            let node = node.clone();
            async move { node.drain_writes().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let req = ApplyRequest {
            epoch: node.epoch(),
            kind: ApplyKind::Write,
            entries: vec![KeyEntry { key: Bytes::from_static(b"k"), entry: testing::value(1, 10) }],
        };
        let body = Bytes::from(postcard::to_allocvec(&req).unwrap());
        let answer =
            tokio::time::timeout(Duration::from_secs(1), Internal(node.clone()).handle(Kind::Apply as u8, body))
                .await
                .expect("a peer's write must not wait for a drain that waits for this node's own write");
        answer.expect("applied");
        assert!(!drain.is_finished(), "the drain waits for the write that started before it");
        drop(in_flight);
        tokio::time::timeout(Duration::from_secs(1), drain).await.expect("the drain ends").unwrap();
    }

    /// A replica whose view stays behind the sender's (the seed could not be asked) still
    /// answers and stores, but vouches for no answer as complete: in the newer view it may
    /// replicate keys it never held.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_behind_the_senders_view_vouches_for_nothing() {
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let node = nodes[0].node.clone();
        node.mark_settled(&node.topology());
        let handler = Internal(node.clone());
        for (epoch, current) in [(node.epoch(), true), (node.epoch() + 1, false)] {
            let read = ReadRequest { epoch, key: Bytes::from_static(b"k") };
            let body = Bytes::from(postcard::to_allocvec(&read).unwrap());
            let answer = handler.handle(Kind::Read as u8, body).await.expect("answered");
            let answer: ReadResponse<Entry> = postcard::from_bytes(&answer).unwrap();
            assert_eq!(answer.settled, current, "a read at epoch {epoch}");

            let write = ApplyRequest {
                epoch,
                kind: ApplyKind::Write,
                entries: vec![KeyEntry { key: Bytes::from_static(b"k"), entry: testing::value(epoch, 10) }],
            };
            let body = Bytes::from(postcard::to_allocvec(&write).unwrap());
            let answer = handler.handle(Kind::Apply as u8, body).await.expect("stored");
            let answer: ApplyReply = postcard::from_bytes(&answer).unwrap();
            assert_eq!((answer.superseded, answer.complete), (None, current), "a write at epoch {epoch}");
        }
        // What it would decide by its own view it refuses to answer: a joiner's range page, an
        // anti-entropy comparison.
        let ahead = node.epoch() + 1;
        let range = RangeRequest { epoch: ahead, for_node: 2, after: None };
        let summary = SyncSummary { epoch: ahead, from: 2, digests: vec![0; antientropy::BUCKETS] };
        for (kind, body) in [
            (Kind::Range, postcard::to_allocvec(&range).unwrap()),
            (Kind::SyncSummary, postcard::to_allocvec(&summary).unwrap()),
        ] {
            let refusal = handler.handle(kind as u8, Bytes::from(body)).await.expect_err("refused");
            assert_eq!(refusal.status, 503, "{kind:?}: {}", refusal.message);
            assert!(refusal.message.contains("behind the sender's"), "{}", refusal.message);
        }
        let stored = testing::local(&nodes[0], b"k").expect("stored");
        assert_eq!(stored.version.ts, node.epoch() + 1, "the write from the newer view was stored all the same");
    }
}
