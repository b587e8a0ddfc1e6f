//! `dkv scan` and `dkv where`: looking at the keyspace rather than at one value.
//!
//! * `dkv scan [--prefix P] [--match GLOB]` walks `GET /scan` page by page and prints every key
//!   on a line of its own as it arrives, so `dkv scan | head` stops the walk early (a closed pipe
//!   ends the command quietly, see `out.rs`). Keys are bytes: a key that is plain UTF-8 prints
//!   as it is; a byte that is not UTF-8 or a control character prints as `\xNN` (`\n`, `\r`,
//!   `\t` for those), and a backslash as `\\`, so every line stands for one key and reads back
//!   to it ([`escape`]).
//! * `dkv where KEY` computes the key's replicas from `GET /cluster` (members and their tokens;
//!   the same ring code as the nodes, `dkv-membership`'s `Topology`) and asks each one for its
//!   own copy (`GET /local`, no quorum): its member state, whether it holds a value, a
//!   tombstone or nothing, and the version, marking copies older than the newest.

use std::fmt::Write as _;

use dkv_membership::{Member, NodeId, Topology, View};
use serde_json::{json, Value};

use crate::cli::{ScanArgs, WhereArgs};
use crate::commands::{client, exit, fail, fail_with};
use crate::outln;

/// `key` as one line of `dkv scan`: unchanged when it is UTF-8 without control characters or
/// backslashes; otherwise those bytes escaped, so the line is unambiguous.
pub fn escape(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    // Its UTF-8 bytes, so the escape reads back to them.
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The key a line of [`escape`] stands for: `\\`, `\n`, `\r`, `\t` and `\xNN` read back to their
/// bytes; any other backslash is an error, so a mistyped key is not sent as another one.
pub fn unescape(line: &str) -> Result<Vec<u8>, String> {
    let bytes = line.as_bytes();
    let mut key = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            key.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        let (byte, len) = match bytes.get(i + 1) {
            Some(b'\\') => (b'\\', 2),
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            Some(b't') => (b'\t', 2),
            Some(b'x') => match (hex(i + 2), hex(i + 3)) {
                (Some(hi), Some(lo)) => ((hi * 16 + lo) as u8, 4),
                _ => return Err(format!("{line:?}: \\x takes two hex digits (\\x0a)")),
            },
            _ => {
                return Err(format!(
                    "{line:?}: with --escaped a backslash starts \\\\, \\n, \\r, \\t or \\xNN, as dkv scan prints keys"
                ))
            }
        };
        key.push(byte);
        i += len;
    }
    Ok(key)
}

pub async fn scan(args: ScanArgs) -> i32 {
    let client = client(&args.client);
    // A prefix that is not UTF-8 is given as `dkv scan` prints it (found by trying, 2026-12-07).
    let prefix = match (&args.prefix, args.escaped) {
        (Some(p), true) => match unescape(p) {
            Ok(p) => Some(p),
            Err(e) => return fail_with(exit::REFUSED, format!("--prefix: {e}")),
        },
        (p, _) => p.clone().map(String::into_bytes),
    };
    let (prefix, pattern) = (prefix.as_deref(), args.pattern.as_deref().map(str::as_bytes));
    let mut cursor = "0".to_string();
    loop {
        let (next, keys) = match client.scan_page(&cursor, args.count, prefix, pattern).await {
            Ok(page) => page,
            Err(e) => return fail(e),
        };
        if !keys.is_empty() {
            let mut lines = String::new();
            for k in &keys {
                lines.push_str(&escape(k));
                lines.push('\n');
            }
            crate::out::stdout(lines.as_bytes());
        }
        if next == "0" {
            return 0;
        }
        cursor = next;
    }
}

pub async fn where_is(args: WhereArgs) -> i32 {
    match locate(&args).await {
        Ok(report) if args.json => {
            outln!("{report:#}");
            0
        }
        Ok(report) => {
            // As `dkv scan` prints keys, which `--escaped` reads back (Rust's debug form before,
            // `"n\0b"`, which it did not: found by a hunt, 2026-12-07).
            let shown = args.key.bytes().map(|k| escape(&k)).unwrap_or_else(|_| args.key.key.clone());
            print(&report, &shown);
            0
        }
        Err(e) => fail(e),
    }
}

/// How long one replica may take to show its copy.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Where `args.key` lives and what each of its nodes holds, as JSON (printed by [`print()`]).
async fn locate(args: &WhereArgs) -> Result<Value, crate::client::ClientError> {
    let client = client(&args.client);
    let key = &args.key.bytes().map_err(crate::client::ClientError::Usage)?[..];
    let cluster = client.node_json("/cluster").await?;
    let stats = client.node_json("/stats").await?;
    let replicas = stats["replicas"].as_u64().unwrap_or(3) as usize;
    let members: Vec<Member> =
        serde_json::from_value(cluster["members"].clone()).map_err(|e| crate::client::ClientError::Status {
            url: format!("{}/cluster", client.base()),
            status: http::StatusCode::OK,
            message: format!("members not understood: {e}"),
        })?;
    let epoch = cluster["epoch"].as_u64().unwrap_or(0);
    let topo = Topology::new(View { epoch, nodes: members }, NodeId(0), replicas);
    let placement = topo.placement(dkv_placement::key_hash(key));
    // Every replica asked at once, each for ASK_TIMEOUT at most: one after the other, a paused
    // replica held the answer for the client's 10 s (found by trying, 2026-12-06).
    let holders: Vec<_> =
        placement.write.iter().enumerate().filter_map(|(i, &id)| Some((i, id, topo.member(id)?))).collect();
    let asked = holders.iter().map(|(_, _, m)| {
        let replica = client.sibling(&m.addr);
        async move {
            tokio::time::timeout(ASK_TIMEOUT, replica.local(key)).await.unwrap_or_else(|_| {
                let (url, reason) = (format!("{}/local", replica.base()), format!("no answer within {ASK_TIMEOUT:?}"));
                Err(crate::client::ClientError::Unreachable { url, reason })
            })
        }
    });
    let copies = futures_util::future::join_all(asked).await;
    let mut nodes = Vec::new();
    for ((i, id, m), copy) in holders.into_iter().zip(copies) {
        // Read replicas hold the key now; the others (joining, or taking over from a leaving
        // node) get its writes and will hold it once the move is done.
        let role = if i < placement.read.len() { "replica" } else { "incoming" };
        let copy = match copy {
            Ok(c) => {
                json!({ "state": c["state"], "version": c["version"], "bytes": c["bytes"], "expires_at_ms": c["expires_at_ms"] })
            }
            // Refused for the key itself (empty, too long): no replica is unreachable, the key is
            // wrong, and the node says why.
            // So is a password missing or wrong (every replica said "unreachable", exit code 0,
            // found by trying, 2026-12-06).
            Err(e @ crate::client::ClientError::Status { status, .. })
                if status == http::StatusCode::BAD_REQUEST
                    || status == http::StatusCode::PAYLOAD_TOO_LARGE
                    || status == http::StatusCode::UNAUTHORIZED
                    || status == http::StatusCode::FORBIDDEN =>
            {
                return Err(e)
            }
            Err(e) => json!({ "state": "unreachable", "error": e.to_string() }),
        };
        nodes.push(json!({ "id": id, "addr": m.addr, "member_state": m.state, "role": role, "copy": copy }));
    }
    mark_newest(&mut nodes);
    Ok(json!({
        "key": dkv_node::front::keyspace::key_json(key),
        "hash": dkv_placement::key_hash(key).to_string(),
        "epoch": epoch,
        "replicas": replicas,
        "via": client.base(),
        "nodes": nodes,
    }))
}

/// Mark each copy `newest` when no other node holds a higher version, so a stale replica shows.
fn mark_newest(nodes: &mut [Value]) {
    let version = |n: &Value| {
        let v = &n["copy"]["version"];
        v["ts"].as_u64().map(|ts| (ts, v["node"].as_str().unwrap_or("").to_string()))
    };
    let newest = nodes.iter().filter_map(version).max();
    for n in nodes.iter_mut() {
        let is_newest = version(n).is_some() && version(n) == newest;
        n["copy"]["newest"] = Value::Bool(is_newest);
    }
}

fn print(report: &Value, key: &str) {
    outln!(
        "key \"{key}\"  hash {}  (epoch {}, N = {}, as seen by {})",
        report["hash"].as_str().unwrap_or("?"),
        report["epoch"],
        report["replicas"],
        report["via"].as_str().unwrap_or("?"),
    );
    outln!("{:<9} {:<18} {:<22} {:<8} {:<12} {:>10}  VERSION", "ROLE", "ID", "ADDR", "STATE", "COPY", "BYTES");
    for n in report["nodes"].as_array().into_iter().flatten() {
        let c = &n["copy"];
        let version = match c["version"]["ts"].as_u64() {
            Some(ts) => {
                let mark = if c["newest"] == true { "" } else { "  (older)" };
                format!(
                    "{ts} by {} ({}){mark}",
                    c["version"]["node"].as_str().unwrap_or("?"),
                    crate::commands::utc(c["version"]["time_ms"].as_u64().unwrap_or(0))
                )
            }
            None => "-".into(),
        };
        outln!(
            "{:<9} {:<18} {:<22} {:<8} {:<12} {:>10}  {}",
            n["role"].as_str().unwrap_or("?"),
            n["id"].as_str().unwrap_or("?"),
            n["addr"].as_str().unwrap_or("?"),
            n["member_state"].as_str().unwrap_or("?"),
            c["state"].as_str().unwrap_or("?"),
            c["bytes"].as_u64().map_or_else(|| "-".into(), |b| b.to_string()),
            version
        );
    }
    // Why a replica could not be asked: only `--json` said it (found by trying, 2026-12-06).
    for n in report["nodes"].as_array().into_iter().flatten() {
        if let Some(e) = n["copy"]["error"].as_str() {
            outln!("{} ({}): {e}", n["id"].as_str().unwrap_or("?"), n["addr"].as_str().unwrap_or("?"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_as_they_are_unless_a_byte_needs_escaping() {
        assert_eq!(escape(b"user:1"), "user:1");
        assert_eq!(escape("Zürich €".as_bytes()), "Zürich €");
        assert_eq!(escape(b"caf\xe9"), "caf\\xe9");
        assert_eq!(escape(b"a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash", "a backslash is escaped, so \\x41 reads back");
        assert_eq!(escape(b"\x00\x7f\xff"), "\\x00\\x7f\\xff");
        for key in [&b"caf\xe9"[..], b"a\nb\tc\r", b"back\\slash", b"\x00\x7f\xff", "\u{85}\u{e9}x".as_bytes(), b""] {
            assert_eq!(unescape(&escape(key)).as_deref(), Ok(key), "{}", escape(key));
        }
        assert!(unescape("a\\qb").unwrap_err().contains("--escaped"));
        assert!(unescape("a\\x4").unwrap_err().contains("two hex digits"));
        assert_eq!(escape("\u{85}".as_bytes()), "\\xc2\\x85", "a C1 control character, as its bytes");
    }

    #[test]
    fn the_newest_copy_is_marked() {
        let node = |ts: Option<u64>, who: &str| {
            let version = ts.map_or(Value::Null, |ts| json!({ "ts": ts, "node": who, "time_ms": 0 }));
            json!({ "copy": { "version": version } })
        };
        let mut nodes = vec![node(Some(5), "a"), node(Some(7), "b"), node(None, ""), node(Some(7), "b")];
        mark_newest(&mut nodes);
        let marks: Vec<bool> = nodes.iter().map(|n| n["copy"]["newest"] == true).collect();
        assert_eq!(marks, [false, true, false, true]);
    }
}
