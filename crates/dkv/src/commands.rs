//! Client commands: `get`, `put`, `del`, `status`, `health`. Each returns the process exit code.

use std::io::Read;

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::cli::{ClientArgs, HealthArgs, KeyArgs, LeaveArgs, PutArgs};
use crate::client::Client;
use crate::{errln, outln};

fn fail(e: impl std::fmt::Display) -> i32 {
    errln!("dkv: {e}");
    1
}

pub async fn get(args: KeyArgs) -> i32 {
    match Client::new(&args.client.node).get(args.key.as_bytes()).await {
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
    match Client::new(&args.client.node).put(args.key.as_bytes(), value).await {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

pub async fn del(args: KeyArgs) -> i32 {
    match Client::new(&args.client.node).delete(args.key.as_bytes()).await {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

pub async fn health(args: HealthArgs) -> i32 {
    let (base, path) = match args.url.find("://").and_then(|i| args.url[i + 3..].find('/').map(|j| i + 3 + j)) {
        Some(split) => (&args.url[..split], &args.url[split..]),
        None => (args.url.as_str(), "/health"),
    };
    match Client::new(base).raw(Method::GET, path, None).await {
        Ok((StatusCode::OK, _)) => 0,
        Ok((status, body)) => {
            fail(format!("{} answered {status}: {}", args.url, String::from_utf8_lossy(&body).trim()))
        }
        Err(e) => fail(e),
    }
}

/// A table of members with their state, key copies held, pending hints, data moved in and clock
/// offset, as seen by `--node`. `total keys` counts copies: N per key. A clock marked OFF is
/// beyond `--max-clock-offset`: that node coordinates no writes.
pub async fn status(args: ClientArgs) -> i32 {
    let client = Client::new(&args.node);
    let cluster = match client.node_json("/cluster").await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let members = cluster["members"].as_array().cloned().unwrap_or_default();
    outln!("epoch {}  ({} members, as seen by {})", cluster["epoch"], members.len(), client.base());
    let header = format!(
        "{:<18} {:<22} {:<8} {:>10} {:>12} {:>7} {:>9} {:>8} {:>10}",
        "ID", "ADDR", "STATE", "KEYS", "BYTES", "HINTS", "MOVED-IN", "TOKENS", "CLOCK"
    );
    outln!("{header}");
    let mut total = 0u64;
    for m in &members {
        let addr = m["addr"].as_str().unwrap_or("?");
        let stats = Client::new(addr).node_json("/stats").await.ok();
        let field = |f: &dyn Fn(&serde_json::Value) -> Option<u64>| {
            stats.as_ref().and_then(f).map_or_else(|| "-".to_string(), |v| v.to_string())
        };
        total += stats.as_ref().and_then(|s| s["keys"].as_u64()).unwrap_or(0);
        // The node's clock against the others', and a mark when it is too far off to write.
        let clock = stats.as_ref().and_then(|s| s["clock_offset_ms"].as_i64()).map_or_else(
            || "-".to_string(),
            |ms| {
                let off = stats.as_ref().is_some_and(|s| s["coordinating_writes"] == false);
                format!("{ms:+}ms{}", if off { " OFF" } else { "" })
            },
        );
        outln!(
            "{:<18} {:<22} {:<8} {:>10} {:>12} {:>7} {:>9} {:>8} {:>10}",
            m["id"].as_str().unwrap_or("?"),
            addr,
            if stats.is_some() { m["state"].as_str().unwrap_or("?") } else { "unreachable" },
            field(&|s| s["keys"].as_u64()),
            field(&|s| s["bytes"].as_u64()),
            field(&|s| s["hints_pending"].as_u64()),
            field(&|s| s["requests"]["moved_in"].as_u64()),
            m["tokens"].as_array().map_or(0, Vec::len),
            clock
        );
    }
    outln!("total keys: {total}");
    0
}

/// Ask a node to leave the cluster for good (`POST /admin/leave`); it hands its keys to the
/// remaining members and exits.
pub async fn leave(args: LeaveArgs) -> i32 {
    let client = Client::new(&args.node).with_secret(args.cluster_secret);
    match client.to_node(Method::POST, "/admin/leave", None, &[StatusCode::ACCEPTED]).await {
        Ok(_) => {
            outln!("{} is leaving: it hands its keys to the other nodes, then exits", client.base());
            0
        }
        Err(e) => fail(e),
    }
}
