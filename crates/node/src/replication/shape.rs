//! What a read brings back from each replica: the key's whole entry, or only its head.
//!
//! `GET` needs the value. `EXISTS`, `STRLEN`, `TYPE`, `TTL` and the count `DEL` answers need only
//! whether there is a live value, its length and its deadline: a [`Head`]. Read whole, a value of
//! 16 MiB would come over from R replicas to answer a number. So a read is generic over its
//! [`Shape`]: the quorum, the choice of the newest version, the expiry check and forwarding are
//! one code path, and the shape says which message asks a replica, what it answers, and how a
//! stale replica is repaired.
//!
//! Read repair needs a value, which a read of heads did not bring: when its answers disagree, the
//! newest entry is read whole from the replica that answered it, in the background, and sent to
//! the replicas that answered older.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use dkv_membership::{NodeId, Topology};
use dkv_storage::{Entry, Version};
use futures_util::future::join_all;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::PeerError;
use crate::life::state::Node;
use crate::replication::batch::{Batch, Batches, Reads};
use crate::transport::wire::{Found, Head, Kind, Length, ReadRequest, ReadResponse};

/// A replica's answer for one key, as one kind of read asks for it.
pub trait Shape: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// What the read answers for a live value: [`Found`] or [`Length`].
    type Live: Send + Serialize + DeserializeOwned + 'static;
    /// The message that asks a replica for a batch of these.
    const READS: Kind;
    /// The message that forwards such a read to a replica.
    const FORWARD: Kind;
    fn of(entry: Entry) -> Self;
    fn version(&self) -> Version;
    /// Whether it holds a value (not a tombstone).
    fn is_value(&self) -> bool;
    /// As [`Entry::expires`].
    fn expires(&self) -> Option<u64>;
    /// The bytes it adds to a replica's answer beside its key (what bounds a batch's answer).
    fn bytes(&self) -> usize;
    /// What a read answers for it, judged live already; `None` for a tombstone.
    fn live(self) -> Option<Self::Live>;
    /// [`Shape::Live`] of a whole read's answer (a node that forwards to an older release).
    fn of_found(found: Found) -> Self::Live;
    /// [`Found::expires`] of what a read answers.
    fn live_expires(live: &Self::Live) -> Option<u64>;
    /// The node's queue of such reads.
    fn batches(node: &Node) -> &Batches<Reads<Self>>;
    /// Reads of `keys` from a replica of a release that does not know [`Shape::READS`].
    fn older_release(
        node: &Node,
        addr: &str,
        epoch: u64,
        keys: Vec<Bytes>,
    ) -> impl Future<Output = Vec<Result<ReadResponse<Self>, PeerError>>> + Send;
    /// Read repair: bring the replicas in `seen` that answered a version older than `newest`
    /// (answered by `from`) up to it.
    fn repair(
        node: &Node,
        topo: &Arc<Topology>,
        key: &Bytes,
        from: NodeId,
        newest: &Self,
        seen: Vec<(NodeId, Option<Version>)>,
    );
}

impl Shape for Entry {
    type Live = Found;
    const READS: Kind = Kind::Reads;
    const FORWARD: Kind = Kind::Forward;

    fn of(entry: Entry) -> Self {
        entry
    }

    fn version(&self) -> Version {
        self.version
    }

    fn is_value(&self) -> bool {
        self.value.is_some()
    }

    fn expires(&self) -> Option<u64> {
        self.expires
    }

    fn bytes(&self) -> usize {
        self.value_len()
    }

    fn live(self) -> Option<Found> {
        self.value.map(|value| Found { value, expires: self.expires })
    }

    fn of_found(found: Found) -> Found {
        found
    }

    fn live_expires(live: &Found) -> Option<u64> {
        live.expires
    }

    fn batches(node: &Node) -> &Batches<Reads<Self>> {
        &node.read_batches
    }

    async fn older_release(
        node: &Node,
        addr: &str,
        epoch: u64,
        keys: Vec<Bytes>,
    ) -> Vec<Result<ReadResponse, PeerError>> {
        let read = |key| async move { node.peers.call(addr, Kind::Read, &ReadRequest { epoch, key }).await };
        join_all(keys.into_iter().map(read)).await
    }

    fn repair(
        node: &Node,
        topo: &Arc<Topology>,
        key: &Bytes,
        _: NodeId,
        newest: &Entry,
        seen: Vec<(NodeId, Option<Version>)>,
    ) {
        node.repair(topo, key, newest, &seen);
    }
}

impl Shape for Head {
    type Live = Length;
    const READS: Kind = Kind::Heads;
    const FORWARD: Kind = Kind::ForwardHead;

    fn of(entry: Entry) -> Self {
        Head::of(&entry)
    }

    fn version(&self) -> Version {
        self.version
    }

    fn is_value(&self) -> bool {
        self.len.is_some()
    }

    fn expires(&self) -> Option<u64> {
        self.expires
    }

    fn bytes(&self) -> usize {
        0
    }

    fn live(self) -> Option<Length> {
        self.len.map(|len| Length { len, expires: self.expires })
    }

    fn of_found(found: Found) -> Length {
        Length { len: found.value.len() as u64, expires: found.expires }
    }

    fn live_expires(live: &Length) -> Option<u64> {
        live.expires
    }

    fn batches(node: &Node) -> &Batches<Reads<Self>> {
        &node.head_batches
    }

    async fn older_release(
        node: &Node,
        addr: &str,
        epoch: u64,
        keys: Vec<Bytes>,
    ) -> Vec<Result<ReadResponse<Head>, PeerError>> {
        let whole = <Reads as Batch>::call(node, addr, epoch, keys).await;
        let head = |r: ReadResponse| ReadResponse { entry: r.entry.as_ref().map(Head::of), settled: r.settled };
        whole.into_iter().map(|answer| answer.map(|read| head(read.answer))).collect()
    }

    fn repair(
        node: &Node,
        topo: &Arc<Topology>,
        key: &Bytes,
        from: NodeId,
        newest: &Head,
        seen: Vec<(NodeId, Option<Version>)>,
    ) {
        if seen.iter().all(|(_, v)| v.is_some_and(|v| v >= newest.version)) {
            return;
        }
        let (node, topo, key) = (node.clone(), topo.clone(), key.clone());
        node.tasks.clone().spawn(async move {
            match node.clone().read_on::<Entry>(topo.clone(), from, key.clone()).await {
                // What `from` holds now: the head's version, or a newer one written since.
                Ok(read) => {
                    if let Some(entry) = &read.entry {
                        node.repair(&topo, &key, entry, &seen);
                    }
                }
                Err(e) => tracing::debug!("read repair could not read the newest copy from node {from}: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use dkv_membership::NodeState;
    use dkv_placement::key_hash;

    use super::*;
    use crate::life::metrics::Api;
    use crate::replication::consistency::Level;
    use crate::testing::{self, TestNode};

    fn answered(nodes: &[TestNode]) -> u64 {
        nodes.iter().map(TestNode::answered).sum()
    }

    /// A read of heads answers the newest version's length, with no value sent between the nodes,
    /// and still repairs: the replica without the key and the one with an older version get the
    /// newest entry, read whole from the replica that answered it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_of_heads_sends_no_value_and_still_repairs_stale_replicas() {
        let nodes = testing::cluster(&[NodeState::Normal; 3], testing::config()).await;
        let big = 1 << 20;
        let newest = testing::value(11, big);
        testing::put_local(&nodes[1], b"k", newest.clone());
        testing::put_local(&nodes[2], b"k", testing::value(10, 10));

        let length = nodes[0].coordinate_read::<Head>("k".into(), Some(Level::All)).await.expect("read");
        assert_eq!(length, Some(Length { len: big as u64, expires: None }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !nodes.iter().all(|n| testing::local(n, b"k").as_ref() == Some(&newest)) {
            assert!(Instant::now() < deadline, "the stale replicas were not repaired within 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The repair itself read the value once, from node 2; the heads carried none.
        assert!((big as u64..big as u64 + 1024).contains(&answered(&nodes)), "{} bytes answered", answered(&nodes));

        // Agreeing replicas: nothing to repair, and a deleted or expired value is absent.
        let before = answered(&nodes);
        let again = nodes[0].coordinate_read::<Head>("k".into(), Some(Level::All)).await.expect("read");
        assert_eq!(again, length);
        assert!(answered(&nodes) - before < 1024, "{} bytes answered", answered(&nodes) - before);
        let mut expired = testing::value(12, 10);
        expired.expires = Some(nodes[0].hlc.wall_ms() - 1);
        nodes.iter().for_each(|n| testing::put_local(n, b"k", expired.clone()));
        assert_eq!(nodes[0].coordinate_read::<Head>("k".into(), None).await.expect("read"), None);
    }

    /// Through a node that holds no copy of the key, a read of heads is forwarded as one
    /// ([`Kind::ForwardHead`]). Nodes of a release before it refuse that and [`Kind::Heads`] as
    /// unknown: the read is then forwarded and made whole, and answers the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_of_heads_is_forwarded_as_one_and_answered_whole_by_an_older_release() {
        let len = 4096;
        for unknown in [&[][..], &[Kind::Heads, Kind::ForwardHead]] {
            let nodes = testing::cluster_of_releases(&[NodeState::Normal; 4], testing::config(), unknown).await;
            let topo = nodes[0].topology();
            let elsewhere = |k: &String| !topo.placement(key_hash(k.as_bytes())).read.contains(&nodes[0].me);
            let key = (0..).map(|i| format!("k{i}")).find(elsewhere).expect("a key node 1 has no copy of");
            nodes[1]
                .coordinate_write(key.clone().into(), Some(vec![7; len].into()), None, None)
                .await
                .expect("written");
            let deadline = Instant::now() + Duration::from_secs(10);
            while nodes.iter().filter(|n| testing::local(n, key.as_bytes()).is_some()).count() < 3 {
                assert!(Instant::now() < deadline, "the write did not reach its three replicas within 10 s");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }

            let before = answered(&nodes);
            let length = nodes[0].length(Api::Resp, key.into(), None).await.expect("read");
            assert_eq!(length, Some(Length { len: len as u64, expires: None }), "{unknown:?}");
            let sent = answered(&nodes) - before;
            match unknown.is_empty() {
                true => assert!(sent < 1024, "{sent} bytes answered"),
                false => assert!(sent >= len as u64, "{sent} bytes answered: the value was not read whole"),
            }
            assert_eq!(nodes[0].length(Api::Resp, "absent".into(), None).await.expect("read"), None);
        }
    }
}
