//! A small HTTP client for a dkv node: what `dkv get/put/del/status` use, and the tests too.
//!
//! Two things make it say what happened rather than what it guessed:
//!
//! * **Who answered.** A node signs every answer with `x-dkv-node`, the seed with `x-dkv-seed`.
//!   The key operations and [`Client::node_json`] accept only a node's answers, so a `404` from
//!   the seed or from some other web server is reported as "not a dkv node", never as a missing
//!   key.
//! * **The server's answer, even when it did not read the request.** A node refuses a value over
//!   its limit from `Content-Length` and closes the connection while the client is still sending.
//!   The write then fails (broken pipe, reset), and hyper would report that instead of the `413`
//!   already received. The connections here ([`Lenient`]) treat a write to a server that has
//!   closed as done, so hyper goes on to read, and the answer it finds is the one reported.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use dkv_membership::api::{NODE_HEADER, SEED_HEADER};
use dkv_node::transport::tls::Outgoing;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::TlsConnector;

/// What a `dkv` command's user does about a `401`: the node's own words are for curl.
fn password_hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "; give dkv the password with --password or DKV_PASSWORD",
        _ => "",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {}: {reason}", shown(url))]
    Unreachable { url: String, reason: String },
    #[error("{} answered {status}: {}{}", shown(url), if message.is_empty() { "(with an empty body)" } else { message }, password_hint(*status))]
    Status { url: String, status: StatusCode, message: String },
    #[error("bad URL {0:?}: write it like http://127.0.0.1:8080")]
    BadUrl(String),
    #[error("--cacert / --client-cert: {0}")]
    Tls(String),
    /// A command line that cannot be sent as it is (a key `--escaped` cannot read).
    #[error("{0}")]
    Usage(String),
    /// `--node` names the seed.
    #[error("{base} is the dkv seed, not a node: point --node at a node (the seed lists them at {base}/nodes)")]
    Seed { base: String },
    /// `--seed` names a node.
    #[error("{base} is a dkv node, not the seed: point --seed at the seed (the nodes' --seed flag names it)")]
    NodeNotSeed { base: String },
    /// `--seed` names a server that is not dkv at all.
    #[error("{base} is not the dkv seed: it answered {status} without the {SEED_HEADER} header the seed sends; point --seed at the seed (the nodes' --seed flag names it)")]
    NotTheSeed { base: String, status: StatusCode },
    /// `--node` names a server that is not dkv at all.
    #[error("{base} is not a dkv node: it answered {status} without the {NODE_HEADER} header every node sends; point --node at a node, such as http://127.0.0.1:8080")]
    NotANode { base: String, status: StatusCode },
}

/// A URL as an error shows it: a key of 9 000 bytes made a 9 000-byte error line (found by
/// trying, 2026-12-06), so past [`URL_SHOWN`] bytes it is cut, saying how much was left out.
fn shown(url: &str) -> std::borrow::Cow<'_, str> {
    if url.len() <= URL_SHOWN {
        return url.into();
    }
    let cut = (0..=URL_SHOWN).rev().find(|&i| url.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} more bytes)", &url[..cut], url.len() - cut).into()
}

const URL_SHOWN: usize = 200;

impl ClientError {
    /// The process's exit code for it ([`exit`](crate::commands::exit)): refused when the same
    /// command cannot succeed (it was never sent, or the node refused it with a `4xx`),
    /// unavailable when it may succeed later.
    pub fn exit_code(&self) -> i32 {
        use crate::commands::exit;
        match self {
            // A certificate refused, either way: trying again changes nothing (found by a hunt,
            // 2026-12-07: a wrong --cacert or an expired client certificate exited 3).
            ClientError::Unreachable { reason, .. } if is_tls_mismatch(reason) => exit::REFUSED,
            ClientError::Unreachable { .. } => exit::UNAVAILABLE,
            ClientError::Status { status, .. } if !status.is_client_error() => exit::UNAVAILABLE,
            // Refusals of the moment: the body came too slowly, the coordinator's clock is off
            // (another node may take it), too many requests.
            ClientError::Status { status, .. }
                if [StatusCode::REQUEST_TIMEOUT, StatusCode::UNPROCESSABLE_ENTITY, StatusCode::TOO_MANY_REQUESTS]
                    .contains(status) =>
            {
                exit::UNAVAILABLE
            }
            _ => exit::REFUSED,
        }
    }
}

/// Whether a connection failed on TLS in a way that trying again does not mend: a certificate
/// refused, the node's here ("invalid peer certificate") or this client's by the node (its
/// alert), or a scheme that does not match the port, `http://` to a TLS port or `https://` to a
/// plain one (3 until a hunt, 2026-12-07).
fn is_tls_mismatch(reason: &str) -> bool {
    reason.contains("invalid peer certificate")
        || (reason.contains("received fatal alert") && (reason.contains("Certificate") || reason.contains("UnknownCA")))
        || dkv_transport::mismatch::answered_in_tls(reason)
        || dkv_transport::mismatch::answered_in_the_clear(reason)
}

/// `reason`, with what to do when it reads as a TLS port called in the clear or the other way
/// round: hyper's own words ("invalid HTTP version parsed", "InvalidContentType") do not say.
fn with_scheme_hint(base: &str, reason: String) -> String {
    let tls = base.starts_with("https://");
    let plain_to_tls = !tls
        && (dkv_transport::mismatch::answered_in_tls(&reason)
            || reason.contains("connection closed before message completed"));
    let tls_to_plain = tls
        && (dkv_transport::mismatch::answered_in_the_clear(&reason)
            || reason.contains("corrupt message")
            || reason.contains("HTTP/1"));
    match (plain_to_tls, tls_to_plain) {
        // A RESP port answers an HTTP request with `-ERR …` and closes: the same words.
        (true, _) => format!(
            "{reason} (is this the node's HTTP port? a RESP port (--resp-listen) closes HTTP requests; and if the \
             node speaks TLS, use https:// with --cacert)"
        ),
        (_, true) => format!("{reason} (if the node does not speak TLS, use http://)"),
        _ => reason,
    }
}

/// What sort of server answered, from the header it signs its answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Node,
    Seed,
    Other,
}

impl Server {
    pub fn of(headers: &HeaderMap) -> Server {
        if headers.contains_key(NODE_HEADER) {
            Server::Node
        } else if headers.contains_key(SEED_HEADER) {
            Server::Seed
        } else {
            Server::Other
        }
    }
}

/// One answer, whatever its status.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub server: Server,
    pub body: Bytes,
}

/// When a key expires, as `GET /ttl` answers it; both `None` for a key that never does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyTtl {
    /// Milliseconds left.
    pub ttl_ms: Option<u64>,
    /// The deadline, ms since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

#[derive(Clone)]
pub struct Client {
    http: HyperClient<LenientConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
    /// Sent as `x-dkv-secret` (only admin calls need it).
    secret: Option<String>,
    /// The client password, sent with every request as `Authorization: Basic` (user `default`):
    /// Basic carries any bytes, where a Bearer token may not hold every character.
    password: Option<http::HeaderValue>,
    /// Trusts the CA of `--cacert`, for `https://` nodes.
    tls: Option<TlsConnector>,
    /// The most of an answer's body it reads (see [`Client::with_max_value`]).
    max_answer: usize,
}

/// The most of an answer's body a client reads by default: every answer but a value is far
/// smaller (a scan page covers at most 4 MiB of keys and values). A server that streamed an
/// endless body took `dkv get` to 3 GB, and `dkv leave` to 4.5 GB, in 8 s (found by a hunt,
/// 2026-12-07).
pub const MAX_ANSWER: usize = 64 << 20;

/// The longest URL the `http` crate takes, the node's and the client's alike (a `u16`'s worth).
const MAX_URL: usize = 65534;

/// A TTL as `ttl=` takes it: days, hours, minutes, seconds and ms, each part that is not zero,
/// with `+` (a space) between them (`1h+30m`). The longest it writes is the node's,
/// [`crate::cli::MAX_TTL_DAYS`] days: sent in ms alone, anything over 999999999999999 ms was
/// refused by the client though the node takes it (found by trying, 2026-12-06).
pub fn ttl_param(ttl: Duration) -> String {
    ttl_text(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX), "+")
}

/// `ms` in the parts a node's `ttl=` takes (`1d 59m 59s 978ms`), joined by `sep`; `0ms` for 0.
/// `dkv ttl` prints it so (humantime's `1day 59m` and `11months` were in units neither `--ttl`
/// nor a node reads: found by a hunt, 2026-12-07).
pub fn ttl_text(mut ms: u64, sep: &str) -> String {
    let mut parts = Vec::new();
    // Days in parts of at most MAX_TTL_DAYS, the most one part may say.
    let mut days = ms / 86_400_000;
    ms %= 86_400_000;
    while days > 0 {
        let part = days.min(crate::cli::MAX_TTL_DAYS);
        parts.push(format!("{part}d"));
        days -= part;
    }
    for (unit, name) in [(3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")] {
        if ms >= unit {
            parts.push(format!("{}{name}", ms / unit));
            ms %= unit;
        }
    }
    match parts.is_empty() {
        true => "0ms".to_string(),
        false => parts.join(sep),
    }
}

pub fn encode_key(key: &[u8]) -> String {
    dkv_node::front::query::encode_key(key)
}

impl Client {
    /// `node` is a base URL such as `http://127.0.0.1:8080` (a bare `host:port` works too).
    pub fn new(node: &str) -> Self {
        let node = node.trim_end_matches('/');
        let base = if node.contains("://") { node.to_string() } else { format!("http://{node}") };
        Client {
            http: http_client(None),
            base,
            timeout: Duration::from_secs(10),
            secret: None,
            password: None,
            tls: None,
            max_answer: MAX_ANSWER,
        }
    }

    /// Read answers of values up to `max_value` bytes (the nodes' `--max-value-size`), beside
    /// [`MAX_ANSWER`].
    pub fn with_max_value(mut self, max_value: usize) -> Self {
        self.max_answer = MAX_ANSWER.max(max_value.saturating_add(1 << 20));
        self
    }

    pub fn with_secret(mut self, secret: Option<String>) -> Self {
        self.secret = secret;
        self
    }

    /// Send the client password (`--client-password` of the nodes) with every request.
    pub fn with_password(mut self, password: Option<&str>) -> Self {
        self.password = password.map(|p| {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("default:{p}"));
            http::HeaderValue::from_str(&format!("Basic {basic}")).expect("base64 is a valid header value")
        });
        self
    }

    /// Trust the CA certificates in `cacert` (PEM) for `https://` nodes.
    pub fn with_cacert(self, cacert: Option<&Path>) -> Result<Self, ClientError> {
        self.with_tls(&crate::cli::ClientTls { cacert: cacert.map(Path::to_path_buf), ..Default::default() })
    }

    /// TLS as `tls` says: the CA for `https://` nodes, and the client certificate to show them.
    pub fn with_tls(mut self, tls: &crate::cli::ClientTls) -> Result<Self, ClientError> {
        let Some(tls) = tls.connector()? else {
            // Said before anything is sent, as a refusal: the connection's error exited 3, "may
            // succeed later" (found by a hunt, 2026-12-07).
            return match self.base.starts_with("https://") {
                true => Err(ClientError::Tls(format!(
                    "{} is https://: give --cacert FILE, the CA that signed its certificate",
                    shown(&self.base)
                ))),
                false => Ok(self),
            };
        };
        self.http = http_client(Some(tls.clone()));
        self.tls = Some(tls);
        Ok(self)
    }

    /// The same client for another node, `host:port` (a member's address), with the same
    /// scheme, password and CA.
    pub fn sibling(&self, addr: &str) -> Client {
        let scheme = self.base.split("://").next().unwrap_or("http");
        Client { base: format!("{scheme}://{addr}"), ..self.clone() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send a request and return status and body, whatever the status and whoever answered.
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.send(method, path_and_query, body).await.map(|a| (a.status, a.body))
    }

    /// Send a request and return the answer, whatever its status and whoever answered.
    pub async fn send(&self, method: Method, path_and_query: &str, body: Option<Bytes>) -> Result<Answer, ClientError> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(secret) = &self.secret {
            req = req.header(dkv_membership::api::SECRET_HEADER, secret);
        }
        if let Some(password) = &self.password {
            req = req.header(http::header::AUTHORIZATION, password.clone());
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|_| match url.len() > MAX_URL {
            // A long key percent-encoded, not a bad `--node` (found by a hunt, 2026-12-07).
            true => ClientError::Usage(format!(
                "the request's URL would be {} bytes, over the {MAX_URL} that HTTP servers and clients take: its key, \
                 prefix or pattern, percent-encoded, is too long for HTTP (over RESP, a key may be as long as the \
                 nodes' --max-key-size)",
                url.len()
            )),
            false => ClientError::BadUrl(url.clone()),
        })?;
        let unreachable = |reason: String| ClientError::Unreachable { url: url.clone(), reason };
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unreachable(with_scheme_hint(&self.base, dkv_node::transport::peer::error_chain(&e))))?;
        let (status, server) = (resp.status(), Server::of(resp.headers()));
        // The body too is bounded in time: a node that stalls halfway through a value would
        // otherwise hold the command for good.
        let body = tokio::time::timeout(self.timeout, Limited::new(resp.into_body(), self.max_answer).collect())
            .await
            .map_err(|_| unreachable(format!("the answer's body did not arrive within {:?}", self.timeout)))?
            .map_err(|e| match e.is::<LengthLimitError>() {
                true => unreachable(format!(
                    "the answer is over {}, the most this client reads: a node's value can be as large as its \
                     --max-value-size, so give the client the same --max-value-size",
                    dkv_node::front::limits::human(self.max_answer)
                )),
                false => unreachable(dkv_node::transport::peer::error_chain(&*e)),
            })?
            .to_bytes();
        Ok(Answer { status, server, body })
    }

    /// Send a request to a node: an answer from anything else is an error that says what
    /// answered, and so is a status outside `ok`.
    pub async fn to_node(
        &self,
        method: Method,
        pq: &str,
        body: Option<Bytes>,
        ok: &[StatusCode],
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let answer = self.send(method, pq, body).await?;
        match answer.server {
            Server::Node => {}
            Server::Seed => return Err(ClientError::Seed { base: self.base.clone() }),
            Server::Other => return Err(ClientError::NotANode { base: self.base.clone(), status: answer.status }),
        }
        // A node's 404 for a path it does not serve (`--node http://host:8080/prefix`) is not
        // the 404 of a missing key: said as it is, not as "key not found".
        let wrong_path = answer.status == StatusCode::NOT_FOUND && answer.body.starts_with(b"no such path");
        if ok.contains(&answer.status) && !wrong_path {
            return Ok((answer.status, answer.body));
        }
        let message = String::from_utf8_lossy(&answer.body).trim().to_string();
        Err(ClientError::Status { url: format!("{}{}", self.base, pq), status: answer.status, message })
    }

    pub async fn put(&self, key: &[u8], value: impl Into<Bytes>) -> Result<(), ClientError> {
        self.put_with_ttl(key, value, None).await
    }

    /// Write a key that expires `ttl` after the node receives it (never, for `None`).
    pub async fn put_with_ttl(
        &self,
        key: &[u8],
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let mut pq = format!("/put?key={}", encode_key(key));
        if let Some(ttl) = ttl {
            pq += &format!("&ttl={}", ttl_param(ttl));
        }
        self.to_node(Method::PUT, &pq, Some(value.into()), &[StatusCode::NO_CONTENT]).await.map(|_| ())
    }

    /// A key's deadline (`GET /ttl`): `Ok(None)` for a missing, deleted or expired key.
    pub async fn ttl(&self, key: &[u8]) -> Result<Option<KeyTtl>, ClientError> {
        let pq = format!("/ttl?key={}", encode_key(key));
        let (status, body) = self.to_node(Method::GET, &pq, None, &[StatusCode::OK, StatusCode::NOT_FOUND]).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let json = self.parse_json(&pq, &body)?;
        Ok(Some(KeyTtl { ttl_ms: json["ttl_ms"].as_u64(), expires_at_ms: json["expires_at_ms"].as_u64() }))
    }

    /// `Ok(None)` for a missing or deleted key.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ClientError> {
        let pq = format!("/get?key={}", encode_key(key));
        let (status, body) = self.to_node(Method::GET, &pq, None, &[StatusCode::OK, StatusCode::NOT_FOUND]).await?;
        Ok((status == StatusCode::OK).then_some(body))
    }

    pub async fn delete(&self, key: &[u8]) -> Result<(), ClientError> {
        let pq = format!("/delete?key={}", encode_key(key));
        self.to_node(Method::DELETE, &pq, None, &[StatusCode::NO_CONTENT]).await.map(|_| ())
    }

    /// [`Client::get`] with `r=` (a number, `one`, `quorum` or `all`; the node's default for
    /// `None`).
    pub async fn get_at(&self, key: &[u8], r: Option<&str>) -> Result<Option<Bytes>, ClientError> {
        let pq = format!("/get?key={}{}", encode_key(key), level("r", r));
        let (status, body) = self.to_node(Method::GET, &pq, None, &[StatusCode::OK, StatusCode::NOT_FOUND]).await?;
        Ok((status == StatusCode::OK).then_some(body))
    }

    /// [`Client::put_with_ttl`] with `w=`.
    pub async fn put_at(
        &self,
        key: &[u8],
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
        w: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut pq = format!("/put?key={}{}", encode_key(key), level("w", w));
        if let Some(ttl) = ttl {
            pq += &format!("&ttl={}", ttl_param(ttl));
        }
        self.to_node(Method::PUT, &pq, Some(value.into()), &[StatusCode::NO_CONTENT]).await.map(|_| ())
    }

    /// [`Client::delete`] with `w=`.
    pub async fn delete_at(&self, key: &[u8], w: Option<&str>) -> Result<(), ClientError> {
        let pq = format!("/delete?key={}{}", encode_key(key), level("w", w));
        self.to_node(Method::DELETE, &pq, None, &[StatusCode::NO_CONTENT]).await.map(|_| ())
    }

    /// One page of `GET /scan`: the keys and the cursor of the next page (`"0"`: done).
    pub async fn scan_page(
        &self,
        cursor: &str,
        count: u16,
        prefix: Option<&[u8]>,
        pattern: Option<&[u8]>,
    ) -> Result<(String, Vec<Vec<u8>>), ClientError> {
        let mut pq = format!("/scan?cursor={}&count={count}", encode_key(cursor.as_bytes()));
        if let Some(p) = prefix {
            pq += &format!("&prefix={}", encode_key(p));
        }
        if let Some(p) = pattern {
            pq += &format!("&match={}", encode_key(p));
        }
        let page = self.node_json(&pq).await?;
        let malformed = |what: &str| ClientError::Status {
            url: format!("{}{pq}", self.base),
            status: StatusCode::OK,
            message: format!("malformed scan page: {what}"),
        };
        let next = page["cursor"].as_str().ok_or_else(|| malformed("no cursor"))?.to_string();
        let keys = page["keys"].as_array().ok_or_else(|| malformed("no keys"))?;
        let keys = keys
            .iter()
            .map(|k| dkv_node::front::keyspace::key_from_json(k).ok_or_else(|| malformed(&k.to_string())))
            .collect::<Result<_, _>>()?;
        Ok((next, keys))
    }

    /// This node's own copy of `key` (`GET /local`), without asking the other replicas.
    pub async fn local(&self, key: &[u8]) -> Result<serde_json::Value, ClientError> {
        self.node_json(&format!("/local?key={}", encode_key(key))).await
    }

    /// `GET path` as JSON, from a node or the seed alike.
    pub async fn json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let (status, body) = self.raw(Method::GET, path, None).await?;
        self.ok_json(path, status, &body)
    }

    /// `GET path` as JSON from the seed; a node is an error that says so ([`Client::to_seed`]).
    pub async fn seed_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let (status, body) = self.to_seed(Method::GET, path, None).await?;
        self.ok_json(path, status, &body)
    }

    /// A `200`'s body as JSON; any other status is the error it says.
    fn ok_json(&self, path: &str, status: StatusCode, body: &[u8]) -> Result<serde_json::Value, ClientError> {
        if status != StatusCode::OK {
            let message = String::from_utf8_lossy(body).trim().to_string();
            return Err(ClientError::Status { url: format!("{}{path}", self.base), status, message });
        }
        self.parse_json(path, body)
    }

    /// Send a request to the seed: an answer from a node, or from a server that is not dkv, is an
    /// error that says so (`dkv remove --seed <a node>` said "404 … no such path /nodes", found
    /// by a hunt, 2026-12-07).
    pub async fn to_seed(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let answer = self.send(method, path, body).await?;
        match answer.server {
            Server::Node => Err(ClientError::NodeNotSeed { base: self.base.clone() }),
            // Another server's error page was printed whole, exit 3 (found by a hunt, 2026-12-08).
            Server::Other => Err(ClientError::NotTheSeed { base: self.base.clone(), status: answer.status }),
            Server::Seed => Ok((answer.status, answer.body)),
        }
    }

    /// `GET path` as JSON from a node; the seed or another server is an error that says so.
    pub async fn node_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let (_, body) = self.to_node(Method::GET, path, None, &[StatusCode::OK]).await?;
        self.parse_json(path, &body)
    }

    fn parse_json(&self, path: &str, body: &[u8]) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Status {
            url: format!("{}{path}", self.base),
            status: StatusCode::OK,
            message: format!("not JSON: {e}"),
        })
    }
}

/// `&name=level` for a given consistency level, nothing for the node's default.
fn level(name: &str, level: Option<&str>) -> String {
    level.map_or_else(String::new, |l| format!("&{name}={}", encode_key(l.as_bytes())))
}

fn http_client(tls: Option<TlsConnector>) -> HyperClient<LenientConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false); // https:// is ours to handle
    HyperClient::builder(TokioExecutor::new()).build(LenientConnector { http: connector, tls })
}

impl crate::cli::ClientTls {
    /// The TLS connector these flags make: `None` without `--cacert`.
    pub fn connector(&self) -> Result<Option<TlsConnector>, ClientError> {
        let Some(ca) = &self.cacert else { return Ok(None) };
        let identity = self.client_cert.as_deref().zip(self.client_key.as_deref());
        let config =
            dkv_node::transport::tls::client_config(ca, identity).map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(Some(TlsConnector::from(config)))
    }
}

impl crate::cli::ClientArgs {
    /// The client for `--node`, with `--password` and `--cacert`.
    pub fn client(&self) -> Result<Client, ClientError> {
        Client::new(&self.node)
            .with_password(self.password.as_deref())
            .with_max_value(self.max_value_size)
            .with_tls(&self.tls)
    }
}

/// [`HttpConnector`] with [`Lenient`] connections, and TLS for `https://` URLs.
#[derive(Clone)]
struct LenientConnector {
    http: HttpConnector,
    tls: Option<TlsConnector>,
}

impl tower_service::Service<Uri> for LenientConnector {
    type Response = Lenient;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Lenient, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let https = dst.scheme_str() == Some("https");
        let host = dst.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
        let tls = self.tls.clone();
        let connecting = self.http.call(dst);
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let io = match (https, tls) {
                (false, _) => Outgoing::Plain(tcp),
                (true, None) => {
                    return Err("an https:// node needs --cacert FILE (the CA that signed its certificate)".into())
                }
                (true, Some(tls)) => {
                    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)?;
                    Outgoing::Tls(Box::new(tls.connect(name, tcp).await?))
                }
            };
            Ok(Lenient { io: TokioIo::new(io), closed: false })
        })
    }
}

/// A connection on which a write the server refused by closing (broken pipe, reset) counts as
/// written, as does every write after it: the server has stopped reading, and its answer, if it
/// sent one, is still there to read. Without an answer, the read fails and that is reported.
pub struct Lenient {
    io: TokioIo<Outgoing>,
    /// The server closed the connection while we were writing.
    closed: bool,
}

fn server_closed(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
}

impl Lenient {
    fn written(&mut self, result: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Err(e)) if server_closed(&e) => {
                self.closed = true;
                Poll::Ready(Ok(len))
            }
            other => other,
        }
    }
}

impl hyper::rt::Read for Lenient {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Lenient {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.written(result, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.closed {
            return Poll::Ready(Ok(len));
        }
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.written(result, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.closed {
            true => Poll::Ready(Ok(())),
            false => Pin::new(&mut self.io).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.closed {
            true => Poll::Ready(Ok(())),
            false => Pin::new(&mut self.io).poll_shutdown(cx),
        }
    }
}

impl Connection for Lenient {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_tells_who_answered() {
        let mut h = HeaderMap::new();
        assert_eq!(Server::of(&h), Server::Other);
        h.insert(SEED_HEADER, "0.1.0".parse().unwrap());
        assert_eq!(Server::of(&h), Server::Seed);
        h.insert(NODE_HEADER, "00ab".parse().unwrap());
        assert_eq!(Server::of(&h), Server::Node);
    }

    #[test]
    fn a_long_url_is_cut_in_errors() {
        let url = format!("http://h:1/put?key={}", "k".repeat(9000));
        let e =
            ClientError::Status { url: url.clone(), status: StatusCode::PAYLOAD_TOO_LARGE, message: "too big".into() };
        let text = e.to_string();
        assert!(text.len() < 400 && text.contains("(8819 more bytes) answered 413"), "{text}");
        let short = ClientError::Unreachable { url: "http://h:1/get?key=a".into(), reason: "refused".into() };
        assert_eq!(short.to_string(), "cannot reach http://h:1/get?key=a: refused");
    }

    /// hyper's words for a TLS port called in the clear, and the other way round, come with
    /// what to do (found by trying, 2026-12-06).
    #[test]
    fn a_scheme_that_does_not_match_the_port_is_named() {
        let plain = with_scheme_hint("http://h:1", "invalid HTTP version parsed".into());
        assert!(plain.ends_with("use https:// with --cacert)"), "{plain}");
        let tls = with_scheme_hint("https://h:1", "received corrupt message of type InvalidContentType".into());
        assert!(tls.ends_with("use http://)"), "{tls}");
        assert_eq!(with_scheme_hint("http://h:1", "Connection refused".into()), "Connection refused");
    }

    #[test]
    fn an_empty_answer_is_said_to_be_empty() {
        let e = ClientError::Status { url: "u".into(), status: StatusCode::NOT_FOUND, message: String::new() };
        assert_eq!(e.to_string(), "u answered 404 Not Found: (with an empty body)");
        let e = ClientError::NotANode { base: "http://h:1".into(), status: StatusCode::NOT_FOUND };
        assert!(e.to_string().starts_with("http://h:1 is not a dkv node: it answered 404 Not Found"), "{e}");
    }

    /// A certificate refused either way, and an https:// node without --cacert, are refusals
    /// (exit 2: trying again changes nothing); a node that does not answer may later (exit 3).
    #[test]
    fn certificate_refusals_exit_2_and_unreachable_nodes_3() {
        let unreachable = |reason: &str| ClientError::Unreachable { url: "https://h:1".into(), reason: reason.into() };
        for reason in [
            "invalid peer certificate: UnknownIssuer",
            "invalid peer certificate: certificate not valid for name \"127.0.0.1\"",
            "received fatal alert: CertificateExpired",
            "received fatal alert: UnknownCA",
            "client error (SendRequest): invalid HTTP version parsed",
            "received corrupt message of type InvalidContentType",
        ] {
            assert_eq!(unreachable(reason).exit_code(), 2, "{reason}");
        }
        assert_eq!(unreachable("tcp connect error: Connection refused (os error 111)").exit_code(), 3);
        let Err(e) = Client::new("https://h:1").with_tls(&crate::cli::ClientTls::default()) else {
            panic!("an https:// node without --cacert taken")
        };
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("give --cacert FILE"), "{e}");
        assert!(Client::new("http://h:1").with_tls(&crate::cli::ClientTls::default()).is_ok());
    }
}
