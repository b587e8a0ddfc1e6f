//! Calls to the seed, in its compact encoding when it speaks it.
//!
//! Every call asks for the compact encoding of this release's format version (`Accept`), with
//! JSON as the alternative; the answer is read by its `Content-Type`, so a seed of another release,
//! which answers JSON, is understood too. Request bodies are sent compact only once the seed has
//! answered compact (a first registration goes in JSON); if a compact body is then refused as
//! unreadable (`415`, or `400` from a seed that reads only JSON, say one downgraded meanwhile),
//! the call is made again in JSON and JSON is kept until the seed answers compact again.

use std::sync::atomic::Ordering;
use std::sync::LazyLock;

use dkv_membership::compact::{self, Compact};
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

impl Peers {
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
    /// Counts the compact bodies it was sent.
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
        let app = axum::Router::new().route("/leave", axum::routing::post(leave));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn the_seed_is_spoken_to_in_the_encoding_it_answers_in() {
        let peers = Peers::new(Duration::from_secs(5), "dkv", None, 1 << 20, None);
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
}
