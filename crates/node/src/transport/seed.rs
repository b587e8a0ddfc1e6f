//! Calls to the seed, in its compact encoding when it speaks it.
//!
//! Every call asks for the compact encoding of this release's format version (`Accept`), with
//! JSON as the alternative; the answer is read by its `Content-Type`, so a seed of another release,
//! which answers JSON, is understood too. Request bodies are sent compact only once the seed has
//! answered compact (a first registration goes in JSON); if a compact body is then refused as
//! unreadable (`415`, or `400` from a seed that reads only JSON, say one downgraded meanwhile),
//! the call is made again in JSON and JSON is kept until the seed answers compact again.
//!
//! Heartbeats, the one call made all the time, go over the binary transport instead, on a
//! [`dkv_transport::Line`] kept open to the seed: it costs the node and the seed a third less
//! than an HTTP call (docs/performance-log.md, "Membership at scale"). A seed that refuses the transport's handshake (one
//! of an older release, which answers it as bad HTTP) gets its heartbeats over HTTP, and the
//! transport is tried again after [`LINE_RETRY`]. A wrong secret or cluster name is refused by
//! both, so the HTTP answer says what is wrong, as it always did.

use std::sync::atomic::Ordering;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use dkv_membership::api::{HeartbeatAnswer, IdRequest, SEED_HEARTBEAT_KIND};
use dkv_membership::compact::{self, Compact};
use dkv_transport::CallError;
use http::{HeaderValue, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::PeerError;
use crate::transport::peer::{protocol, status_is, Peers};

/// The compact encoding's format version: the internal transport's (see `dkv_membership::compact`).
pub const VERSION: u8 = dkv_transport::frame::VERSION;

static COMPACT: LazyLock<HeaderValue> =
    LazyLock::new(|| HeaderValue::from_str(&compact::content_type(VERSION)).expect("an ASCII media type"));
static ACCEPT: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&format!("{}, application/json;q=0.5", compact::content_type(VERSION)))
        .expect("an ASCII media type")
});

/// How long heartbeats go over HTTP after the seed refused the transport.
const LINE_RETRY: Duration = Duration::from_secs(60);

impl Peers {
    /// Heartbeat the seed at `addr`: over the transport, given up when `until` resolves (`after`
    /// says how long that is, for the error), or over HTTP, within the request timeout, while the
    /// seed does not speak the transport.
    pub async fn seed_heartbeat(
        &self,
        addr: &str,
        req: &IdRequest,
        until: impl std::future::Future<Output = ()>,
        after: Duration,
    ) -> Result<HeartbeatAnswer, PeerError> {
        if self.seed_line_on() {
            let body = |b: &mut bytes::BytesMut| compact::encode_into(req, VERSION, b);
            match self.seed_line.call_until(addr, SEED_HEARTBEAT_KIND, body, until, after).await {
                Ok(answer) => return compact::decode(&answer, VERSION).map_err(|e| protocol(addr, e)),
                Err(e @ CallError::Handshake { .. }) => {
                    tracing::info!(
                        seed = addr,
                        "the seed refused heartbeats over the transport ({e}); sending them over HTTP for {LINE_RETRY:?}"
                    );
                    *self.seed_line_off.lock().expect("seed line lock") = Some(Instant::now() + LINE_RETRY);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.seed_call(addr, Method::POST, "/heartbeat", Some(req)).await
    }

    /// The seed's node TTL, from its `GET /health` (`None` from a seed that does not say).
    pub async fn seed_ttl(&self, addr: &str) -> Result<Option<Duration>, PeerError> {
        let json = HeaderValue::from_static("application/json");
        let (_, body) = self.http(addr, Method::GET, "/health", json, None, None).await?;
        let health: dkv_membership::api::SeedHealth = serde_json::from_slice(&body).map_err(|e| protocol(addr, e))?;
        Ok(health.node_ttl_ms.filter(|ms| *ms > 0).map(Duration::from_millis))
    }

    fn seed_line_on(&self) -> bool {
        let mut off = self.seed_line_off.lock().expect("seed line lock");
        match *off {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                *off = None;
                true
            }
            None => true,
        }
    }

    /// Call the seed at `addr`: `body` goes in the encoding the seed last answered in, and the
    /// answer is decoded by its content type.
    pub async fn seed_call<Req, Resp>(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Resp, PeerError>
    where
        Req: Serialize + Compact,
        Resp: DeserializeOwned + Compact,
    {
        let compact_body = body.is_some() && self.seed_compact.load(Ordering::Relaxed);
        let answer = if compact_body {
            let bytes = body.map(|b| compact::encode(b, VERSION));
            match self.http(addr, method.clone(), path, COMPACT.clone(), bytes, Some(ACCEPT.clone())).await {
                Err(e)
                    if status_is(&e, StatusCode::UNSUPPORTED_MEDIA_TYPE) || status_is(&e, StatusCode::BAD_REQUEST) =>
                {
                    tracing::debug!(seed = addr, "the seed refused a compact body ({e}); calling again in JSON");
                    self.seed_compact.store(false, Ordering::Relaxed);
                    None
                }
                answer => Some(answer),
            }
        } else {
            None
        };
        let (content_type, bytes) = match answer {
            Some(answer) => answer?,
            None => {
                let json = body.map(|b| serde_json::to_vec(b).expect("JSON encoding of our own types"));
                let json_type = HeaderValue::from_static("application/json");
                self.http(addr, method, path, json_type, json, Some(ACCEPT.clone())).await?
            }
        };
        let version = content_type.as_ref().and_then(|v| v.to_str().ok()).and_then(compact::compact_version);
        let compact_answer = version == Some(VERSION);
        self.seed_compact.store(compact_answer, Ordering::Relaxed);
        if compact_answer {
            compact::decode(&bytes, VERSION).map_err(|e| protocol(addr, e))
        } else {
            serde_json::from_slice(&bytes).map_err(|e| protocol(addr, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Bytes;
    use axum::http::{header, HeaderMap};
    use axum::response::IntoResponse;
    use dkv_membership::api::LeaveRequest;
    use dkv_membership::{NodeId, View};

    use super::*;

    /// A seed that answers `POST /leave` with a view: compact when `compact` and asked for,
    /// refusing compact bodies with `refuse` (a seed of another release, or of an older one).
    /// Counts the compact bodies it was sent. It answers `POST /heartbeat` with epoch 7, in
    /// JSON, and knows nothing of the transport.
    async fn fake_seed(compact: bool, refuse: StatusCode, bodies: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let leave = move |headers: HeaderMap, body: Bytes| async move {
            let view = View { epoch: 7, nodes: vec![] };
            let sent_compact = headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == COMPACT.as_bytes());
            if sent_compact {
                bodies.fetch_add(1, Ordering::Relaxed);
                return (refuse, "no\n").into_response();
            }
            let _: LeaveRequest = serde_json::from_slice(&body).expect("a JSON body");
            let asks =
                headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| compact::accepts(a, VERSION));
            if compact && asks {
                ([(header::CONTENT_TYPE, COMPACT.clone())], compact::encode(&view, VERSION)).into_response()
            } else {
                axum::Json(view).into_response()
            }
        };
        let heartbeat = || async {
            axum::Json(HeartbeatAnswer {
                epoch: 7,
                digest: None,
                nodes: None,
                changes: None,
                now_ms: None,
                clock: None,
            })
        };
        let app = axum::Router::new()
            .route("/leave", axum::routing::post(leave))
            .route("/heartbeat", axum::routing::post(heartbeat));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn the_seed_is_spoken_to_in_the_encoding_it_answers_in() {
        let peers = Peers::new(Duration::from_secs(5), "dkv", None, 1 << 20, None, false);
        let req = LeaveRequest { id: NodeId(1), done: false };
        let call = |addr: String| {
            let (peers, req) = (&peers, &req);
            async move { peers.seed_call::<_, View>(&addr, Method::POST, "/leave", Some(req)).await.map(|v| v.epoch) }
        };

        // A seed of an older release: JSON both ways.
        let old = fake_seed(false, StatusCode::BAD_REQUEST, Arc::default()).await;
        assert_eq!(call(old.clone()).await.unwrap(), 7);
        assert!(!peers.seed_compact.load(Ordering::Relaxed));

        // A seed that answers compact: the next bodies go compact too. This one then refuses
        // them (a seed replaced by another release): the call is made again in JSON.
        for refuse in [StatusCode::UNSUPPORTED_MEDIA_TYPE, StatusCode::BAD_REQUEST] {
            assert_eq!(call(old.clone()).await.unwrap(), 7);
            let bodies = Arc::new(AtomicUsize::new(0));
            let seed = fake_seed(true, refuse, bodies.clone()).await;
            assert_eq!(call(seed.clone()).await.unwrap(), 7, "first call: a JSON body, a compact answer");
            assert_eq!(bodies.load(Ordering::Relaxed), 0);
            assert!(peers.seed_compact.load(Ordering::Relaxed));
            assert_eq!(call(seed.clone()).await.unwrap(), 7, "a compact body refused, then JSON");
            assert_eq!(bodies.load(Ordering::Relaxed), 1);
        }
        assert_eq!(call(old).await.unwrap(), 7);
        assert!(!peers.seed_compact.load(Ordering::Relaxed), "JSON again after a JSON answer");
    }

    #[tokio::test]
    async fn heartbeats_go_over_http_to_a_seed_that_does_not_speak_the_transport() {
        let peers = Peers::new(Duration::from_secs(5), "dkv", None, 1 << 20, None, false);
        let old = fake_seed(false, StatusCode::BAD_REQUEST, Arc::default()).await;
        let req = IdRequest::id(NodeId(1));
        for beat in 0..2 {
            let within = Duration::from_secs(5);
            let answer = peers
                .seed_heartbeat(&old, &req, tokio::time::sleep(within), within)
                .await
                .unwrap_or_else(|e| panic!("heartbeat {beat}: {e}"));
            assert_eq!(answer.epoch, 7);
            assert!(!peers.seed_line_on(), "heartbeat {beat}: HTTP for a while");
        }
    }
}
