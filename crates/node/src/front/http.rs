//! The public HTTP API (DESIGN §2) and the server that carries it.
//!
//! A thin adapter over the key service (`service.rs`): each handler parses the query (key,
//! `r=`/`w=`), reads the body (refused from `Content-Length` before any of it is read when it is
//! over the value limit), calls the service and renders its answer. Errors become one plain-text
//! line with the status the error's kind calls for; every answer, error or not, is signed with
//! the node's id and every error has its line, whoever made it (`answers.rs`). The admin
//! endpoints (`/admin/stop`, `/admin/leave`) are here too, behind the cluster secret; the key
//! endpoints are behind the client password when one is set (`auth.rs`, which lists the open ones);
//! node-to-node messages are not HTTP (see `transport/`), though they arrive on the same port
//! (`transport/listener.rs`).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use dkv_membership::api::SECRET_HEADER;
use dkv_transport::secret_matches;
use futures_util::future::{BoxFuture, Either};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

use crate::error::NodeError;
use crate::front::answers;
use crate::front::limits::{Charge, Refusal, CHARGE_FROM};
use crate::front::query;
use crate::front::service::KeyRequest;
use crate::life::metrics::Api;
use crate::life::state::{Life, Node, Stop};
use crate::replication::expiry;
use crate::transport::listener::HttpConn;
use crate::transport::wire::{Head, Op};

pub async fn serve(node: Node, conns: mpsc::Receiver<HttpConn>, stop: watch::Receiver<bool>) {
    let guard = node.guard.clone();
    let me = node.me;
    let secret: Option<Arc<str>> = node.config.cluster_secret.as_deref().map(Arc::from);
    let auth = node.auth.clone();
    let app = Router::new()
        .route("/admin/stop", post(admin_stop))
        .route("/admin/leave", post(admin_leave))
        .route_layer(middleware::from_fn_with_state(secret, require_secret))
        .route("/put", put(put_key))
        .route("/get", get(get_key).head(head_key))
        .route("/delete", delete(delete_key))
        .route("/scan", get(crate::front::keyspace::scan))
        .route("/local", get(crate::front::keyspace::local))
        .route("/ttl", get(ttl_key))
        .route("/health", get(health))
        .route("/cluster", get(cluster))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::front::openapi::serve))
        .route_layer(middleware::from_fn(answers::no_parameters))
        .method_not_allowed_fallback(answers::wrong_method)
        .fallback(answers::unknown_path)
        .layer(middleware::from_fn_with_state(auth, crate::front::auth::http_check))
        .layer(middleware::from_fn_with_state(answers::node_header(node.me), answers::stamp))
        .with_state(node.clone());
    let front = Front { stamp: answers::node_header(node.me), node, router: TowerToHyperService::new(app), peer: None };
    let for_connection = move |peer: std::net::SocketAddr| Front { peer: Some(peer.ip()), ..front.clone() };
    crate::front::http_conn::serve(for_connection, conns, guard, stop, me).await;
}

/// The service hyper calls for each request. The key endpoints (`/get`, `/put`, `/delete`,
/// `/ttl`, with their methods) go straight to [`key_request`]: the router and its three layers
/// (each boxing a future and cloning a service per request) cost a one-node GET about 15% of its
/// CPU time (17.3 against 14.8 µs per request, 2026-12-01), and those endpoints need only two of
/// the layers' jobs, done here inline: the password check and the `x-dkv-node` header (their
/// errors always carry a line). Everything else, a wrong method on a key path included, goes
/// through the router, which answers it as before.
#[derive(Clone)]
struct Front {
    node: Node,
    stamp: HeaderValue,
    router: TowerToHyperService<Router>,
    /// The connection's client, for the password check (`guesses.rs`).
    peer: Option<std::net::IpAddr>,
}

type Routed = <TowerToHyperService<Router> as Service<hyper::Request<Incoming>>>::Future;

impl Service<hyper::Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, Routed>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let (op, wanted) = match (req.method(), req.uri().path()) {
            (&Method::GET, "/get") => (Op::Get, Wanted::Value),
            (&Method::HEAD, "/get") => (Op::Get, Wanted::Length),
            (&Method::PUT, "/put") => (Op::Put, Wanted::Value),
            (&Method::DELETE, "/delete") => (Op::Delete, Wanted::Value),
            (&Method::GET, "/ttl") => (Op::Get, Wanted::Deadline),
            _ => {
                let mut req = req;
                if let Some(ip) = self.peer {
                    req.extensions_mut().insert(crate::front::auth::ClientAddr(ip));
                }
                return Either::Right(self.router.call(req));
            }
        };
        let (node, stamp, peer) = (self.node.clone(), self.stamp.clone(), self.peer);
        Either::Left(Box::pin(async move {
            let refused =
                crate::front::auth::http_refusal(&node.auth, peer, req.method(), req.uri().path(), req.headers());
            let mut answer = match refused {
                Some(refused) => {
                    let (parts, body) = req.into_parts();
                    drain_small(&parts.headers, body).await;
                    refused
                }
                None => key_request(node, op, req.map(Body::new), wanted).await,
            };
            if wanted == Wanted::Length {
                answer = without_body(answer);
            }
            answer.headers_mut().insert(answers::NODE_HEADER.clone(), stamp);
            Ok(answer)
        }))
    }
}

/// Node-to-node and admin endpoints only for holders of the cluster secret, when one is set.
async fn require_secret(State(secret): State<Option<Arc<str>>>, req: Request, next: Next) -> Response {
    let given = req.headers().get(SECRET_HEADER).map(|v| v.as_bytes());
    if secret_matches(secret.as_deref(), given) {
        return next.run(req).await;
    }
    (StatusCode::FORBIDDEN, "missing or wrong cluster secret: internal endpoints need --cluster-secret\n")
        .into_response()
}

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        (self.status(), format!("{self}\n")).into_response()
    }
}

async fn put_key(State(node): State<Node>, req: Request) -> Response {
    key_request(node, Op::Put, req, Wanted::Value).await
}

async fn get_key(State(node): State<Node>, req: Request) -> Response {
    key_request(node, Op::Get, req, Wanted::Value).await
}

/// Read and drop the body of a request refused before its body was read, when it is small, so
/// that the answer goes out after it. An HTTP/2 stream answered while its client still sends is
/// reset with `NO_ERROR`, as RFC 9113 allows, and curl then reports `(92) Stream error` in place
/// of the `401`, `403` or `400` it was sent: half the time for a PUT without a password (found by
/// a hunt, 2026-12-07). A body over [`DRAIN`] bytes, or one that takes longer than
/// [`DRAIN_TIME`], is left: the refusal goes out at once, as a `413`'s does.
async fn drain_small<B: http_body::Body + Unpin>(headers: &HeaderMap, body: B) {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > DRAIN) || body.is_end_stream() {
        return;
    }
    let drained = async {
        let mut body = body;
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| bytes::Buf::remaining(d) as u64);
            if read > DRAIN {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drained).await;
}

/// The most of a refused request's body [`drain_small`] reads.
const DRAIN: u64 = 64 * 1024;
/// The longest [`drain_small`] waits for it.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_millis(500);

/// A `HEAD` answer: its headers (with the `Content-Length` its body had), and no body. Over
/// HTTP/1.1 hyper drops a `HEAD` answer's body itself; over HTTP/2 a `404`, `400` or `401` with
/// its line of text reset the stream (`PROTOCOL_ERROR`; found by a hunt, 2026-12-07).
fn without_body(answer: Response) -> Response {
    let (mut parts, body) = answer.into_parts();
    if let Some(len) = http_body::Body::size_hint(&body).exact() {
        parts.headers.entry(header::CONTENT_LENGTH).or_insert_with(|| HeaderValue::from(len));
    }
    Response::from_parts(parts, Body::empty())
}

async fn delete_key(State(node): State<Node>, req: Request) -> Response {
    key_request(node, Op::Delete, req, Wanted::Value).await
}

/// `HEAD /get`: a read that answers the value's length instead of the value.
async fn head_key(State(node): State<Node>, req: Request) -> Response {
    key_request(node, Op::Get, req, Wanted::Length).await
}

/// `GET /ttl`: a read that answers the key's deadline instead of its value.
async fn ttl_key(State(node): State<Node>, req: Request) -> Response {
    key_request(node, Op::Get, req, Wanted::Deadline).await
}

/// What a key request answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// A read's value; a write's `204`.
    Value,
    /// A read's deadline ([`ttl_answer`]): `GET /ttl`.
    Deadline,
    /// A read's length as `Content-Length`, without the value: `HEAD /get`.
    Length,
}

/// One key request, answered as `wanted` says. A read of a deadline or a length reads the
/// entries' heads, not their values (see `replication/shape.rs`).
async fn key_request(node: Node, op: Op, req: Request, wanted: Wanted) -> Response {
    let (parts, body) = req.into_parts();
    let refused = |e: NodeError| {
        node.metrics.observe(Api::Http, op, e.status().as_u16(), std::time::Duration::ZERO);
        e.into_response()
    };
    let asked = (|| {
        let mut params = query::parse(parts.uri.query(), parts.uri.path(), answers::params(parts.uri.path()))?;
        let key = params.key(node.config.max_key_bytes)?;
        let level = params.level(if op == Op::Get { "r" } else { "w" })?;
        // A relative TTL becomes a deadline here, on the cluster's clock as this node knows it
        // (`Node::cluster_wall_ms`; see `expiry.rs`).
        let expires = match params.ttl()? {
            Some(ttl) => Some(
                expiry::deadline_after(node.cluster_wall_ms(), ttl)
                    .ok_or_else(|| NodeError::BadRequest("ttl too large: keep it under 290 million years".into()))?,
            ),
            None => None,
        };
        Ok::<_, NodeError>((key, level, expires))
    })();
    let (key, level, expires) = match asked {
        Ok(asked) => asked,
        Err(e) => {
            drain_small(&parts.headers, body).await;
            return refused(e);
        }
    };
    let (value, _charge) = match op {
        Op::Put => match read_value(&node, &parts, body).await {
            Ok((value, charge)) => (Some(value), Some(charge)),
            Err(e) => return refused(e),
        },
        _ => (None, None),
    };
    let req = KeyRequest { op, key, value, expires, level };
    if wanted != Wanted::Value {
        // The cold path, boxed: the future of the hot one stays as small as it was.
        return Box::pin(head_request(&node, req, wanted)).await;
    }
    match node.serve(Api::Http, req).await {
        Ok(Some(v)) if v.value.len() < CHARGE_FROM => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], v.value).into_response()
        }
        Ok(Some(v)) => charged_value(&node, v.value),
        Ok(None) if op == Op::Get => not_found(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// A large value's answer, charged to the client memory budget (`--max-client-memory`) until it
/// has been handed to the connection, and handed over a piece at a time, as the connection takes
/// them: a client that asks and does not read holds its share of the budget, not memory outside
/// it. Until 2026-12-06 such answers were bounded in time alone (`--idle-timeout`), and an HTTP/2
/// client could leave 256 answers of 16 MiB unread on one connection. Over the budget, a `503`
/// that says so, as for a large write.
fn charged_value(node: &Node, value: Bytes) -> Response {
    charged_body(node, value, "application/octet-stream")
}

/// An answer's body charged to the client memory budget until the connection has taken it, as
/// [`charged_value`]'s (a scan page's too).
pub fn charged_body(node: &Node, value: Bytes, content_type: &'static str) -> Response {
    /// What the connection is handed at once: its write buffer, or an HTTP/2 stream's window,
    /// holds about this much past what it has sent.
    const PIECE: usize = 64 * 1024;
    let len = value.len();
    let charge = match node.guard.charge(len) {
        Ok(charge) => charge,
        Err(refused) => return NodeError::Unavailable(refused.0).into_response(),
    };
    let pieces = (0..len).step_by(PIECE).map(move |at| {
        let _held = &charge; // given back when the last piece has gone, or the answer was dropped
        Ok::<_, Infallible>(http_body::Frame::data(value.slice(at..(at + PIECE).min(len))))
    });
    let headers = [(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_LENGTH, len.to_string())];
    (headers, Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(pieces)))).into_response()
}

/// A read of which only the deadline or the length is needed: the value stays on the replicas.
async fn head_request(node: &Node, req: KeyRequest, wanted: Wanted) -> Response {
    match node.serve_shaped::<Head>(Api::Http, req).await {
        Ok(Some(length)) if wanted == Wanted::Deadline => ttl_answer(node, length.expires),
        Ok(Some(length)) => {
            let headers = [
                (header::CONTENT_TYPE, "application/octet-stream".into()),
                (header::CONTENT_LENGTH, length.len.to_string()),
            ];
            (headers, Body::empty()).into_response()
        }
        Ok(None) => not_found(),
        Err(e) => e.into_response(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "key not found\n").into_response()
}

/// A live key's deadline as JSON: `ttl_ms` left and `expires_at_ms` (ms since the Unix epoch),
/// both `null` for a key that does not expire.
fn ttl_answer(node: &Node, expires: Option<u64>) -> Response {
    let left = expires.map(|t| expiry::ms_left(t, node.cluster_wall_ms()));
    Json(json!({ "ttl_ms": left, "expires_at_ms": expires })).into_response()
}

async fn metrics(State(node): State<Node>) -> Response {
    ([(header::CONTENT_TYPE, crate::life::metrics::CONTENT_TYPE)], crate::life::metrics::render(&node)).into_response()
}

/// Read a request body of at most `max_value_bytes`, refusing from the declared length first so an
/// oversized value is never buffered. The bytes it may take are charged to the client memory
/// budget before any is read (the whole limit when the length is not declared), and the body
/// must arrive within `--read-timeout`. The charge is held until the request is answered.
async fn read_value(node: &Node, parts: &http::request::Parts, body: Body) -> Result<(Bytes, Charge), NodeError> {
    let (headers, max) = (&parts.headers, node.config.max_value_bytes);
    let too_large = || NodeError::TooLarge(format!("value larger than the limit of {max} bytes"));
    let declared = header_u64(headers, header::CONTENT_LENGTH.as_str())?;
    // An HTTP/1.0 request carries its body's length (RFC 1945: it has no chunks); without it
    // the body reads as empty, and a value sent after the headers was dropped while the empty one
    // was stored and acknowledged (found by a hunt, 2026-12-08). An HTTP/1.1 PUT without a
    // length or chunks has an empty body by HTTP's rules, as clients send an empty value (hyper
    // among them): bytes after its headers are a next request, which fails to parse.
    if declared.is_none() && parts.version < http::Version::HTTP_11 {
        return Err(NodeError::BadRequest(
            "an HTTP/1.0 PUT needs a Content-Length (0 for an empty value): without it the body reads as empty".into(),
        ));
    }
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let expected = declared.map_or(max, |len| len as usize);
    let mut charge = node.guard.charge(expected).map_err(|e| NodeError::Unavailable(e.0))?;
    let timeout = node.guard.limits.read_timeout;
    let mut collect = std::pin::pin!(Limited::new(body, max).collect());
    // A small body has usually arrived with the headers: then no timer (and no clock read).
    let read = match futures_util::poll!(collect.as_mut()) {
        std::task::Poll::Ready(read) => read,
        std::task::Poll::Pending => tokio::time::timeout(timeout, collect).await.map_err(|_| {
            node.guard.refused(Refusal::ReadTimeout);
            NodeError::TooSlow(format!(
                "the request body did not arrive within {} (--read-timeout)",
                humantime::format_duration(timeout)
            ))
        })?,
    };
    match read {
        Ok(collected) => {
            let value = collected.to_bytes();
            let _ = charge.grow_to(value.len()); // shrinking never fails
            Ok((value, charge))
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        // With its causes: hyper's own line alone ("error reading a body from connection") was
        // the same for a body cut short, a chunk size that overflows and a chunk extension
        // too long (found by a hunt, 2026-12-07).
        Err(e) => Err(NodeError::BadRequest(format!(
            "reading the request body failed: {}; send the body whole, as its Content-Length or chunks say",
            crate::transport::peer::error_chain(&*e)
        ))),
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, NodeError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| NodeError::BadRequest(format!("header {name} must be a number")))
        })
        .transpose()
}

/// `GET /health`: 200 for a normal member, 503 for one joining, leaving or gone. With `ready=1`
/// also 503 for a member that does not coordinate (cut off from the seed, which may have removed
/// it: `life/lease.rs`), which refuses every client request: a load balancer's readiness check
/// then sends clients elsewhere. Not the default: an orchestrator that replaces unhealthy
/// tasks (Swarm) would replace a node that waits for the seed, and with it its copies.
async fn health(State(node): State<Node>, uri: Uri) -> Response {
    let ready = match query::parse(uri.query(), uri.path(), answers::params(uri.path())).and_then(|p| p.ready()) {
        Ok(ready) => ready,
        Err(e) => return e.into_response(),
    };
    let life = node.life();
    // `coordinating`: false while the node may have been removed by a seed it cannot reach
    // (see `life/lease.rs`); it then refuses client requests, and says why in `/stats`.
    let coordinating = node.lease.refusal().is_none();
    // A store that takes no writes: unhealthy at once, and the node stops (`life/store_watch.rs`).
    let store_failed = node.engine.failed();
    let serves = life == Life::Normal && (coordinating || !ready) && store_failed.is_none();
    let status = if serves { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = json!({ "status": life.name(), "id": node.me, "epoch": node.epoch(), "coordinating": coordinating });
    if let Some(why) = store_failed {
        body["store_failed"] = why.into();
    }
    (status, Json(body)).into_response()
}

async fn cluster(State(node): State<Node>) -> Response {
    let topo = node.topology();
    Json(json!({ "id": node.me, "epoch": topo.epoch(), "members": topo.view.nodes })).into_response()
}

async fn stats(State(node): State<Node>) -> Response {
    let topo = node.topology();
    let e = node.engine.stats();
    let hints = node.hints.stats();
    Json(json!({
        "id": node.me,
        "addr": node.addr,
        "state": node.life().name(),
        "epoch": topo.epoch(),
        "members": topo.view.nodes.len(),
        "replicas": node.config.replicas,
        "resp_port": node.config.resp_listen.map(|a| a.port()),
        "keys": e.keys,
        "bytes": e.bytes,
        "tombstones": e.tombstones,
        "expiring": e.expiring,
        "hints_pending": hints.pending,
        "hints_pending_bytes": hints.bytes,
        "hints_dropped": hints.dropped + hints.evicted,
        "hints_evicted": hints.evicted,
        "clock_offset_ms": node.offsets.estimate(std::time::Instant::now()).offset_ms,
        "clock_measured_by": if node.offsets.from_seed(std::time::Instant::now()) { "seed" } else { "peers" },
        "coordinating_writes": node.clock_refusal().is_none(),
        "coordinating": node.lease.refusal().is_none(),
        "lease_refusal": node.lease.refusal(),
        "seed_unheard_ms": node.lease.unheard(std::time::Instant::now()).map(|d| d.as_millis() as u64),
        "heartbeat_interval_ms": node.config.heartbeat_interval.as_millis() as u64,
        "settled": node.settled(),
        "requests": node.stats.snapshot(),
        "load": node.last_load(),
    }))
    .into_response()
}

/// `POST /admin/stop`: exit without handing data off (the whole cluster is stopping).
async fn admin_stop(State(node): State<Node>) -> Response {
    node.request_stop(Stop::Now);
    (StatusCode::ACCEPTED, "stopping\n").into_response()
}

/// `POST /admin/leave`: hand every key to the remaining members, then exit; `409` from the
/// last normal member, which nobody could take them from.
async fn admin_leave(State(node): State<Node>) -> Response {
    if let Some(why) = node.cannot_leave() {
        return (StatusCode::CONFLICT, format!("{why}\n")).into_response();
    }
    node.request_stop(Stop::Leave);
    (StatusCode::ACCEPTED, "leaving: handing keys to the remaining members, then exiting\n").into_response()
}
