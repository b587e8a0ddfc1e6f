//! The public HTTP API (DESIGN §2) and the server that carries it.
//!
//! Each key request is parsed and checked here (key present, within limits; value within limits,
//! refused from `Content-Length` before any of it is read), then routed: served by this node
//! if it coordinates the key, otherwise forwarded once to the coordinator over a pooled
//! connection. Errors become one plain-text line with the status the error's kind calls for.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use dkv_membership::api::{secret_matches, SECRET_HEADER};
use dkv_placement::key_hash;
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::NodeError;
use crate::front::query;
use crate::front::router::{route, Route};
use crate::life::metrics::{Api, OpName};
use crate::life::state::{Life, Node};
use crate::life::stats::bump;
use crate::replication::consistency::Level;
use crate::transport::internal;
use crate::transport::wire::{EPOCH_HEADER, HOP_HEADER};

/// Largest internal message: a batch of at most `wire::BATCH_BYTES`, or one entry of the largest
/// value with its key, whichever is more, with room for the framing.
fn internal_body_limit(node: &Node) -> usize {
    crate::transport::wire::BATCH_BYTES.max(node.config.max_value_bytes + node.config.max_key_bytes) + (1 << 20)
}

pub async fn serve(node: Node, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let secret: Option<Arc<str>> = node.config.cluster_secret.as_deref().map(Arc::from);
    let app = Router::new()
        .route("/internal/apply", post(internal::apply))
        .route("/internal/read", post(internal::read))
        .route("/internal/range", post(internal::range))
        .route("/internal/refresh", post(internal::refresh))
        .route("/internal/sync/summary", post(internal::sync_summary))
        .route("/internal/sync/bucket", post(internal::sync_bucket))
        .route("/admin/stop", post(internal::admin_stop))
        .route("/admin/leave", post(internal::admin_leave))
        .route_layer(middleware::from_fn_with_state(secret, require_secret))
        // Internal messages carry batches of entries, each up to the value limit (the public
        // routes read bodies themselves, under --max-value-size).
        .layer(axum::extract::DefaultBodyLimit::max(internal_body_limit(&node)))
        .route("/put", put(put_key))
        .route("/get", get(get_key))
        .route("/delete", delete(delete_key))
        .route("/health", get(health))
        .route("/cluster", get(cluster))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(|method: Method| async move {
            (StatusCode::METHOD_NOT_ALLOWED, format!("method {method} not allowed on this path\n"))
        })
        .fallback(|| async {
            (StatusCode::NOT_FOUND, "no such endpoint; see GET /put, /get, /delete, /health, /cluster, /stats\n")
        })
        .with_state(node);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!("HTTP server failed: {e}");
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Put,
    Delete,
}

impl Op {
    fn method(self) -> Method {
        match self {
            Op::Get => Method::GET,
            Op::Put => Method::PUT,
            Op::Delete => Method::DELETE,
        }
    }

    pub(crate) fn metric_name(self) -> OpName {
        match self {
            Op::Get => OpName::Get,
            Op::Put => OpName::Put,
            Op::Delete => OpName::Delete,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Op::Get => "/get",
            Op::Put => "/put",
            Op::Delete => "/delete",
        }
    }
}

/// One key operation from any front end (HTTP here, RESP in `resp/`): served here when this node
/// is a replica, else forwarded to one. The answer is an HTTP response either way: 200 with the
/// value, 204, 404, or an error status with a one-line text.
pub(crate) async fn execute(node: &Node, op: Op, key: Bytes, value: Option<Bytes>) -> Result<Response, NodeError> {
    if route(&node.topology(), key_hash(&key), 0) == Route::Local {
        return serve_local(node, op, key, value, None).await;
    }
    let uri = format!("{}?key={}", op.path(), query::encode_key(&key));
    let uri: http::Uri = uri.parse().map_err(|e| NodeError::Internal(format!("building a forward URI: {e}")))?;
    let (parts, ()) =
        http::Request::builder().method(op.method()).uri(uri).body(()).expect("valid request").into_parts();
    dispatch(node, op, &parts, key, value, None, 0).await
}

async fn put_key(State(node): State<Node>, req: Request) -> Response {
    bump(&node.stats.puts);
    measured(node, Op::Put, req).await
}

async fn get_key(State(node): State<Node>, req: Request) -> Response {
    bump(&node.stats.gets);
    measured(node, Op::Get, req).await
}

async fn delete_key(State(node): State<Node>, req: Request) -> Response {
    bump(&node.stats.deletes);
    measured(node, Op::Delete, req).await
}

async fn measured(node: Node, op: Op, req: Request) -> Response {
    let started = std::time::Instant::now();
    let resp = handle(node.clone(), op, req).await.unwrap_or_else(IntoResponse::into_response);
    node.metrics.observe(Api::Http, op.metric_name(), resp.status().as_u16(), started.elapsed());
    resp
}

async fn metrics(State(node): State<Node>) -> Response {
    ([(header::CONTENT_TYPE, crate::life::metrics::CONTENT_TYPE)], crate::life::metrics::render(&node)).into_response()
}

async fn handle(node: Node, op: Op, req: Request) -> Result<Response, NodeError> {
    let (parts, body) = req.into_parts();
    let key = query::key(parts.uri.query(), node.config.max_key_bytes)?;
    let level = query::level(parts.uri.query(), if op == Op::Get { "r" } else { "w" })?;
    let hops = header_u64(&parts.headers, HOP_HEADER)?.unwrap_or(0).min(u8::MAX as u64) as u8;
    let value = match op {
        Op::Put => Some(read_value(&node, &parts.headers, body).await?),
        _ => None,
    };
    if let Some(epoch) = header_u64(&parts.headers, EPOCH_HEADER)? {
        if epoch > node.topology().epoch() {
            Box::pin(node.refresh_to(epoch)).await;
        }
    }
    dispatch(&node, op, &parts, key, value, level, hops).await
}

async fn dispatch(
    node: &Node,
    op: Op,
    parts: &http::request::Parts,
    key: Bytes,
    value: Option<Bytes>,
    level: Option<Level>,
    hops: u8,
) -> Result<Response, NodeError> {
    let hash = key_hash(&key);
    match route(&node.topology(), hash, hops) {
        Route::Unavailable(why) => Err(NodeError::Unavailable(why)),
        Route::Local => serve_local(node, op, key, value, level).await,
        // Forwarding is the cold path: boxed, so the local path's future stays small.
        Route::Forward(_) => Box::pin(forward(node, parts, hash, hops, (key, value, level), op)).await,
    }
}

/// Pass the request to one of the key's replicas, the first that can be reached: a replica that
/// is down (crashed, not yet declared dead) must not make its keys unavailable. If none answers,
/// refresh the view once and route again.
async fn forward(
    node: &Node,
    parts: &http::request::Parts,
    hash: u64,
    hops: u8,
    (key, value, level): (Bytes, Option<Bytes>, Option<Level>),
    op: Op,
) -> Result<Response, NodeError> {
    let mut errors = Vec::new();
    for attempt in 0..2 {
        let topo = node.topology();
        match route(&topo, hash, hops) {
            Route::Unavailable(why) => return Err(NodeError::Unavailable(why)),
            Route::Local => return serve_local(node, op, key, value, level).await,
            Route::Forward(_) => {}
        }
        for id in topo.placement(hash).read {
            let addr = node.addr_of(&topo, id).map_err(|e| NodeError::Internal(e.to_string()))?.to_string();
            let mut fwd = http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone())
                .header(HOP_HEADER, (hops + 1).to_string())
                .header(EPOCH_HEADER, topo.epoch().to_string());
            if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                fwd = fwd.header(header::CONTENT_TYPE, ct);
            }
            let body = value.clone().map_or_else(Body::empty, Body::from);
            let fwd = fwd.body(body).map_err(|e| NodeError::Internal(e.to_string()))?;
            bump(&node.stats.forwarded);
            match node.peers.forward(&addr, fwd).await {
                Ok(resp) => return Ok(resp.map(Body::new)),
                Err(e) => {
                    tracing::debug!("forward to {addr} failed: {e}");
                    errors.push(e.to_string());
                }
            }
        }
        if attempt == 0 {
            node.refresh().await;
        }
    }
    Err(NodeError::Unavailable(format!("no replica of the key could be reached: {}", errors.join("; "))))
}

async fn serve_local(
    node: &Node,
    op: Op,
    key: Bytes,
    value: Option<Bytes>,
    level: Option<Level>,
) -> Result<Response, NodeError> {
    match op {
        Op::Get => match node.coordinate_read(key, level).await? {
            Some(v) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], v).into_response()),
            None => Ok((StatusCode::NOT_FOUND, "key not found\n").into_response()),
        },
        Op::Put => {
            node.coordinate_write(key, value, level).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Op::Delete => {
            node.coordinate_write(key, None, level).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// Read a request body of at most `max_value_bytes`, refusing from the declared length first so an
/// oversized value is never buffered.
async fn read_value(node: &Node, headers: &HeaderMap, body: Body) -> Result<Bytes, NodeError> {
    let max = node.config.max_value_bytes;
    let too_large = || NodeError::TooLarge(format!("value larger than the limit of {max} bytes"));
    if let Some(len) = header_u64(headers, header::CONTENT_LENGTH.as_str())? {
        if len > max as u64 {
            return Err(too_large());
        }
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(NodeError::BadRequest(format!("reading the request body failed: {e}"))),
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

async fn health(State(node): State<Node>) -> Response {
    let life = node.life();
    let status = if life == Life::Normal { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({ "status": life.name(), "id": node.me, "epoch": node.topology().epoch() });
    (status, Json(body)).into_response()
}

async fn cluster(State(node): State<Node>) -> Response {
    let topo = node.topology();
    Json(json!({ "id": node.me, "epoch": topo.epoch(), "members": topo.view.nodes })).into_response()
}

async fn stats(State(node): State<Node>) -> Response {
    let topo = node.topology();
    let e = node.engine.stats();
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
        "hints_pending": node.hints.counts().0,
        "hints_dropped": node.hints.counts().1,
        "requests": node.stats.snapshot(),
    }))
    .into_response()
}
