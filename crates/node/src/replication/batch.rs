//! Calls to one replica, sent together: client writes, and reads.
//!
//! Under load a coordinator has many writes and reads for each replica at once: every client
//! request ready in one turn of the runtime fans out to the same two or so peers. Sent as calls
//! of their own, each costs a frame, a request id, an answer channel and a deadline timer here,
//! and a task and an epoch check on the replica. The transport already writes them to the
//! socket together, so those per-call costs were most of what a replica call cost. Here the
//! writes (or reads) queued for a replica while the coordinator's other requests run leave as one
//! message, [`WritesRequest`] (or [`ReadsRequest`]), answered with one outcome per entry.
//! Each outcome goes where its caller said ([`Batch::Done`]): a read's to an answer channel its
//! caller awaits, a write's into the [`Votes`](super::votes::Votes) of that write, which also
//! keeps a hint when the replica failed.
//!
//! The first one queued for a replica spawns the task that sends the batch, and that task yields
//! once before taking it, so the requests ready in the same turn queue theirs too (the transport's
//! outbox does the same for frames). A call waits for nothing else: no timer, no batch size to
//! reach. Each batch is one call with the request timeout, so a caller's own wait is bounded by
//! it; entries of different membership epochs, or more than [`BATCH_BYTES`] of them, go in
//! separate calls. A replica answers a batch of reads with as many values as fit in
//! [`BATCH_BYTES`] (at least one), and the rest are asked again.
//!
//! A replica of a release before batches refuses their message kinds as unknown; the writes
//! and reads then go to it one by one, as that release expects.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Mutex;

use bytes::Bytes;
use dkv_storage::{Engine, Entry};
use futures_util::future::join_all;
use tokio::sync::oneshot;

use crate::error::PeerError;
use crate::front::limits::{Charge, SMALL_CHARGE};
use crate::life::state::Node;
use crate::life::stats::{add, bump};
use crate::replication::shape::Shape;
use crate::replication::votes::{Answer, Ballot};
use crate::transport::peer::protocol;
use crate::transport::wire::{
    Ack, ApplyKind, ApplyReply, ApplyRequest, KeyEntry, Kind, ReadResponse, ReadsReply, ReadsRequest, WritesReply,
    WritesRequest, BATCH_BYTES,
};

/// How far ahead of the entry at hand a batch's lookups are started (see [`prefetching`]): enough
/// to cover a cache miss, few enough that what was prefetched is still cached when used.
const PREFETCH_AHEAD: usize = 8;

/// One kind of call that goes in batches.
pub trait Batch: Sized + Send + 'static {
    /// One caller's part of a call.
    type Item: Send + 'static;
    /// What one caller gets back.
    type Outcome: Send + 'static;
    /// Where one caller's outcome goes.
    type Done: Send + 'static;
    /// Hand `outcome` to the caller waiting at `done`.
    fn finish(node: &Node, done: Self::Done, outcome: Result<Self::Outcome, PeerError>);
    /// The node's queue of this kind.
    fn queue(node: &Node) -> &Batches<Self>;
    /// The bytes an item adds to a call.
    fn bytes(item: &Self::Item) -> usize;
    /// Send `items` of membership `epoch` to `addr`: one outcome per item, in order.
    fn call(
        node: &Node,
        addr: &str,
        epoch: u64,
        items: Vec<Self::Item>,
    ) -> impl Future<Output = Vec<Result<Self::Outcome, PeerError>>> + Send;
}

struct Queued<B: Batch> {
    epoch: u64,
    item: B::Item,
    done: B::Done,
}

/// Items waiting to be sent, by replica address. An address is present while a task is on its
/// way to send what is queued for it.
pub struct Batches<B: Batch> {
    queued: Mutex<HashMap<String, Vec<Queued<B>>>>,
}

impl<B: Batch> Default for Batches<B> {
    fn default() -> Self {
        Batches { queued: Mutex::new(HashMap::new()) }
    }
}

impl<B: Batch> Batches<B> {
    /// Queue `item` of membership `epoch` for the replica at `addr`, to be sent with the other
    /// items queued for it meanwhile; its outcome goes to `done`.
    pub fn queue(&self, node: &Node, addr: &str, epoch: u64, item: B::Item, done: B::Done) {
        let first = {
            let mut queued = self.queued.lock().expect("batches lock");
            match queued.get_mut(addr) {
                Some(waiting) => {
                    waiting.push(Queued { epoch, item, done });
                    false
                }
                None => {
                    queued.insert(addr.to_string(), vec![Queued { epoch, item, done }]);
                    true
                }
            }
        };
        if first {
            let (node, addr) = (node.clone(), addr.to_string());
            node.tasks.clone().spawn(async move {
                // Let the other requests ready now queue theirs too.
                tokio::task::yield_now().await;
                let batch = B::queue(&node).queued.lock().expect("batches lock").remove(&addr).unwrap_or_default();
                send(&node, &addr, batch).await;
            });
        }
    }
}

impl<S: Shape> Batches<Reads<S>> {
    /// [`Batches::queue`] a read of `key`, and wait for what the replica holds.
    pub async fn send(
        &self,
        node: &Node,
        addr: &str,
        epoch: u64,
        key: Bytes,
    ) -> Result<Charged<ReadResponse<S>>, PeerError> {
        let (done, outcome) = oneshot::channel();
        self.queue(node, addr, epoch, key, done);
        outcome.await.unwrap_or_else(|_| Err(dropped_unsent(addr)))
    }
}

/// The outcome of an item whose batch was dropped before it was sent (the runtime shut down).
pub(crate) fn dropped_unsent(addr: &str) -> PeerError {
    PeerError::Unreachable { addr: addr.to_string(), reason: "the call was dropped unsent".into() }
}

/// Send `batch` in as few calls as epochs and size allow, all at once, and answer every caller.
async fn send<B: Batch>(node: &Node, addr: &str, mut batch: Vec<Queued<B>>) {
    batch.sort_by_key(|q| q.epoch); // stable: each epoch's items keep their order
    let mut calls = Vec::new();
    while !batch.is_empty() {
        let epoch = batch[0].epoch;
        let mut bytes = 0;
        let n = batch
            .iter()
            .take_while(|q| {
                bytes += B::bytes(&q.item);
                q.epoch == epoch && bytes <= BATCH_BYTES
            })
            .count()
            .max(1); // one item larger than a batch goes alone
        let rest = batch.split_off(n);
        let (items, done): (Vec<B::Item>, Vec<_>) =
            std::mem::replace(&mut batch, rest).into_iter().map(|q| (q.item, q.done)).unzip();
        calls.push(async move {
            let outcomes = B::call(node, addr, epoch, items).await;
            debug_assert_eq!(outcomes.len(), done.len(), "one outcome per item");
            for (done, outcome) in done.into_iter().zip(outcomes) {
                B::finish(node, done, outcome);
            }
        });
    }
    join_all(calls).await;
}

/// `hashes` in order, each one's lookup started [`PREFETCH_AHEAD`] items before it is yielded,
/// so the cache misses of a batch's lookups overlap instead of following one another.
pub fn prefetching<'a>(engine: &'a dyn Engine, hashes: &'a [u64]) -> impl Iterator<Item = u64> + 'a {
    for &hash in hashes.iter().take(PREFETCH_AHEAD) {
        engine.prefetch(hash);
    }
    hashes.iter().enumerate().map(move |(i, &hash)| {
        if let Some(&ahead) = hashes.get(i + PREFETCH_AHEAD) {
            engine.prefetch(ahead);
        }
        hash
    })
}

/// Whether a peer refused a message kind as one it does not know (it is of an older release).
pub(crate) fn unknown_kind(e: &PeerError) -> bool {
    e.status() == Some(400) && e.to_string().contains("unknown message kind")
}

/// Client writes: the outcome is what the replica did (applied, complete or not, or superseded
/// by the newer version it holds instead).
pub struct Writes;

impl Batch for Writes {
    type Item = KeyEntry;
    type Outcome = Ack;
    type Done = Ballot;

    fn finish(node: &Node, ballot: Ballot, outcome: Answer) {
        ballot.cast(node, outcome);
    }

    fn queue(node: &Node) -> &Batches<Self> {
        &node.write_batches
    }

    fn bytes(kv: &KeyEntry) -> usize {
        kv.bytes()
    }

    async fn call(node: &Node, addr: &str, epoch: u64, entries: Vec<KeyEntry>) -> Vec<Answer> {
        let n = entries.len();
        bump(&node.stats.write_batches);
        add(&node.stats.batched_writes, n as u64);
        let req = WritesRequest { epoch, entries };
        match node.peers.call::<_, WritesReply>(addr, Kind::Writes, &req).await {
            Ok(reply) if reply.outcomes.len() == n => reply
                .outcomes
                .into_iter()
                .map(|o| {
                    o.into_result().map_err(|(status, message)| PeerError::Refused {
                        addr: addr.to_string(),
                        status,
                        message,
                    })
                })
                .collect(),
            Ok(reply) => vec![Err(protocol(addr, format!("{} outcomes for {n} writes", reply.outcomes.len()))); n],
            Err(e) if unknown_kind(&e) => {
                join_all(req.entries.into_iter().map(|kv| async move {
                    let req = ApplyRequest { epoch, kind: ApplyKind::Write, entries: vec![kv] };
                    node.peers.call::<_, ApplyReply>(addr, Kind::Apply, &req).await.map(Ack::from)
                }))
                .await
            }
            Err(e) => vec![Err(e); n],
        }
    }
}

/// A replica's answer, with what it holds charged to the client memory budget
/// (`--max-client-memory`) from its arrival (or its copy out of this node's store) until it is
/// dropped. A read holds up to N copies of its value until it decides, and the answers of a
/// connection's reads wait, received, until the connection's task polls them: one that
/// pipelined 300 GETs of a 16 MiB value and read no reply took a node to 3.4 GB with a budget
/// of 1 GiB, three such connections to 5 GB (found by trying, 2026-12-06). Over the budget, the
/// answer is the replica's failure, which says so, and its value goes at once.
pub struct Charged<A> {
    pub answer: A,
    _charge: Option<Charge>,
}

impl<A> Charged<A> {
    /// An answer that holds nothing worth charging.
    pub fn free(answer: A) -> Charged<A> {
        Charged { answer, _charge: None }
    }

    /// `answer` from `addr`, holding `bytes`: charged if it is large.
    pub fn of(node: &Node, addr: &str, answer: A, bytes: usize) -> Result<Charged<A>, PeerError> {
        if bytes <= SMALL_CHARGE {
            return Ok(Charged::free(answer));
        }
        match node.guard.charge(bytes) {
            Ok(charge) => Ok(Charged { answer, _charge: Some(charge) }),
            Err(refused) => Err(PeerError::Refused {
                addr: addr.to_string(),
                status: 503,
                message: format!("its answer of {bytes} bytes was dropped here: {}", refused.0),
            }),
        }
    }
}

impl<A: std::fmt::Debug> std::fmt::Debug for Charged<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.answer.fmt(f)
    }
}

impl<A> std::ops::Deref for Charged<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &self.answer
    }
}

/// Reads of one key each, whole entries or their heads (see `shape.rs`): the outcome is what
/// the replica holds.
pub struct Reads<S = Entry>(PhantomData<S>);

impl<S: Shape> Reads<S> {
    /// What replica `addr` answered for one key, charged as it arrives (see [`Charged`]).
    fn arrived(node: &Node, addr: &str, read: ReadResponse<S>) -> Result<Charged<ReadResponse<S>>, PeerError> {
        let bytes = read.entry.as_ref().map_or(0, S::bytes);
        Charged::of(node, addr, read, bytes)
    }
}

impl<S: Shape> Batch for Reads<S> {
    type Item = Bytes;
    type Outcome = Charged<ReadResponse<S>>;
    type Done = oneshot::Sender<Result<Charged<ReadResponse<S>>, PeerError>>;

    fn finish(_: &Node, done: Self::Done, outcome: Result<Charged<ReadResponse<S>>, PeerError>) {
        let _ = done.send(outcome); // a caller that left is answered to no one
    }

    fn queue(node: &Node) -> &Batches<Self> {
        S::batches(node)
    }

    fn bytes(key: &Bytes) -> usize {
        key.len()
    }

    async fn call(
        node: &Node,
        addr: &str,
        epoch: u64,
        keys: Vec<Bytes>,
    ) -> Vec<Result<Charged<ReadResponse<S>>, PeerError>> {
        let mut out = Vec::with_capacity(keys.len());
        let mut rest = keys;
        while !rest.is_empty() {
            let req = ReadsRequest { epoch, keys: rest };
            match node.peers.call::<_, ReadsReply<S>>(addr, S::READS, &req).await {
                // The replica answers as many as fit in a frame, at least one; the rest go again.
                Ok(reply) if (1..=req.keys.len()).contains(&reply.entries.len()) => {
                    let settled = reply.settled;
                    rest = req.keys;
                    rest.drain(..reply.entries.len());
                    let arrived = reply.entries.into_iter().map(|entry| ReadResponse { entry, settled });
                    out.extend(arrived.map(|read| Reads::arrived(node, addr, read)));
                }
                Ok(reply) => {
                    let e = protocol(addr, format!("{} answers for {} reads", reply.entries.len(), req.keys.len()));
                    out.extend(std::iter::repeat_n(e, req.keys.len()).map(Err));
                    break;
                }
                Err(e) if unknown_kind(&e) => {
                    let reads = S::older_release(node, addr, epoch, req.keys).await;
                    out.extend(reads.into_iter().map(|read| read.and_then(|read| Reads::arrived(node, addr, read))));
                    break;
                }
                Err(e) => {
                    out.extend(std::iter::repeat_n(e, req.keys.len()).map(Err));
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use dkv_membership::NodeState;
    use dkv_storage::{Entry, Hlc, Version};
    use dkv_transport::{Handler, Refusal};
    use futures_util::future::join_all;

    use super::*;
    use crate::replication::votes::Votes;
    use crate::testing;
    use crate::transport::wire::{Head, ReadRequest};

    fn kv(key: &str, ts: u64) -> KeyEntry {
        KeyEntry { key: Bytes::copy_from_slice(key.as_bytes()), entry: testing::value(ts, 8) }
    }

    /// Queue one write for the replica at `addr` and wait for its answer, as a coordinator does.
    async fn write(a: &Node, addr: &str, epoch: u64, kv: KeyEntry) -> Answer {
        let (votes, replica) = (Votes::new(kv.clone()), dkv_membership::NodeId(99));
        a.write_batches.queue(a, addr, epoch, kv, Ballot::new(votes.clone(), replica));
        tokio::time::timeout(a.config.request_timeout, votes.first()).await.expect("an answer in time")
    }

    fn applied(answer: &Answer) -> bool {
        matches!(answer, Ok(Ack::Applied { .. }))
    }

    /// Writes queued in one turn leave in one call, and each is answered with its own outcome:
    /// applied, superseded by the newer version the replica holds, or refused as too far ahead
    /// of its clock; two writes of one key in the batch are judged in order.
    #[tokio::test]
    async fn writes_queued_together_go_in_one_call_each_with_its_outcome() {
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0].node, &nodes[1].node);
        let addr = b.topology().member(b.me).expect("b is a member").addr.clone();
        let now = Hlc::ts_at_ms(b.hlc.wall_ms());
        let newer = Version { ts: now + 1_000, node: 2 };
        testing::put_local(b, b"held", Entry::value(newer, Bytes::from_static(b"newer")));
        let ahead = Hlc::ts_at_ms(b.hlc.wall_ms() + 3_600_000);
        let writes =
            [kv("fresh", now), kv("held", now), kv("ahead", ahead), kv("twice", now + 20), kv("twice", now + 10)];
        let outcomes = join_all(writes.iter().map(|w| write(a, &addr, 1, w.clone()))).await;

        assert_eq!(a.stats.write_batches.load(Ordering::Relaxed), 1, "one call for the writes queued together");
        assert_eq!(a.stats.batched_writes.load(Ordering::Relaxed), 5);
        assert!(applied(&outcomes[0]), "{:?}", outcomes[0]);
        assert_eq!(outcomes[1].as_ref().ok(), Some(&Ack::Superseded(newer)), "{:?}", outcomes[1]);
        assert!(matches!(&outcomes[2], Err(e) if e.status() == Some(422)), "{:?}", outcomes[2]);
        assert!(applied(&outcomes[3]), "{:?}", outcomes[3]);
        let first = Version { ts: now + 20, node: 1 };
        assert_eq!(
            outcomes[4].as_ref().ok(),
            Some(&Ack::Superseded(first)),
            "the older write of a key lost to the newer one"
        );

        assert_eq!(testing::local(b, b"fresh").map(|e| e.version.ts), Some(now));
        assert_eq!(testing::local(b, b"held").map(|e| e.version), Some(newer), "the newer version stays");
        assert_eq!(testing::local(b, b"ahead"), None, "a refused write changes nothing");
        assert_eq!(testing::local(b, b"twice").map(|e| e.version), Some(first));
    }

    /// Writes of an epoch the replica has left are refused as stale, and only they: the writes of
    /// the current epoch queued with them go in a call of their own and are applied.
    #[tokio::test]
    async fn writes_of_another_epoch_go_in_a_call_of_their_own() {
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0].node, &nodes[1].node);
        let addr = b.topology().member(b.me).expect("b is a member").addr.clone();
        let now = Hlc::ts_at_ms(b.hlc.wall_ms());
        let (current, stale) = (kv("current", now), kv("stale", now));
        let (current, stale) = tokio::join!(write(a, &addr, 1, current), write(a, &addr, 0, stale));
        assert!(applied(&current), "{current:?}");
        assert!(matches!(&stale, Err(e) if crate::transport::peer::is_stale_epoch(e)), "{stale:?}");
        assert_eq!(a.stats.write_batches.load(Ordering::Relaxed), 2);
        assert!(testing::local(b, b"current").is_some());
        assert_eq!(testing::local(b, b"stale"), None);
    }

    /// Reads queued together each get what the replica holds, in one call; values that together
    /// would not fit in a frame come back over several calls, each whole.
    #[tokio::test]
    async fn reads_queued_together_each_get_what_the_replica_holds() {
        let nodes = testing::cluster(&[NodeState::Normal, NodeState::Normal], testing::config()).await;
        let (a, b) = (&nodes[0].node, &nodes[1].node);
        let addr = b.topology().member(b.me).expect("b is a member").addr.clone();
        testing::put_local(b, b"small", testing::value(7, 10));
        let big = 8 << 20; // three of them are more than the largest frame (17 MiB by default)
        for (i, key) in ["big1", "big2", "big3"].iter().enumerate() {
            testing::put_local(b, key.as_bytes(), testing::value(10 + i as u64, big));
        }
        let keys = ["small", "absent", "big1", "big2", "big3"];
        let reads = keys.map(|k| a.read_batches.send(a, &addr, 1, Bytes::from_static(k.as_bytes())));
        let answers: Vec<_> = join_all(reads).await.into_iter().map(|r| r.expect("answered").answer.entry).collect();
        assert_eq!(answers[0], Some(testing::value(7, 10)));
        assert_eq!(answers[1], None);
        for (i, answer) in answers[2..].iter().enumerate() {
            assert_eq!(answer.as_ref(), Some(&testing::value(10 + i as u64, big)), "big{}", i + 1);
        }

        // Their heads: the versions and lengths, all in one answer of a few bytes.
        let before = nodes[1].answered();
        let heads = keys.map(|k| a.head_batches.send(a, &addr, 1, Bytes::from_static(k.as_bytes())));
        let heads: Vec<_> = join_all(heads).await.into_iter().map(|r| r.expect("answered").answer.entry).collect();
        let expected: Vec<_> = keys.iter().map(|k| testing::local(b, k.as_bytes()).as_ref().map(Head::of)).collect();
        assert_eq!(heads, expected);
        assert_eq!(heads[2].and_then(|h| h.len), Some(big as u64));
        assert!(nodes[1].answered() - before < 200, "{} bytes answered", nodes[1].answered() - before);
    }

    /// A replica of the release before batches: it refuses their message kinds as unknown and
    /// takes single applies and reads.
    struct OldRelease {
        calls: AtomicUsize,
    }

    impl Handler for OldRelease {
        async fn handle(&self, kind: u8, body: Bytes) -> Result<Vec<u8>, Refusal> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if kind == Kind::Read as u8 {
                let req: ReadRequest = postcard::from_bytes(&body).expect("a read");
                let entry = (req.key == "x").then(|| testing::value(5, 8));
                return Ok(postcard::to_allocvec(&ReadResponse { entry, settled: true }).expect("encodes"));
            }
            if kind != Kind::Apply as u8 {
                return Err(Refusal::new(400, format!("unknown message kind {kind}: is the peer of another release?")));
            }
            let req: ApplyRequest = postcard::from_bytes(&body).expect("an apply");
            assert_eq!((req.kind, req.entries.len()), (ApplyKind::Write, 1), "one write per apply");
            Ok(postcard::to_allocvec(&ApplyReply::default()).expect("encodes"))
        }
    }

    #[tokio::test]
    async fn a_replica_of_the_release_before_gets_writes_and_reads_one_by_one() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0].node;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let old = Arc::new(OldRelease { calls: AtomicUsize::new(0) });
        let config = Arc::new(dkv_transport::ServerConfig {
            auth: dkv_transport::Auth { cluster: a.config.cluster_name.clone(), secret: None },
            max_frame: 1 << 20,
            max_answer: 1 << 20,
            max_concurrent: 64,
            max_request_time: a.config.request_timeout * 3,
            handshake_timeout: a.config.request_timeout,
        });
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn({
            let old = old.clone();
            async move {
                let (stream, _) = listener.accept().await.unwrap();
                dkv_transport::serve(stream, old, config, stopped).await;
            }
        });
        let writes = ["x", "y", "z"].map(|k| write(a, &addr, 1, kv(k, 5)));
        for outcome in join_all(writes).await {
            assert!(applied(&outcome), "{outcome:?}");
        }
        // Each kind refused once, then sent as three single calls.
        assert_eq!(old.calls.load(Ordering::Relaxed), 1 + 3);
        let reads = ["x", "y"].map(|k| a.read_batches.send(a, &addr, 1, Bytes::from_static(k.as_bytes())));
        let [x, y] = join_all(reads).await.try_into().expect("two answers");
        assert_eq!(x.expect("read x").entry, Some(testing::value(5, 8)));
        assert_eq!(y.expect("read y").entry, None);
        assert_eq!(old.calls.load(Ordering::Relaxed), 4 + 1 + 2);
        // Heads: refused, then reads of whole entries refused, then single reads.
        let heads = ["x", "y"].map(|k| a.head_batches.send(a, &addr, 1, Bytes::from_static(k.as_bytes())));
        let [x, y] = join_all(heads).await.try_into().expect("two answers");
        assert_eq!(x.expect("head of x").entry, Some(Head::of(&testing::value(5, 8))));
        assert_eq!(y.expect("head of y").entry, None);
        assert_eq!(old.calls.load(Ordering::Relaxed), 7 + 2 + 2);
    }
}
