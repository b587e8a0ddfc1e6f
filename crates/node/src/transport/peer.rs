//! Calling other nodes and the seed.
//!
//! Nodes are called over the binary transport (`dkv-transport`): one long-lived connection per
//! peer, many calls in flight on it, each with a deadline. The seed is called over HTTP/1.1,
//! through a pooled client with TCP_NODELAY, in its compact encoding when it speaks it and JSON
//! otherwise, except heartbeats, which go over the transport when the seed speaks it (`seed.rs`).
//! Both run over TLS when `--seed https://` says so, with the node's certificates: it shows its
//! own, and takes the seed's only if the cluster CA signed it, as it takes a peer's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use dkv_transport::{Auth, Client, ClientConfig, Wrap, Wrapped, Wrapper};
use http::{header, Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::error::PeerError;
use crate::transport::tls::{self, Tls};
use crate::transport::wire::{self, Kind};

/// Largest answer read from the seed (a view of thousands of members fits).
const MAX_SEED_ANSWER: usize = 64 << 20;

pub struct Peers {
    /// Calls to the seed (HTTP/1.1, over TLS with `--seed https://`).
    seed: HttpClient<SeedConnector, Body>,
    /// Calls to other nodes.
    nodes: Client,
    /// Heartbeats to the seed, over the transport when it speaks it (`seed.rs`).
    pub(crate) seed_line: dkv_transport::Line,
    /// Until when heartbeats go over HTTP, because the seed refused the transport (`seed.rs`).
    pub(crate) seed_line_off: std::sync::Mutex<Option<std::time::Instant>>,
    timeout: Duration,
    /// The cluster secret, sent to the seed when configured (nodes get it in the handshake).
    secret: Option<http::HeaderValue>,
    /// The node's certificates, when nodes talk TLS (`tls.rs`).
    tls: Option<Arc<Tls>>,
    /// `https` when the seed is called over TLS, else `http`.
    seed_scheme: &'static str,
    /// Whether the seed last answered in the compact encoding, so request bodies go in it too
    /// (see `seed.rs`).
    pub(crate) seed_compact: std::sync::atomic::AtomicBool,
}

impl Peers {
    pub fn new(
        timeout: Duration,
        cluster: &str,
        secret: Option<&str>,
        max_frame: usize,
        tls: Option<Arc<Tls>>,
        seed_tls: bool,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        connector.enforce_http(false); // https:// is the SeedConnector's to handle
                                       // The seed is called over TLS only when `--seed https://` says so: a node never falls
                                       // back to the clear on its own, where its secret would show.
        let seed_certs = tls.clone().filter(|_| seed_tls);
        let seed = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .build(SeedConnector { http: connector, tls: seed_certs.clone() });
        let auth = Auth { cluster: cluster.to_string(), secret: secret.map(str::to_string) };
        let nodes = Client::new(ClientConfig {
            auth: auth.clone(),
            connect_timeout: timeout,
            max_frame,
            max_in_flight: 4096,
            wrap: tls.clone().map(|tls| Wrapper(Arc::new(TlsWrap(tls)))),
        });
        // The seed's answers can carry a whole view.
        let seed_line = dkv_transport::Line::new(ClientConfig {
            auth,
            connect_timeout: timeout,
            max_frame: MAX_SEED_ANSWER,
            max_in_flight: 1,
            wrap: seed_certs.map(|tls| Wrapper(Arc::new(TlsWrap(tls)))),
        });
        let secret = secret.and_then(|s| http::HeaderValue::from_str(s).ok());
        Peers {
            seed,
            nodes,
            seed_line,
            seed_line_off: Default::default(),
            timeout,
            secret,
            tls,
            seed_scheme: if seed_tls { "https" } else { "http" },
            seed_compact: Default::default(),
        }
    }

    /// The deadline of one call to a peer (`--request-timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send `req` to node `addr` and decode its answer, within the request timeout.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        kind: Kind,
        req: &Req,
    ) -> Result<Resp, PeerError> {
        self.call_within(addr, kind, req, self.timeout).await
    }

    /// [`Peers::call`] with its own deadline.
    pub async fn call_within<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        kind: Kind,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let body = self.nodes.call(addr, kind as u8, |b| dkv_transport::put_postcard(b, req), timeout).await?;
        postcard::from_bytes(&body).map_err(|e| protocol(addr, e))
    }

    /// [`Peers::call_within`] answered in bytes, as the peer wrote them.
    pub async fn call_raw_within<Req: Serialize>(
        &self,
        addr: &str,
        kind: Kind,
        req: &Req,
        timeout: Duration,
    ) -> Result<Bytes, PeerError> {
        Ok(self.nodes.call(addr, kind as u8, |b| dkv_transport::put_postcard(b, req), timeout).await?)
    }

    /// Close the connection to a node that is no longer a member.
    pub fn forget(&self, addr: &str) {
        self.nodes.forget(addr);
    }

    /// A JSON call to the seed (or a node's public JSON endpoint); the decoded body of a 2xx answer.
    pub async fn json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Resp, PeerError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON encoding of our own types"));
        let json = http::HeaderValue::from_static("application/json");
        let (_, body) = self.http(addr, method, path, json, bytes, None).await?;
        serde_json::from_slice(&body).map_err(|e| protocol(addr, e))
    }

    /// One HTTP call to the seed with a body of `content_type`: the content type and body of a
    /// 2xx answer, within the request timeout.
    pub(crate) async fn http(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        content_type: http::HeaderValue,
        body: Option<Vec<u8>>,
        accept: Option<http::HeaderValue>,
    ) -> Result<(Option<http::HeaderValue>, Bytes), PeerError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}://{addr}{path}", self.seed_scheme))
            .header(header::CONTENT_TYPE, content_type)
            .body(body.map_or_else(Body::empty, Body::from))
            .map_err(|e| protocol(addr, e))?;
        if let Some(accept) = accept {
            req.headers_mut().insert(header::ACCEPT, accept);
        }
        if let Some(secret) = &self.secret {
            req.headers_mut().insert(dkv_membership::api::SECRET_HEADER, secret.clone());
        }
        let answer = async {
            let resp = self
                .seed
                .request(req)
                .await
                .map_err(|e| PeerError::Unreachable { addr: addr.to_string(), reason: self.seed_failure(&e) })?;
            let status = resp.status();
            let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
            let body = read_limited(addr, resp).await?;
            if !status.is_success() {
                let message = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
                let message = if message.is_empty() { status.to_string() } else { message };
                return Err(PeerError::Refused { addr: addr.to_string(), status: status.as_u16(), message });
            }
            Ok((content_type, body))
        };
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(r) => r,
            Err(_) => Err(PeerError::Timeout { addr: addr.to_string(), ms: self.timeout.as_millis() }),
        }
    }
}

impl Peers {
    /// Why a call to the seed failed, with what to do when one side speaks TLS and the other
    /// not: hyper's "invalid HTTP version parsed" and rustls's "InvalidContentType" did not say
    /// (found by a hunt, 2026-12-07).
    fn seed_failure(&self, e: &(dyn std::error::Error + 'static)) -> String {
        let reason = error_chain(e);
        let hint = match self.seed_scheme {
            "http" if dkv_transport::mismatch::answered_in_tls(&reason) => {
                " (the seed answered in TLS: give this node --seed https://… and its TLS flags)"
            }
            "https" if dkv_transport::mismatch::answered_in_the_clear(&reason) => {
                " (the seed answered in the clear: it runs without --tls-cert; give this node --seed http://…, or \
                 the seed its TLS flags)"
            }
            _ => "",
        };
        reason + hint
    }

    /// `GET path` of node `addr`'s public API as JSON, over TLS when nodes talk TLS (it is the
    /// same port as the transport). One connection per call: this is for rare calls (`DBSIZE`).
    pub async fn node_json<Resp: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<Resp, PeerError> {
        let unreachable = |reason: String| PeerError::Unreachable { addr: addr.to_string(), reason };
        let answer = async {
            let connector = self.tls.as_ref().map(|t| t.peer_connector());
            let io = tls::connect(addr, connector.as_ref()).await.map_err(|e| unreachable(e.to_string()))?;
            let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(io))
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            tokio::spawn(conn);
            let req =
                Request::get(path).header(header::HOST, addr).body(Body::empty()).map_err(|e| protocol(addr, e))?;
            let resp = send.send_request(req).await.map_err(|e| unreachable(error_chain(&e)))?;
            let status = resp.status();
            let body = read_limited(addr, resp).await?;
            if !status.is_success() {
                return Err(PeerError::Refused {
                    addr: addr.to_string(),
                    status: status.as_u16(),
                    message: status.to_string(),
                });
            }
            Ok(body)
        };
        let body = match tokio::time::timeout(self.timeout, answer).await {
            Ok(r) => r?,
            Err(_) => return Err(PeerError::Timeout { addr: addr.to_string(), ms: self.timeout.as_millis() }),
        };
        serde_json::from_slice(&body).map_err(|e| protocol(addr, e))
    }
}

/// Opens each new connection to a peer with TLS, with the certificates in use at that moment.
struct TlsWrap(Arc<Tls>);

impl Wrap for TlsWrap {
    fn wrap(&self, addr: &str, tcp: TcpStream) -> Pin<Box<dyn Future<Output = std::io::Result<Wrapped>> + Send>> {
        let connector = self.0.peer_connector();
        let name = tls::server_name(addr);
        Box::pin(async move { Ok(Box::new(connector.connect(name?, tcp).await?) as Wrapped) })
    }
}

/// Connects the seed's HTTP client: plain TCP, or TLS for `https://` with the node's member
/// certificate, checking the seed's against the cluster CA (as a peer's is checked).
#[derive(Clone)]
struct SeedConnector {
    http: HttpConnector,
    tls: Option<Arc<Tls>>,
}

impl tower_service::Service<http::Uri> for SeedConnector {
    type Response = TokioIo<tls::Outgoing>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let https = dst.scheme_str() == Some("https");
        let addr = dst.authority().map(|a| a.to_string()).unwrap_or_default();
        let tls = self.tls.as_ref().map(|t| t.peer_connector());
        let connecting = self.http.call(dst);
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let io = match (https, tls) {
                (false, _) => tls::Outgoing::Plain(tcp),
                (true, Some(tls)) => tls::Outgoing::Tls(Box::new(tls.connect(tls::server_name(&addr)?, tcp).await?)),
                (true, None) => return Err("a seed over TLS needs the node's certificates (--tls-cert)".into()),
            };
            Ok(TokioIo::new(io))
        })
    }
}

async fn read_limited(addr: &str, resp: Response<Incoming>) -> Result<Bytes, PeerError> {
    Limited::new(resp.into_body(), MAX_SEED_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| PeerError::Unreachable { addr: addr.to_string(), reason: format!("reading the answer: {e}") })
}

pub(crate) fn protocol(addr: &str, e: impl std::fmt::Display) -> PeerError {
    PeerError::Protocol { addr: addr.to_string(), reason: e.to_string() }
}

/// The error and its causes on one line ("client error (Connect): tcp connect error: refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let (mut src, mut last) = (e.source(), s.clone());
    while let Some(cause) = src {
        // A wrapper that shows as its cause (hyper's body errors do) is said once.
        let text = cause.to_string();
        if text != last {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = cause.source();
        last = text;
    }
    s
}

/// Whether a peer said "refresh your membership view and try again".
pub fn is_stale_epoch(e: &PeerError) -> bool {
    e.status() == Some(wire::STATUS_STALE_EPOCH)
}

pub fn status_is(e: &PeerError, status: http::StatusCode) -> bool {
    e.status() == Some(status.as_u16())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An error's causes follow it, each once: a wrapper that shows as its cause is not repeated.
    #[test]
    fn an_error_chain_says_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E("reading a body", Some(Box::new(E("reading a body", Some(Box::new(E("end of file", None)))))));
        assert_eq!(error_chain(&e), "reading a body: end of file");
    }

    /// A one-connection HTTP server that answers with `head` and then `body` forever (or, with
    /// `None`, nothing more while the connection stays open).
    async fn fake_seed(head: &'static str, body: Option<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = s.read(&mut request).await;
            s.write_all(head.as_bytes()).await.unwrap();
            match body {
                Some(b) => {
                    let chunk = vec![b; 1 << 16];
                    while s.write_all(&chunk).await.is_ok() {}
                }
                None => std::future::pending::<()>().await,
            }
        });
        addr
    }

    /// Issue 11 asked whether a seed's answer is read without bound: it is not, in size (64 MiB)
    /// or in time (the request timeout covers the body too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seed_answers_are_bounded_in_size_and_in_time() {
        let peers = Peers::new(Duration::from_secs(10), "dkv", None, 1 << 20, None, false);
        let endless = fake_seed("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n", Some(b' ')).await;
        let e = peers.json::<(), serde_json::Value>(&endless, Method::GET, "/nodes", None).await.unwrap_err();
        assert!(e.to_string().contains("reading the answer"), "{e}");

        let peers = Peers::new(Duration::from_millis(300), "dkv", None, 1 << 20, None, false);
        let silent = fake_seed("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{", None).await;
        let started = Instant::now();
        let e = peers.json::<(), serde_json::Value>(&silent, Method::GET, "/nodes", None).await.unwrap_err();
        assert!(matches!(e, PeerError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
