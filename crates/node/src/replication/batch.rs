//! Client writes on their way to one replica, sent together.
//!
//! Under load a coordinator has many writes for each replica at once: every client request ready
//! in one turn of the runtime fans out to the same two or so peers. Sent as calls of their own,
//! each costs a frame, a request id, an answer channel and a deadline timer here, and a task, an
//! epoch check and an answer frame on the replica. The transport already writes them to the
//! socket together, so those per-call costs were most of what a replica call cost. Here the
//! writes queued for a replica while the coordinator's other requests run leave as one
//! [`WritesRequest`], answered with one [`WriteOutcome`] per entry.
//!
//! The first write queued for a replica spawns the task that sends the batch, and that task
//! yields once before taking it, so the requests ready in the same turn queue theirs too (the
//! transport's outbox does the same for frames). A write waits for nothing else: no timer, no
//! batch size to reach. Each batch is one call with the request timeout, so a write's own wait
//! is bounded by it; writes of different membership epochs, or more than [`BATCH_BYTES`] of
//! them, go in separate calls.
//!
//! A replica of a release before batches refuses the message kind as unknown; the writes then
//! go to it one by one, as that release expects.

use std::collections::HashMap;
use std::sync::Mutex;

use dkv_storage::Version;
use futures_util::future::join_all;
use tokio::sync::oneshot;

use crate::error::PeerError;
use crate::life::state::Node;
use crate::life::stats::{add, bump};
use crate::transport::peer::protocol;
use crate::transport::wire::{
    ApplyKind, ApplyReply, ApplyRequest, KeyEntry, Kind, WritesReply, WritesRequest, BATCH_BYTES,
};

/// What a write to a replica comes to: the newer version it holds instead, if any.
type Outcome = Result<Option<Version>, PeerError>;

struct Queued {
    epoch: u64,
    kv: KeyEntry,
    done: oneshot::Sender<Outcome>,
}

/// Writes waiting to be sent, by replica address. An address is present while a task is on its
/// way to send what is queued for it.
#[derive(Default)]
pub struct WriteBatches {
    queued: Mutex<HashMap<String, Vec<Queued>>>,
}

impl WriteBatches {
    /// Send a client write of membership `epoch` to the replica at `addr`, with the other writes
    /// queued for it meanwhile: `Some` with the newer version it holds instead, if it did not
    /// apply this one.
    pub async fn write(&self, node: &Node, addr: &str, epoch: u64, kv: KeyEntry) -> Outcome {
        let (done, outcome) = oneshot::channel();
        let first = {
            let mut queued = self.queued.lock().expect("write batches lock");
            match queued.get_mut(addr) {
                Some(waiting) => {
                    waiting.push(Queued { epoch, kv, done });
                    false
                }
                None => {
                    queued.insert(addr.to_string(), vec![Queued { epoch, kv, done }]);
                    true
                }
            }
        };
        if first {
            let (node, addr) = (node.clone(), addr.to_string());
            node.tasks.clone().spawn(async move {
                // Let the other requests ready now queue their writes too.
                tokio::task::yield_now().await;
                let batch = node.batches.queued.lock().expect("write batches lock").remove(&addr).unwrap_or_default();
                send(&node, &addr, batch).await;
            });
        }
        outcome.await.unwrap_or_else(|_| {
            Err(PeerError::Unreachable { addr: addr.to_string(), reason: "the write was dropped unsent".into() })
        })
    }
}

/// Send `batch` in as few calls as epochs and size allow, all at once, and answer every write.
async fn send(node: &Node, addr: &str, mut batch: Vec<Queued>) {
    batch.sort_by_key(|q| q.epoch); // stable: each epoch's writes keep their order
    let mut calls = Vec::new();
    while !batch.is_empty() {
        let epoch = batch[0].epoch;
        let mut bytes = 0;
        let n = batch
            .iter()
            .take_while(|q| {
                bytes += q.kv.key.len() + q.kv.entry.value_len();
                q.epoch == epoch && bytes <= BATCH_BYTES
            })
            .count()
            .max(1); // one write larger than a batch goes alone
        let rest = batch.split_off(n);
        calls.push(call(node, addr, epoch, std::mem::replace(&mut batch, rest)));
    }
    join_all(calls).await;
}

/// One call carrying `writes`, all of membership `epoch`.
async fn call(node: &Node, addr: &str, epoch: u64, writes: Vec<Queued>) {
    let (entries, done): (Vec<KeyEntry>, Vec<_>) = writes.into_iter().map(|q| (q.kv, q.done)).unzip();
    bump(&node.stats.write_batches);
    add(&node.stats.batched_writes, entries.len() as u64);
    let req = WritesRequest { epoch, entries };
    let outcomes: Vec<Outcome> = match node.peers.call::<_, WritesReply>(addr, Kind::Writes, &req).await {
        Ok(reply) if reply.outcomes.len() == done.len() => reply
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
        Ok(reply) => {
            let e = protocol(addr, format!("{} outcomes for {} writes", reply.outcomes.len(), done.len()));
            vec![Err(e); done.len()]
        }
        Err(e) if e.status() == Some(400) && e.to_string().contains("unknown message kind") => {
            one_by_one(node, addr, epoch, req.entries).await
        }
        Err(e) => vec![Err(e); done.len()],
    };
    for (done, outcome) in done.into_iter().zip(outcomes) {
        let _ = done.send(outcome); // a write whose caller left is answered to no one
    }
}

/// The writes as single applies, for a replica of a release without batches.
async fn one_by_one(node: &Node, addr: &str, epoch: u64, entries: Vec<KeyEntry>) -> Vec<Outcome> {
    join_all(entries.into_iter().map(|kv| async move {
        let req = ApplyRequest { epoch, kind: ApplyKind::Write, entries: vec![kv] };
        node.peers.call::<_, ApplyReply>(addr, Kind::Apply, &req).await.map(|r| r.superseded)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use dkv_membership::NodeState;
    use dkv_storage::{Entry, Hlc};
    use dkv_transport::{Handler, Refusal};
    use futures_util::future::join_all;

    use super::*;
    use crate::testing;

    fn kv(key: &str, ts: u64) -> KeyEntry {
        KeyEntry { key: Bytes::copy_from_slice(key.as_bytes()), entry: testing::value(ts, 8) }
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
        let outcomes = join_all(writes.iter().map(|w| a.batches.write(a, &addr, 1, w.clone()))).await;

        assert_eq!(a.stats.write_batches.load(Ordering::Relaxed), 1, "one call for the writes queued together");
        assert_eq!(a.stats.batched_writes.load(Ordering::Relaxed), 5);
        assert_eq!(outcomes[0].as_ref().ok(), Some(&None), "{:?}", outcomes[0]);
        assert_eq!(outcomes[1].as_ref().ok(), Some(&Some(newer)), "{:?}", outcomes[1]);
        assert!(matches!(&outcomes[2], Err(e) if e.status() == Some(422)), "{:?}", outcomes[2]);
        assert_eq!(outcomes[3].as_ref().ok(), Some(&None), "{:?}", outcomes[3]);
        let first = Version { ts: now + 20, node: 1 };
        assert_eq!(outcomes[4].as_ref().ok(), Some(&Some(first)), "the older write of a key lost to the newer one");

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
        let (current, stale) = tokio::join!(a.batches.write(a, &addr, 1, current), a.batches.write(a, &addr, 0, stale));
        assert_eq!(current.ok(), Some(None));
        assert!(matches!(&stale, Err(e) if crate::transport::peer::is_stale_epoch(e)), "{stale:?}");
        assert_eq!(a.stats.write_batches.load(Ordering::Relaxed), 2);
        assert!(testing::local(b, b"current").is_some());
        assert_eq!(testing::local(b, b"stale"), None);
    }

    /// A replica of the release before batches: it refuses their message kind as unknown and
    /// takes single applies.
    struct OldRelease {
        applies: AtomicUsize,
    }

    impl Handler for OldRelease {
        async fn handle(&self, kind: u8, body: Bytes) -> Result<Vec<u8>, Refusal> {
            if kind != Kind::Apply as u8 {
                return Err(Refusal::new(400, format!("unknown message kind {kind}: is the peer of another release?")));
            }
            let req: ApplyRequest = postcard::from_bytes(&body).expect("an apply");
            assert_eq!((req.kind, req.entries.len()), (ApplyKind::Write, 1), "one write per apply");
            self.applies.fetch_add(1, Ordering::Relaxed);
            Ok(postcard::to_allocvec(&ApplyReply::default()).expect("encodes"))
        }
    }

    #[tokio::test]
    async fn a_replica_of_the_release_before_gets_the_writes_one_by_one() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0].node;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let old = Arc::new(OldRelease { applies: AtomicUsize::new(0) });
        let config = Arc::new(dkv_transport::ServerConfig {
            auth: dkv_transport::Auth { cluster: a.config.cluster_name.clone(), secret: None },
            max_frame: 1 << 20,
            max_answer: 1 << 20,
            max_concurrent: 64,
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
        let writes = ["x", "y", "z"].map(|k| a.batches.write(a, &addr, 1, kv(k, 5)));
        for outcome in join_all(writes).await {
            assert_eq!(outcome.ok(), Some(None));
        }
        assert_eq!(old.applies.load(Ordering::Relaxed), 3);
    }
}
