//! What HTTP clients ask about the keyspace rather than about one key's value:
//!
//! * `GET /scan?cursor=C&count=N&prefix=P&match=GLOB`: one page of the cluster-wide key scan
//!   (`replication/scan.rs`), `{"cursor": "…", "keys": [...]}`. The cursor is a decimal string,
//!   `"0"` at the start and once the scan is done. Keys are arbitrary bytes, so each is an object
//!   that says how it is written ([`key_json`]): `{"utf8": "user:1"}` for a key that is valid
//!   UTF-8, else `{"percent": "caf%E9"}`, the encoding of the `key=` parameter, ready to paste
//!   into `/get?key=`.
//! * `GET /local?key=K`: what *this node* stores for the key, without asking any other replica
//!   (no quorum): its version, whether it is a value, a tombstone or absent, and whether this
//!   node is one of the key's replicas under its view. `dkv where` asks each replica for it.

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use dkv_placement::key_hash;
use dkv_storage::{Entry, Hlc, Version};
use serde_json::{json, Value};

use crate::error::NodeError;
use crate::front::limits::CHARGE_FROM;
use crate::front::{answers, query};
use crate::life::state::Node;
use crate::replication::scan::{is_live, MAX_COUNT};
use crate::transport::wire::KeyFilter;

/// `count` when the request gives none.
pub const DEFAULT_COUNT: u64 = 1000;

/// A key as JSON: `{"utf8": "…"}` when it is valid UTF-8, else `{"percent": "…"}` (the `key=`
/// parameter's encoding).
pub fn key_json(key: &[u8]) -> Value {
    match std::str::from_utf8(key) {
        Ok(s) => json!({ "utf8": s }),
        Err(_) => json!({ "percent": query::encode_key(key) }),
    }
}

/// The bytes of a key written by [`key_json`]; `None` for anything else.
pub fn key_from_json(v: &Value) -> Option<Vec<u8>> {
    if let Some(s) = v["utf8"].as_str() {
        return Some(s.as_bytes().to_vec());
    }
    let p = v["percent"].as_str()?;
    Some(percent_encoding::percent_decode_str(p).collect())
}

/// A version as JSON: the hybrid-clock timestamp, the id of the node that wrote it, and the wall
/// clock millisecond it stands for.
pub fn version_json(v: Version) -> Value {
    json!({ "ts": v.ts, "node": dkv_membership::NodeId(v.node), "time_ms": Hlc::ms_of(v.ts) })
}

pub async fn scan(State(node): State<Node>, uri: Uri) -> Response {
    // A page may hold 10 000 keys of 8 KiB: charged while it waits for the client to read it
    // (2 HTTP/2 connections with 256 unread pages each held 1.5 GB outside the budget, found by
    // trying, 2026-12-06).
    match scan_page(&node, &uri).await.map(|v| serde_json::to_vec(&v)) {
        Ok(Ok(page)) if page.len() < CHARGE_FROM => {
            ([(axum::http::header::CONTENT_TYPE, "application/json")], page).into_response()
        }
        Ok(Ok(page)) => crate::front::http::charged_body(&node, page.into(), "application/json"),
        Ok(Err(e)) => NodeError::Internal(format!("a scan page could not be encoded: {e}")).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn scan_page(node: &Node, uri: &Uri) -> Result<Value, NodeError> {
    let params = query::parse(uri.query(), uri.path(), answers::params(uri.path()))?;
    let cursor = params.number("cursor", 0, u64::MAX)?.unwrap_or(0);
    let count = params.number("count", 1, MAX_COUNT as u64)?.unwrap_or(DEFAULT_COUNT);
    let filter = KeyFilter { prefix: params.bytes("prefix").unwrap_or_default(), pattern: params.bytes("match") };
    let page = node.scan(cursor, count as usize, &filter).await?;
    let keys: Vec<Value> = page.keys.iter().map(|k| key_json(k)).collect();
    Ok(json!({ "cursor": page.cursor.to_string(), "keys": keys }))
}

pub async fn local(State(node): State<Node>, uri: Uri) -> Response {
    let key = query::parse(uri.query(), uri.path(), answers::params(uri.path()))
        .and_then(|mut p| p.key(node.config.max_key_bytes));
    let key: Bytes = match key {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let hash = key_hash(&key);
    match node.engine.get(hash, &key) {
        Ok(entry) => Json(local_json(&node, hash, entry.as_ref())).into_response(),
        Err(e) => NodeError::from(e).into_response(),
    }
}

fn local_json(node: &Node, hash: u64, entry: Option<&Entry>) -> Value {
    let topo = node.topology();
    let now = node.cluster_wall_ms();
    let state = match entry {
        None => "absent",
        Some(e) if is_live(e, now) => "value",
        Some(e) if e.is_tombstone() => "tombstone",
        Some(_) => "expired",
    };
    json!({
        "id": node.me,
        "epoch": topo.epoch(),
        "hash": hash.to_string(),
        "replica": topo.is_read_replica(node.me, hash),
        "state": state,
        "version": entry.map(|e| version_json(e.version)),
        "bytes": entry.map_or(0, Entry::value_len),
        "expires_at_ms": entry.and_then(|e| e.expires),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_so_they_read_back_exactly() {
        assert_eq!(key_json(b"user:1"), json!({ "utf8": "user:1" }));
        assert_eq!(key_json("Zürich".as_bytes()), json!({ "utf8": "Zürich" }));
        assert_eq!(key_json(b"caf\xe9 x"), json!({ "percent": "caf%E9%20x" }));
        for key in [&b"plain"[..], b"\xff\x00\n", "é".as_bytes(), b"a%20b"] {
            assert_eq!(key_from_json(&key_json(key)).as_deref(), Some(key));
        }
        assert_eq!(key_from_json(&json!({ "other": 1 })), None);
    }
}
