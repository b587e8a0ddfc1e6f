//! The key service: `get`, `put` and `delete`, the same for every front end.
//!
//! A put may carry a deadline (ms since the Unix epoch) after which the value reads as absent;
//! a read answers the value with its deadline ([`Found`]), so `TTL` is a read like `GET`.
//! Relative TTLs become deadlines in the front end, on the clock of the node the client asked
//! (see `replication/expiry.rs` for what clock skew does to them).
//!
//! HTTP and RESP parse their protocol, call one of these and render the answer; nothing here
//! knows either protocol. Each call checks the key and value against the limits, counts itself,
//! then goes where the router says: coordinated here, or, for a read of a key this node holds no
//! copy of, forwarded as a message to a replica (the first that answers), which serves it as if
//! it had come there. Errors stay typed all the way ([`NodeError`], a quorum failure with each
//! replica's answer, even across a forward) until the front end renders them.
//!
//! A write is always coordinated by the node the client asked, replica or not (see `router.rs`
//! for why a forwarded write is not safe). The replica calls a coordinator sends all carry the
//! version it stamped once, so a copy that arrives late is older than what followed it, and
//! loses.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dkv_membership::NodeId;
use dkv_placement::key_hash;
use dkv_storage::Entry;

use crate::error::{NodeError, PeerError};
use crate::front::router::{route, Route};
use crate::life::metrics::{Api, Started};
use crate::life::state::Node;
use crate::life::stats::bump;
use crate::replication::batch::unknown_kind;
use crate::replication::consistency::Level;
use crate::replication::quorum::Running;
use crate::replication::shape::Shape;
use crate::transport::wire::{ForwardReply, ForwardRequest, Found, Head, Kind, Length, Op};

/// One key request, as a front end parsed it.
pub struct KeyRequest {
    pub op: Op,
    pub key: Bytes,
    /// The value of a `Put`.
    pub value: Option<Bytes>,
    /// A `Put`'s deadline, ms since the Unix epoch; `None`: the value never expires.
    pub expires: Option<u64>,
    /// `r=` for a get, `w=` for a put or delete; the node's default when `None`.
    pub level: Option<Level>,
}

impl KeyRequest {
    pub fn new(op: Op, key: Bytes, value: Option<Bytes>, level: Option<Level>) -> Self {
        KeyRequest { op, key, value, expires: None, level }
    }
}

impl Node {
    /// The value of `key`, `None` when absent, deleted or expired.
    pub async fn get(&self, api: Api, key: Bytes, level: Option<Level>) -> Result<Option<Bytes>, NodeError> {
        Ok(self.read(api, key, level).await?.map(|f| f.value))
    }

    /// The value of `key` with its deadline, `None` when absent, deleted or expired.
    pub async fn read(&self, api: Api, key: Bytes, level: Option<Level>) -> Result<Option<Found>, NodeError> {
        self.serve(api, KeyRequest::new(Op::Get, key, None, level)).await
    }

    /// Store `value` under `key`.
    pub async fn put(&self, api: Api, key: Bytes, value: Bytes, level: Option<Level>) -> Result<(), NodeError> {
        self.put_expiring(api, key, value, None, level).await
    }

    /// Store `value` under `key` until `expires` (ms since the Unix epoch; `None`: for good). A
    /// deadline already past deletes the key, as Redis does.
    pub async fn put_expiring(
        &self,
        api: Api,
        key: Bytes,
        value: Bytes,
        expires: Option<u64>,
        level: Option<Level>,
    ) -> Result<(), NodeError> {
        let req = KeyRequest { op: Op::Put, key, value: Some(value), expires, level };
        self.serve(api, req).await.map(drop)
    }

    /// Delete `key` (succeeds also when it did not exist).
    pub async fn delete(&self, api: Api, key: Bytes, level: Option<Level>) -> Result<(), NodeError> {
        self.serve(api, KeyRequest::new(Op::Delete, key, None, level)).await.map(drop)
    }

    /// The length and deadline of `key`'s value, `None` when absent, deleted or expired: a read
    /// that asks the replicas for the entry's head, not its value (see `replication/shape.rs`).
    pub async fn length(&self, api: Api, key: Bytes, level: Option<Level>) -> Result<Option<Length>, NodeError> {
        self.serve_shaped::<Head>(api, KeyRequest::new(Op::Get, key, None, level)).await
    }

    /// Check, count and run one request from a front end; record its outcome in the metrics.
    pub async fn serve(&self, api: Api, req: KeyRequest) -> Result<Option<Found>, NodeError> {
        self.serve_shaped::<Entry>(api, req).await
    }

    /// [`Node::serve`], a read answering the shape `S`.
    pub async fn serve_shaped<S: Shape>(&self, api: Api, req: KeyRequest) -> Result<Option<S::Live>, NodeError> {
        let started = Started::now();
        let op = req.op;
        let result = self.run::<S>(req, 0).await;
        let status = match &result {
            Ok(Some(_)) => 200,
            Ok(None) if op == Op::Get => 404,
            Ok(None) => 204,
            Err(e) => e.status().as_u16(),
        };
        self.metrics.observe(api, op, status, started.elapsed());
        result
    }

    /// A request another node forwarded here, a read answering the shape `S`.
    pub async fn serve_forwarded<S: Shape>(&self, req: ForwardRequest) -> ForwardReply<S::Live> {
        let hops = req.hops;
        let (op, key, value, expires, level) = (req.op, req.key, req.value, req.expires, req.level);
        self.run::<S>(KeyRequest { op, key, value, expires, level }, hops).await
    }

    async fn run<S: Shape>(&self, req: KeyRequest, hops: u8) -> Result<Option<S::Live>, NodeError> {
        self.busy_poll.noticed();
        self.check(&req)?;
        bump(match req.op {
            Op::Get => &self.stats.gets,
            Op::Put => &self.stats.puts,
            Op::Delete => &self.stats.deletes,
        });
        let hash = key_hash(&req.key);
        match self.with_topology(|t| route(t, hash, req.op, hops)) {
            Route::Unavailable(why) => Err(NodeError::Unavailable(why)),
            // A consistency level given is checked against the replicas: the full path.
            Route::Alone if req.level.is_none() => self.read_alone::<S>(hash, &req.key),
            Route::Alone | Route::Local => self.coordinate::<S>(req).await,
            // The cold path: boxed, so the local path's future stays small.
            Route::Forward(_) => Box::pin(self.forward::<S>(req, hash, hops)).await,
        }
    }

    fn check(&self, req: &KeyRequest) -> Result<(), NodeError> {
        self.check_parts(req.op, &req.key, req.value.as_ref())
    }

    /// Whether a request of `op` on `key` (with `value`) would be refused before it ran, and why:
    /// what a command over many keys checks of all of them before it changes any.
    pub(crate) fn check_parts(&self, op: Op, key: &[u8], value: Option<&Bytes>) -> Result<(), NodeError> {
        let max_key = self.config.max_key_bytes;
        if key.is_empty() {
            return Err(NodeError::BadRequest("empty key: keys must be at least one byte".into()));
        }
        if key.len() > max_key {
            return Err(NodeError::TooLarge(format!(
                "key of {} bytes is over the limit of {max_key} bytes",
                key.len()
            )));
        }
        let max_value = self.config.max_value_bytes;
        match value {
            Some(v) if v.len() > max_value => {
                Err(NodeError::TooLarge(format!("value larger than the limit of {max_value} bytes")))
            }
            None if op == Op::Put => Err(NodeError::BadRequest("a put needs a value".into())),
            _ => Ok(()),
        }
    }

    async fn coordinate<S: Shape>(&self, req: KeyRequest) -> Result<Option<S::Live>, NodeError> {
        match req.op {
            Op::Get => self.coordinate_read::<S>(req.key, req.level).await,
            // A deadline already past (`EXPIREAT` in the past, say) is a delete, as in Redis.
            Op::Put if req.expires.is_some_and(|t| t < self.cluster_wall_ms()) => {
                self.coordinate_write(req.key, None, None, req.level).await.map(|()| None)
            }
            Op::Put => self.coordinate_write(req.key, req.value, req.expires, req.level).await.map(|()| None),
            Op::Delete => self.coordinate_write(req.key, None, None, req.level).await.map(|()| None),
        }
    }

    /// Pass a read to one of the key's replicas, the first that answers: a replica that is down
    /// (crashed, not yet declared dead) or stalled must not make its keys unavailable. If none
    /// answers, refresh the view once and route again. (Writes are never forwarded, since a copy
    /// run late would be stamped late: see the module doc.)
    async fn forward<S: Shape>(&self, req: KeyRequest, hash: u64, hops: u8) -> Result<Option<S::Live>, NodeError> {
        let mut errors = Vec::new();
        let (op, key, value, expires, level) = (req.op, req.key, req.value, req.expires, req.level);
        let mut msg = ForwardRequest { epoch: 0, hops: hops + 1, op, key, value, expires, level };
        for attempt in 0..2 {
            let topo = self.topology();
            match route(&topo, hash, msg.op, hops) {
                Route::Unavailable(why) => return Err(NodeError::Unavailable(why)),
                Route::Alone | Route::Local => {
                    let (op, key, value, expires, level) = (msg.op, msg.key, msg.value, msg.expires, msg.level);
                    let req = KeyRequest { op, key, value, expires, level };
                    return self.coordinate::<S>(req).await;
                }
                Route::Forward(_) => {}
            }
            msg.epoch = topo.epoch();
            let mut replicas: Vec<(NodeId, &str)> = topo
                .placement(hash)
                .read
                .into_iter()
                .filter_map(|id| topo.member(id).map(|m| (id, m.addr.as_str())))
                .collect();
            // Replicas silent for longer than they usually take go last (see `latency.rs`), and
            // the first is waited for as long as it usually takes before the next is asked too.
            let after = self.latencies.plan(&mut replicas, |&(id, _)| id, 1);
            let asked = Instant::now();
            if let Some(reply) = self.forward_to::<S>(&replicas, after, &msg, &mut errors).await {
                return reply;
            }
            if attempt == 0 {
                self.refresh().await;
                // The same replicas again only when asking them was quick (a refused connection,
                // which a restart mends) or the view changed: ones that stalled past the forward
                // timeout held the read a second window (15 s against a paused replica with
                // N=1, where the README says one: found by a hunt, 2026-12-07).
                if asked.elapsed() >= self.forward_timeout() && self.topology().epoch() == topo.epoch() {
                    break;
                }
            }
        }
        Err(NodeError::Unavailable(format!("no replica of the key could be reached: {}", errors.join("; "))))
    }

    /// Send `msg` to the first of `replicas`; ask the next one as well when one fails, or when it
    /// takes longer than `after`, what it usually takes (it may be stalled: see `latency.rs`). The first
    /// answer wins; `None` when none answered, with their errors in `errors`.
    async fn forward_to<'r, S: Shape>(
        &self,
        replicas: &[(NodeId, &'r str)],
        after: Duration,
        msg: &ForwardRequest,
        errors: &mut Vec<String>,
    ) -> Option<ForwardReply<S::Live>> {
        let timeout = self.forward_timeout();
        // Each call owns what it uses: one that loses to a hedge runs on to its end in a task of
        // its own (see `quorum::Running`), so the peer's answer still ends its silence (see
        // `latency.rs`). Dropped, a healthy peer that was merely slow once stayed suspect.
        let call = |(id, addr): (NodeId, &'r str)| {
            let (node, msg, addr) = (self.clone(), msg.clone(), addr.to_owned());
            async move {
                bump(&node.stats.forwarded);
                let asked = node.latencies.asked(id);
                let mut answer =
                    node.peers.call_within::<_, ForwardReply<S::Live>>(&addr, S::FORWARD, &msg, timeout).await;
                if S::FORWARD != Kind::Forward && answer.as_ref().is_err_and(unknown_kind) {
                    // A replica of a release before reads of heads: it answers the whole value.
                    let whole = node.peers.call_within::<_, ForwardReply>(&addr, Kind::Forward, &msg, timeout).await;
                    answer = whole.map(|reply| reply.map(|found| found.map(S::of_found)));
                }
                // A refusal is an answer too: the peer is not silent.
                if answer.is_ok() || matches!(answer, Err(PeerError::Refused { .. })) {
                    node.latencies.answered(id, asked);
                }
                (addr, answer)
            }
        };
        let mut next = replicas.iter().copied();
        let mut running = Running::new();
        let first = next.next()?;
        running.push(call(first));
        let hedge = tokio::time::sleep(after);
        tokio::pin!(hedge);
        loop {
            tokio::select! {
                answer = running.next(), if !running.is_empty() => match answer {
                    // A replica that cannot coordinate now (its lease ran out while it was
                    // paused, its view is behind) says so with a 503; another replica may well
                    // answer. Passed on as final, it failed reads that two healthy replicas could
                    // serve (found by a hunt, 2026-12-07). The last one's is passed on as it is.
                    (addr, Ok(Err(NodeError::Unavailable(why)))) if next.len() > 0 || !running.is_empty() => {
                        tracing::debug!("forward to {addr}: the replica cannot serve it now: {why}");
                        errors.push(format!("{addr}: {why}"));
                        if let Some(r) = next.next() {
                            running.push(call(r));
                        }
                    }
                    (_, Ok(reply)) => return Some(self.judged_here::<S>(reply)),
                    (addr, Err(e)) => {
                        tracing::debug!("forward to {addr} failed: {e}");
                        errors.push(e.to_string());
                        match next.next() {
                            Some(r) => running.push(call(r)),
                            None if running.is_empty() => return None,
                            None => {}
                        }
                    }
                },
                _ = &mut hedge, if next.len() > 0 => {
                    if let Some(r) = next.next() {
                        bump(&self.stats.hedged);
                        running.push(call(r));
                    }
                    hedge.as_mut().reset(tokio::time::Instant::now() + after);
                }
                else => return None, // nothing running and nobody left to ask
            }
        }
    }

    /// A forwarded read's answer judged again by this node's clock. The replica judged the
    /// deadline by its own, which may be behind by up to `--max-clock-offset`: the value then
    /// read as present through a node whose clock was right, past its deadline (33–450 ms with a
    /// replica 450 ms behind, and `PTTL` `0`: found by a hunt, 2026-12-07). A replica whose clock
    /// is ahead still answers "absent" early: it sends no value it judged expired.
    fn judged_here<S: Shape>(&self, reply: ForwardReply<S::Live>) -> ForwardReply<S::Live> {
        match reply {
            Ok(Some(live)) if S::live_expires(&live).is_some_and(|t| self.cluster_wall_ms() > t) => Ok(None),
            reply => reply,
        }
    }

    /// A forward waits longer than the replica's own quorum deadline, so the replica's answer
    /// (a 503 with its reasons, say) arrives instead of a bare timeout.
    fn forward_timeout(&self) -> Duration {
        self.config.request_timeout + self.config.request_timeout / 2
    }
}
