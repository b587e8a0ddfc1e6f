//! Talking to other nodes and to the seed: pooled clients with TCP_NODELAY and keep-alive, so a
//! forwarded request or an internal call reuses a warm connection instead of paying a TCP
//! handshake; between nodes HTTP/2, so many calls share one connection. Every call has a timeout. This is the only module that knows the
//! internal transport; swapping it (e.g. for framed TCP) touches nothing else.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::PeerError;

#[derive(Clone)]
pub struct Peers {
    /// Calls to the seed (HTTP/1.1).
    client: Client<HttpConnector, Body>,
    /// Calls to other nodes, forwarded requests included: HTTP/2 without TLS, so concurrent calls
    /// share one connection per peer (measured against HTTP/1.1 keep-alive on 3 nodes with N = 3:
    /// about 1.5x the throughput, and 10-15% more for forwarding).
    peers: Client<HttpConnector, Body>,
    timeout: Duration,
    /// The cluster secret, sent on every call when configured.
    secret: Option<http::HeaderValue>,
}

impl Peers {
    pub fn new(timeout: Duration, secret: Option<&str>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector.clone());
        let peers = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .http2_only(true)
            .build(connector);
        let secret = secret.and_then(|s| http::HeaderValue::from_str(s).ok());
        Peers { client, peers, timeout, secret }
    }

    /// Send `req` (already aimed at `addr`) and return the raw response, body not yet read.
    pub async fn send(&self, addr: &str, req: Request<Body>) -> Result<Response<Incoming>, PeerError> {
        self.send_with(&self.client, addr, req).await
    }

    async fn send_with(
        &self,
        client: &Client<HttpConnector, Body>,
        addr: &str,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, PeerError> {
        if let Some(secret) = &self.secret {
            req.headers_mut().insert(dkv_membership::api::SECRET_HEADER, secret.clone());
        }
        match tokio::time::timeout(self.timeout, client.request(req)).await {
            Err(_) => Err(PeerError::Timeout { addr: addr.to_string(), ms: self.timeout.as_millis() }),
            Ok(Err(e)) => Err(PeerError::Unreachable { addr: addr.to_string(), reason: error_chain(&e) }),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// Re-aim a public request at `addr`, keeping method, path, query, headers and body.
    pub async fn forward(&self, addr: &str, mut req: Request<Body>) -> Result<Response<Incoming>, PeerError> {
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        *req.uri_mut() = uri(addr, pq)?;
        req.headers_mut().remove(header::HOST);
        self.send_with(&self.peers, addr, req).await
    }

    /// POST an internal (postcard) message; a non-2xx answer becomes [`PeerError::Refused`].
    pub async fn call(&self, addr: &str, path: &str, body: Vec<u8>) -> Result<Bytes, PeerError> {
        let resp = self.post_raw(addr, path, body, "application/x-dkv").await?;
        read_ok(addr, resp).await
    }

    /// POST an internal message and return the streaming answer (range transfers).
    pub async fn call_stream(&self, addr: &str, path: &str, body: Vec<u8>) -> Result<Incoming, PeerError> {
        let resp = self.post_raw(addr, path, body, "application/x-dkv").await?;
        if !resp.status().is_success() {
            return Err(refused(addr, resp).await);
        }
        Ok(resp.into_body())
    }

    /// A JSON call to the seed; answers the status and the decoded body of a 2xx answer.
    pub async fn json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Resp, PeerError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON encoding of our own types"));
        let req = Request::builder()
            .method(method)
            .uri(uri(addr, path)?)
            .header(header::CONTENT_TYPE, "application/json")
            .body(bytes.map_or_else(Body::empty, Body::from))
            .map_err(|e| protocol(addr, e))?;
        let resp = self.send(addr, req).await?;
        let body = read_ok(addr, resp).await?;
        serde_json::from_slice(&body).map_err(|e| protocol(addr, e))
    }

    async fn post_raw(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        ctype: &str,
    ) -> Result<Response<Incoming>, PeerError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri(addr, path)?)
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(body))
            .map_err(|e| protocol(addr, e))?;
        self.send_with(&self.peers, addr, req).await
    }
}

fn uri(addr: &str, path_and_query: &str) -> Result<http::Uri, PeerError> {
    format!("http://{addr}{path_and_query}").parse().map_err(|e| protocol(addr, e))
}

fn protocol(addr: &str, e: impl std::fmt::Display) -> PeerError {
    PeerError::Protocol { addr: addr.to_string(), reason: e.to_string() }
}

async fn read_ok(addr: &str, resp: Response<Incoming>) -> Result<Bytes, PeerError> {
    if !resp.status().is_success() {
        return Err(refused(addr, resp).await);
    }
    resp.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| PeerError::Unreachable { addr: addr.to_string(), reason: error_chain(&e) })
}

async fn refused(addr: &str, resp: Response<Incoming>) -> PeerError {
    let status = resp.status();
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let message = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
    let message = if message.is_empty() { status.canonical_reason().unwrap_or("").to_string() } else { message };
    PeerError::Refused { addr: addr.to_string(), status: status.as_u16(), message }
}

/// The error and its causes on one line ("client error (Connect): tcp connect error: refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Whether a status means "refresh your membership view and try again".
pub fn is_stale_epoch(e: &PeerError) -> bool {
    e.status() == Some(crate::transport::wire::STATUS_STALE_EPOCH)
}

pub fn status_is(e: &PeerError, status: StatusCode) -> bool {
    e.status() == Some(status.as_u16())
}
