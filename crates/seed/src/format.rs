//! Content negotiation: the seed speaks JSON to people, curl, the dashboard and nodes of older
//! releases, and the compact encoding (`dkv_membership::compact`) to nodes that ask for it.
//!
//! A request body is read as compact when its `Content-Type` names the compact media type, and
//! as JSON otherwise (whatever it says, as before). An answer is compact when the request's
//! `Accept` names the compact media type *at this seed's format version*; a node of another
//! release that names another version gets JSON, which every release reads.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dkv_membership::compact::{self, Compact, CompactError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format version of the compact encoding: the internal transport's, so a node and a seed
/// of one release always agree.
pub const VERSION: u8 = dkv_transport::frame::VERSION;

static COMPACT_TYPE: LazyLock<HeaderValue> =
    LazyLock::new(|| HeaderValue::from_str(&compact::content_type(VERSION)).expect("an ASCII media type"));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Compact,
}

impl Format {
    /// The format to answer `headers` in.
    pub fn answer(headers: &HeaderMap) -> Format {
        let asks = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|a| compact::accepts(a, VERSION));
        if asks {
            Format::Compact
        } else {
            Format::Json
        }
    }
}

/// A request body in the format its `Content-Type` names; the error is the status and the line
/// to answer with.
pub fn decode<T: DeserializeOwned + Compact>(headers: &HeaderMap, body: &[u8]) -> Result<T, (StatusCode, String)> {
    let compact_version =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(compact::compact_version);
    match compact_version {
        None => serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, json_error(&e, body))),
        Some(v) if v != VERSION => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{} version {v}: this seed speaks version {VERSION}, or JSON", compact::MEDIA_TYPE),
        )),
        Some(_) => compact::decode(body, VERSION).map_err(|e| match e {
            CompactError::Version { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
            e => (StatusCode::BAD_REQUEST, e.to_string()),
        }),
    }
}

/// What is wrong with a JSON body. serde's words for JSON that is not an object name the Rust
/// type (`expected struct RegisterRequest with 7 elements`, for `[]`): say what it is instead
/// (found by trying, 2026-12-07).
fn json_error(e: &serde_json::Error, body: &[u8]) -> String {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let got = match first {
        _ if e.classify() != serde_json::error::Category::Data => None,
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'n') => Some("null"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        _ => None,
    };
    match got {
        Some(got) => format!(
            "invalid JSON body: {got}, where the seed takes an object with the fields the README's seed API lists"
        ),
        None => format!("invalid JSON body: {e}"),
    }
}

/// `value` as a `200` answer in `format`.
pub fn encode<T: Serialize + Compact>(format: Format, value: &T) -> Response {
    let mut answer = match format {
        Format::Json => Json(value).into_response(),
        Format::Compact => {
            ([(header::CONTENT_TYPE, COMPACT_TYPE.clone())], Bytes::from(compact::encode(value, VERSION)))
                .into_response()
        }
    };
    // The same path answers in two formats: caches must key on what was asked for.
    answer.headers_mut().insert(header::VARY, HeaderValue::from_static("accept"));
    answer
}
