//! Client commands: `get`, `put`, `del`, `ttl`, `status`, `health`. Each returns the process exit
//! code.

use std::io::Read;

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::cli::{ClientArgs, DelArgs, GetArgs, HealthArgs, KeyArgs, LeaveArgs, PutArgs, StatusArgs};
use crate::client::{Client, KeyTtl};
use crate::{errln, outln};
use dkv_node::front::keyspace::key_json;

pub(crate) fn fail(e: impl std::fmt::Display) -> i32 {
    errln!("dkv: {e}");
    1
}

/// The client for `--node` with `--password` and `--cacert`; a `--cacert` that does not load
/// ends the command with its reason.
pub(crate) fn client(args: &ClientArgs) -> Client {
    args.client().unwrap_or_else(|e| std::process::exit(fail(e)))
}

/// Print the value; with `--json`, `{"key", "found", "value"}`. A missing key is exit code 1.
/// On a terminal the output ends with a newline, so the prompt does not follow the value.
pub async fn get(args: GetArgs) -> i32 {
    let found = client(&args.client).get_at(args.key.as_bytes(), args.r.as_deref()).await;
    match found {
        Ok(v) if args.json => {
            let key = key_json(args.key.as_bytes());
            let json = serde_json::json!({ "key": key, "found": v.is_some(), "value": v.as_deref().map(key_json) });
            outln!("{json}");
            i32::from(v.is_none())
        }
        Ok(Some(v)) => {
            crate::out::stdout(&v);
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) && !v.ends_with(b"\n") {
                crate::out::stdout(b"\n");
            }
            0
        }
        Ok(None) => fail(format!("key {:?} not found", args.key)),
        Err(e) => fail(e),
    }
}

pub async fn put(args: PutArgs) -> i32 {
    let value = if args.value == "-" {
        let mut buf = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
            return fail(format!("reading the value from stdin: {e}"));
        }
        Bytes::from(buf)
    } else {
        Bytes::from(args.value.into_bytes())
    };
    match client(&args.client).put_at(args.key.as_bytes(), value, args.ttl, args.w.as_deref()).await {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// Print how long the key has left (`9m 59s 873ms`, then its deadline in UTC), or `no expiry`;
/// a missing key is an error, as for `get`.
pub async fn ttl(args: KeyArgs) -> i32 {
    match client(&args.client).ttl(args.key.as_bytes()).await {
        Ok(Some(KeyTtl { ttl_ms: Some(ms), expires_at_ms: Some(at) })) => {
            let left = humantime::format_duration(std::time::Duration::from_millis(ms));
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
            outln!("{left} (at {})", humantime::format_rfc3339_millis(at));
            0
        }
        Ok(Some(_)) => {
            outln!("no expiry");
            0
        }
        Ok(None) => fail(format!("key {:?} not found", args.key)),
        Err(e) => fail(e),
    }
}

pub async fn del(args: DelArgs) -> i32 {
    match client(&args.client).delete_at(args.key.as_bytes(), args.w.as_deref()).await {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

pub async fn health(args: HealthArgs) -> i32 {
    let (base, path) = match args.url.find("://").and_then(|i| args.url[i + 3..].find('/').map(|j| i + 3 + j)) {
        Some(split) => (&args.url[..split], &args.url[split..]),
        None => (args.url.as_str(), "/health"),
    };
    let client = match Client::new(base).with_cacert(args.cacert.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match client.raw(Method::GET, path, None).await {
        Ok((StatusCode::OK, _)) => 0,
        Ok((status, body)) => {
            fail(format!("{} answered {status}: {}", args.url, String::from_utf8_lossy(&body).trim()))
        }
        Err(e) => fail(e),
    }
}

/// A table of members with their state, the key copies each holds, pending hints, key copies
/// moved in and clock offset, as seen by `--node`; then the totals: key copies (N per key) and
/// keys (the copies divided by N, exact once every key has its N copies, as `DBSIZE`). A clock
/// marked OFF is beyond `--max-clock-offset`: that node coordinates no writes. MOVED-IN counts
/// the key copies a node received from others (joins, leaves, rebalancing) that it did not hold
/// yet. `--json` prints the same as one JSON object.
pub async fn status(args: StatusArgs) -> i32 {
    let client = client(&args.client);
    let cluster = match client.node_json("/cluster").await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mine = client.node_json("/stats").await.ok();
    let members = cluster["members"].as_array().cloned().unwrap_or_default();
    let mut rows = Vec::new();
    for m in &members {
        let addr = m["addr"].as_str().unwrap_or("?");
        let stats = client.sibling(addr).node_json("/stats").await.ok();
        rows.push(member_row(m, stats.as_ref()));
    }
    let summary = summarize(&cluster, mine.as_ref(), rows, client.base());
    if args.json {
        outln!("{summary:#}");
        return 0;
    }
    outln!(
        "epoch {}  ({} members, as seen by {}; N = {})",
        summary["epoch"],
        members.len(),
        client.base(),
        summary["replicas"]
    );
    let line = |c: [&str; 9]| {
        format!(
            "{:<18} {:<22} {:<11} {:>10} {:>12} {:>7} {:>9} {:>8} {:>10}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
        )
    };
    outln!("{}", line(["ID", "ADDR", "STATE", "COPIES", "BYTES", "HINTS", "MOVED-IN", "TOKENS", "CLOCK"]));
    for r in summary["members"].as_array().into_iter().flatten() {
        let n = |f: &str| r[f].as_u64().map_or_else(|| "-".to_string(), |v| v.to_string());
        // The node's clock against the others', and a mark when it is too far off to write.
        let clock = r["clock_offset_ms"].as_i64().map_or_else(
            || "-".to_string(),
            |ms| format!("{ms:+}ms{}", if r["coordinating_writes"] == false { " OFF" } else { "" }),
        );
        let state = if r["reachable"] == true { r["state"].as_str().unwrap_or("?") } else { "unreachable" };
        let (id, addr) = (r["id"].as_str().unwrap_or("?"), r["addr"].as_str().unwrap_or("?"));
        outln!(
            "{}",
            line([
                id,
                addr,
                state,
                &n("key_copies"),
                &n("bytes"),
                &n("hints_pending"),
                &n("moved_in"),
                &n("tokens"),
                &clock
            ])
        );
    }
    outln!("key copies: {} ({} per key)", summary["key_copies"], summary["copies_per_key"]);
    outln!("keys: {} (key copies / {})", summary["keys"], summary["copies_per_key"]);
    0
}

/// One member's line of `dkv status`, from its entry in `/cluster` and its `/stats` (`None`:
/// it did not answer).
fn member_row(m: &serde_json::Value, stats: Option<&serde_json::Value>) -> serde_json::Value {
    let s = |f: &str| stats.map_or(serde_json::Value::Null, |s| s[f].clone());
    serde_json::json!({
        "id": m["id"],
        "addr": m["addr"],
        "state": m["state"],
        "reachable": stats.is_some(),
        "key_copies": s("keys"),
        "bytes": s("bytes"),
        "hints_pending": s("hints_pending"),
        "moved_in": stats.map_or(serde_json::Value::Null, |s| s["requests"]["moved_in"].clone()),
        "tokens": m["tokens"].as_array().map_or(0, Vec::len),
        "clock_offset_ms": s("clock_offset_ms"),
        "coordinating_writes": s("coordinating_writes"),
    })
}

/// `dkv status`'s whole answer: the rows, and the totals. A key has N copies, or one per serving
/// member while there are fewer (joining members hold nothing yet).
fn summarize(
    cluster: &serde_json::Value,
    stats: Option<&serde_json::Value>,
    rows: Vec<serde_json::Value>,
    via: &str,
) -> serde_json::Value {
    let replicas = stats.and_then(|s| s["replicas"].as_u64()).unwrap_or(3);
    let serving = cluster["members"].as_array().map_or(0, |ms| ms.iter().filter(|m| m["state"] != "joining").count());
    let per_key = replicas.min(serving as u64).max(1);
    let copies: u64 = rows.iter().filter_map(|r| r["key_copies"].as_u64()).sum();
    serde_json::json!({
        "epoch": cluster["epoch"],
        "via": via,
        "replicas": replicas,
        "copies_per_key": per_key,
        "key_copies": copies,
        "keys": copies / per_key,
        "members": rows,
    })
}

/// Ask a node to leave the cluster for good (`POST /admin/leave`); it hands its keys to the
/// remaining members and exits.
pub async fn leave(args: LeaveArgs) -> i32 {
    let client = match Client::new(&args.node).with_secret(args.cluster_secret).with_cacert(args.cacert.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match client.to_node(Method::POST, "/admin/leave", None, &[StatusCode::ACCEPTED]).await {
        Ok(_) => {
            outln!("{} is leaving: it hands its keys to the other nodes, then exits", client.base());
            0
        }
        Err(e) => fail(e),
    }
}
