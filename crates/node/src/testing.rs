//! In-process nodes for the node crate's own tests: a few [`Node`]s with memory engines, one view
//! they all share, and the binary transport served on 127.0.0.1 — so the replication machinery
//! (writes, range pulls, anti-entropy, the fence) runs over real sockets without a seed or a
//! process per node. Nothing runs in the background but the transport: no heartbeats, no
//! rebalance, no anti-entropy loop; a test calls the piece it is about.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dkv_membership::{Member, NodeId, NodeState, Topology, View};
use dkv_storage::{
    Applied, Cursor, Digests, Engine, EngineStats, Entry, KeyVersion, MemoryEngine, StorageResult, Version,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::life::state::{Life, Node};
use crate::replication::hints::Hints;
use crate::transport::internal::Internal;
use crate::transport::peer::Peers;
use crate::transport::wire;

/// A node serving the transport until dropped.
pub(crate) struct TestNode {
    pub node: Node,
    stop: watch::Sender<bool>,
    answered: Arc<AtomicU64>,
}

impl TestNode {
    /// The bytes of the answers this node sent its peers so far.
    pub(crate) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Stops the last node of `nodes` and returns its id: a member the others still list that
/// answers none of them, as one that went down and has not expired yet.
pub(crate) fn stop_last(nodes: &mut Vec<TestNode>) -> NodeId {
    let stopped = nodes.pop().expect("a node to stop");
    stopped.me
}

impl std::ops::Deref for TestNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

/// Short timings, no anti-entropy loop, and a seed address nothing listens on (a refresh fails at
/// once and keeps the view).
pub(crate) fn config() -> NodeConfig {
    NodeConfig {
        seed: "127.0.0.1:1".into(),
        request_timeout: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(100),
        anti_entropy_interval: Duration::ZERO,
        ..NodeConfig::default()
    }
}

/// One member per state in `states`, ids 1, 2, ..., tokens interleaved so each owns an equal share.
pub(crate) async fn cluster(states: &[NodeState], config: NodeConfig) -> Vec<TestNode> {
    cluster_of_releases(states, config, &[]).await
}

/// [`cluster`], where the nodes refuse the message kinds `unknown` as a node of a release before
/// them does.
pub(crate) async fn cluster_of_releases(
    states: &[NodeState],
    config: NodeConfig,
    unknown: &[wire::Kind],
) -> Vec<TestNode> {
    build(states, config, unknown, &|| Arc::new(MemoryEngine::new())).await
}

/// [`cluster`], with engines that keep no digests, as an engine of another kind might: their
/// anti-entropy scans.
pub(crate) async fn cluster_scanning(states: &[NodeState], config: NodeConfig) -> Vec<TestNode> {
    build(states, config, &[], &|| Arc::new(Unkept(MemoryEngine::new()))).await
}

/// [`cluster`], with engines that count the value bytes they hand out, one per node in order.
pub(crate) async fn cluster_counting(states: &[NodeState], config: NodeConfig) -> (Vec<TestNode>, Vec<Arc<Counting>>) {
    let made = Mutex::new(Vec::new());
    let engine = || {
        let e = Arc::new(Counting::new());
        made.lock().expect("engines").push(e.clone());
        e as Arc<dyn Engine>
    };
    let nodes = build(states, config, &[], &engine).await;
    (nodes, made.into_inner().expect("engines"))
}

async fn build(
    states: &[NodeState],
    config: NodeConfig,
    unknown: &[wire::Kind],
    engine: &(dyn Fn() -> Arc<dyn Engine> + Sync),
) -> Vec<TestNode> {
    let mut listeners = Vec::new();
    for _ in states {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind a test node"));
    }
    const VNODES: u64 = 16;
    let n = states.len() as u64;
    let step = u64::MAX / (n * VNODES);
    let nodes: Vec<Member> = states
        .iter()
        .zip(&listeners)
        .enumerate()
        .map(|(i, (&state, l))| Member {
            id: NodeId(i as u64 + 1),
            addr: l.local_addr().expect("address").to_string(),
            tokens: (0..VNODES).map(|v| (v * n + i as u64) * step).collect(),
            state,
            last_seen_ms: 0,
        })
        .collect();
    let view = View { epoch: 1, nodes: nodes.clone() };
    let max_frame = wire::frame_limit(config.max_key_bytes, config.max_value_bytes);
    let mut out = Vec::new();
    for (m, listener) in nodes.into_iter().zip(listeners) {
        let topo = Arc::new(Topology::new(view.clone(), m.id, config.replicas));
        let life = if m.state == NodeState::Joining { Life::Joining } else { Life::Normal };
        let peers = Peers::new(config.request_timeout, &config.cluster_name, None, max_frame, None, false);
        let hints = Hints::new(config.max_hints, config.hint_max_age);
        let node =
            Node::new(config.clone(), m.id, m.addr, engine(), None, peers, hints, topo, life, watch::channel(None).0);
        if life == Life::Normal {
            // As a member of a real cluster is once its join ended (or it started the cluster):
            // complete for its ranges (see `replication/settled.rs`).
            node.mark_complete();
        }
        let (stop, stopped) = watch::channel(false);
        let answered = Arc::new(AtomicU64::new(0));
        let handler = Arc::new(Release {
            current: Internal(node.clone()),
            unknown: unknown.to_vec(),
            answered: answered.clone(),
        });
        tokio::spawn(serve(handler, listener, max_frame, stopped));
        out.push(TestNode { node, stop, answered });
    }
    out
}

/// A memory engine that keeps no digests (`Engine::digests` is `None`): the required methods
/// and the generation, as `dkv_storage`'s own tests wrap one to run the trait's defaults.
struct Unkept(MemoryEngine);

impl Engine for Unkept {
    fn get(&self, hash: u64, key: &[u8]) -> StorageResult<Option<Entry>> {
        self.0.get(hash, key)
    }
    fn apply(&self, hash: u64, key: &[u8], entry: Entry) -> StorageResult<Applied> {
        self.0.apply(hash, key, entry)
    }
    fn remove_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool> {
        self.0.remove_if(hash, key, version)
    }
    fn scan(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> StorageResult<Option<Cursor>> {
        self.0.scan(start, end_hash, limit, out)
    }
    fn purge_tombstones(&self, before_ts: u64) -> StorageResult<u64> {
        self.0.purge_tombstones(before_ts)
    }
    fn expire_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool> {
        self.0.expire_if(hash, key, version)
    }
    fn stats(&self) -> EngineStats {
        self.0.stats()
    }
    fn generation(&self) -> Option<u64> {
        self.0.generation()
    }
}

/// A memory engine, whole (kept digests, keys-only scans), that counts the value bytes its
/// lookups and scans hand out: to show which passes read values they do not need.
pub(crate) struct Counting {
    inner: MemoryEngine,
    pub value_bytes: AtomicU64,
}

impl Counting {
    pub(crate) fn new() -> Counting {
        Counting { inner: MemoryEngine::new(), value_bytes: AtomicU64::new(0) }
    }

    fn count<'a>(&self, entries: impl Iterator<Item = &'a Entry>) {
        let bytes: usize = entries.map(Entry::value_len).sum();
        self.value_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Engine for Counting {
    fn get(&self, hash: u64, key: &[u8]) -> StorageResult<Option<Entry>> {
        let entry = self.inner.get(hash, key)?;
        self.count(entry.iter());
        Ok(entry)
    }
    fn apply(&self, hash: u64, key: &[u8], entry: Entry) -> StorageResult<Applied> {
        self.inner.apply(hash, key, entry)
    }
    fn remove_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool> {
        self.inner.remove_if(hash, key, version)
    }
    fn scan(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> StorageResult<Option<Cursor>> {
        let from = out.len();
        let next = self.inner.scan(start, end_hash, limit, out)?;
        self.count(out[from..].iter().map(|(_, _, e)| e));
        Ok(next)
    }
    fn scan_where(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        max_bytes: usize,
        keep: &mut dyn FnMut(u64) -> bool,
        out: &mut Vec<(u64, Bytes, Entry)>,
    ) -> StorageResult<Option<Cursor>> {
        let from = out.len();
        let next = self.inner.scan_where(start, end_hash, limit, max_bytes, keep, out)?;
        self.count(out[from..].iter().map(|(_, _, e)| e));
        Ok(next)
    }
    fn scan_keys(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        max_bytes: usize,
        keep: &mut dyn FnMut(u64) -> bool,
        out: &mut Vec<KeyVersion>,
    ) -> StorageResult<Option<Cursor>> {
        self.inner.scan_keys(start, end_hash, limit, max_bytes, keep, out)
    }
    fn scan_versions(
        &self,
        start: Option<&Cursor>,
        end_hash: u64,
        limit: usize,
        out: &mut Vec<(u64, Version)>,
    ) -> StorageResult<Option<Cursor>> {
        self.inner.scan_versions(start, end_hash, limit, out)
    }
    fn purge_tombstones(&self, before_ts: u64) -> StorageResult<u64> {
        self.inner.purge_tombstones(before_ts)
    }
    fn expire_if(&self, hash: u64, key: &[u8], version: Version) -> StorageResult<bool> {
        self.inner.expire_if(hash, key, version)
    }
    fn stats(&self) -> EngineStats {
        self.inner.stats()
    }
    fn generation(&self) -> Option<u64> {
        self.inner.generation()
    }
    fn digests(&self) -> Option<&Digests> {
        self.inner.digests()
    }
}

/// A node's transport handler, without the message kinds of a later release than its own; it
/// counts the bytes it answers.
struct Release {
    current: Internal,
    unknown: Vec<wire::Kind>,
    answered: Arc<AtomicU64>,
}

impl dkv_transport::Handler for Release {
    async fn handle(&self, kind: u8, body: Bytes) -> Result<Vec<u8>, dkv_transport::Refusal> {
        if self.unknown.iter().any(|k| *k as u8 == kind) {
            let why = format!("unknown message kind {kind}: is the peer of another release?");
            return Err(dkv_transport::Refusal::new(400, why));
        }
        let answer = self.current.handle(kind, body).await;
        if let Ok(bytes) = &answer {
            self.answered.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        answer
    }
}

async fn serve(handler: Arc<Release>, listener: TcpListener, max_frame: usize, mut stop: watch::Receiver<bool>) {
    let node = &handler.current.0;
    let config = Arc::new(dkv_transport::ServerConfig {
        auth: dkv_transport::Auth { cluster: node.config.cluster_name.clone(), secret: None },
        max_frame,
        max_answer: max_frame,
        max_concurrent: 1024,
        max_request_time: node.config.request_timeout * 3,
        handshake_timeout: node.config.request_timeout,
    });
    loop {
        let stream = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        tokio::spawn(dkv_transport::serve(stream, handler.clone(), config.clone(), stop.clone()));
    }
}

/// A value entry of `len` bytes at version `ts`, filled with a byte derived from both.
pub(crate) fn value(ts: u64, len: usize) -> Entry {
    Entry::value(Version { ts, node: 1 }, Bytes::from(vec![(ts % 251) as u8; len]))
}

/// Store `entry` under `key` straight into `node`'s engine (no replication).
pub(crate) fn put_local(node: &Node, key: &[u8], entry: Entry) {
    node.engine.apply(dkv_placement::key_hash(key), key, entry).expect("memory engine apply");
}

/// What `node` itself stores under `key`.
pub(crate) fn local(node: &Node, key: &[u8]) -> Option<Entry> {
    node.engine.get(dkv_placement::key_hash(key), key).expect("memory engine get")
}
