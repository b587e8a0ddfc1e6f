//! A small HTTP client for a dkv node: what `dkv get/put/del/status` use, and the tests too.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

/// Bytes left as they are in a key: RFC 3986 unreserved characters.

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {status}: {message}")]
    Status { url: String, status: StatusCode, message: String },
    #[error("bad URL {0:?}: write it like http://127.0.0.1:8080")]
    BadUrl(String),
}

#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
    /// Sent as `x-dkv-secret` (only admin calls need it).
    secret: Option<String>,
}

pub fn encode_key(key: &[u8]) -> String {
    dkv_node::front::query::encode_key(key)
}

impl Client {
    /// `node` is a base URL such as `http://127.0.0.1:8080` (a bare `host:port` works too).
    pub fn new(node: &str) -> Self {
        let base = if node.contains("://") { node.trim_end_matches('/').to_string() } else { format!("http://{node}") };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Client { http, base, timeout: Duration::from_secs(10), secret: None }
    }

    pub fn with_secret(mut self, secret: Option<String>) -> Self {
        self.secret = secret;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send a request and return status and body, whatever the status.
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(secret) = &self.secret {
            req = req.header(dkv_membership::api::SECRET_HEADER, secret);
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|_| ClientError::BadUrl(url.clone()))?;
        let unreachable = |reason: String| ClientError::Unreachable { url: url.clone(), reason };
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unreachable(dkv_node::transport::peer::error_chain(&e)))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
        Ok((status, body))
    }

    async fn expect(
        &self,
        method: Method,
        pq: &str,
        body: Option<Bytes>,
        ok: &[StatusCode],
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let (status, body) = self.raw(method, pq, body).await?;
        if ok.contains(&status) {
            return Ok((status, body));
        }
        let message = String::from_utf8_lossy(&body).trim().to_string();
        Err(ClientError::Status { url: format!("{}{}", self.base, pq), status, message })
    }

    pub async fn put(&self, key: &[u8], value: impl Into<Bytes>) -> Result<(), ClientError> {
        let pq = format!("/put?key={}", encode_key(key));
        self.expect(Method::PUT, &pq, Some(value.into()), &[StatusCode::NO_CONTENT]).await.map(|_| ())
    }

    /// `Ok(None)` for a missing or deleted key.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ClientError> {
        let pq = format!("/get?key={}", encode_key(key));
        let (status, body) = self.expect(Method::GET, &pq, None, &[StatusCode::OK, StatusCode::NOT_FOUND]).await?;
        Ok((status == StatusCode::OK).then_some(body))
    }

    pub async fn delete(&self, key: &[u8]) -> Result<(), ClientError> {
        let pq = format!("/delete?key={}", encode_key(key));
        self.expect(Method::DELETE, &pq, None, &[StatusCode::NO_CONTENT]).await.map(|_| ())
    }

    pub async fn json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let (_, body) = self.expect(Method::GET, path, None, &[StatusCode::OK]).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Status {
            url: format!("{}{path}", self.base),
            status: StatusCode::OK,
            message: format!("not JSON: {e}"),
        })
    }
}
