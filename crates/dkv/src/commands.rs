//! Client commands: `get`, `put`, `del`, `ttl`, `health`, `leave` (`status` is in `status.rs`). Each
//! returns the process exit code.

use std::io::Read;

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::cli::{ClientArgs, DelArgs, GetArgs, HealthArgs, KeyArgs, KeyName, LeaveArgs, PutArgs, RemoveArgs};
use crate::client::{Client, ClientError, KeyTtl};
use crate::{errln, outln};
use dkv_node::front::keyspace::key_json;

/// The exit codes of the client commands, so that a script can tell a missing key from a
/// command that cannot succeed as written and from one worth trying again (until 2026-12-06 all
/// three were 1). `dkv health` keeps 1 for "not healthy", as container health checks expect.
pub mod exit {
    /// `get` and `ttl`: the key does not exist (or has expired).
    pub const NOT_FOUND: i32 = 1;
    /// The command cannot succeed as written, so trying it again is no use: a bad flag or value
    /// (clap's own code), a `--node` that is no URL or no node, a `--cacert` that does not load,
    /// or a request the node refused (a `4xx`: a key too long, a value over the limit, `r=` over
    /// N, no password or a wrong one).
    pub const REFUSED: i32 = 2;
    /// The cluster could not do it now, so it may succeed later: no node answered, or one failed
    /// the request (a `5xx`, such as a quorum that did not answer in time) or refused it for the
    /// moment (`408`, `422` from a coordinator whose clock is off, `429`).
    pub const UNAVAILABLE: i32 = 3;
}

/// Print why, and return `code`.
pub(crate) fn fail_with(code: i32, e: impl std::fmt::Display) -> i32 {
    errln!("dkv: {e}");
    code
}

/// Print why a request failed; the code says whether trying again may help ([`exit`]).
pub(crate) fn fail(e: ClientError) -> i32 {
    let code = e.exit_code();
    fail_with(code, e)
}

/// The client for `--node` with `--password` and `--cacert`; a `--cacert` that does not load
/// ends the command with its reason.
pub(crate) fn client(args: &ClientArgs) -> Client {
    args.client().unwrap_or_else(|e| std::process::exit(fail(e)))
}

/// The key's bytes, or the process exits with why `--escaped` could not read it.
fn key_bytes(name: &KeyName) -> Vec<u8> {
    name.bytes().unwrap_or_else(|e| std::process::exit(fail_with(exit::REFUSED, e)))
}

/// Print the value; with `--json`, `{"key", "found", "value"}`. A missing key is
/// [`exit::NOT_FOUND`].
/// On a terminal the output ends with a newline, so the prompt does not follow the value.
pub async fn get(args: GetArgs) -> i32 {
    let key = key_bytes(&args.key);
    let found = client(&args.client).get_at(&key, args.r.as_deref()).await;
    match found {
        Ok(v) if args.json => {
            let key = key_json(&key);
            let json = serde_json::json!({ "key": key, "found": v.is_some(), "value": v.as_deref().map(key_json) });
            outln!("{json}");
            if v.is_some() {
                0
            } else {
                exit::NOT_FOUND
            }
        }
        Ok(Some(v)) => {
            crate::out::stdout(&v);
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) && !v.ends_with(b"\n") {
                crate::out::stdout(b"\n");
            }
            0
        }
        Ok(None) => fail_with(exit::NOT_FOUND, format!("key \"{}\" not found", crate::keys::escape(&key))),
        Err(e) => fail(e),
    }
}

pub async fn put(args: PutArgs) -> i32 {
    let key = key_bytes(&args.key);
    let value = if args.value == "-" {
        // Up to the largest value a node takes: `dkv put k - < /dev/zero` read on to 2.5 GB in
        // 6 s, and a 100 MB file was read whole before the node's 413 (found by a hunt, 2026-12-07).
        let max = args.client.max_value_size;
        let mut buf = Vec::new();
        if let Err(e) = std::io::stdin().take(max as u64 + 1).read_to_end(&mut buf) {
            return fail_with(exit::UNAVAILABLE, format!("reading the value from stdin: {e}"));
        }
        if buf.len() > max {
            return fail_with(
                exit::REFUSED,
                format!(
                    "the value on standard input is over --max-value-size ({max} bytes): give the client the nodes' \
                     --max-value-size if theirs is larger"
                ),
            );
        }
        Bytes::from(buf)
    } else {
        Bytes::from(args.value.into_bytes())
    };
    match client(&args.client).put_at(&key, value, args.ttl, args.w.as_deref()).await {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// Print how long the key has left (`9m 59s 873ms`, as `--ttl` reads it, then its deadline in UTC), or `no expiry`;
/// a missing key is an error, as for `get`.
pub async fn ttl(args: KeyArgs) -> i32 {
    let key = key_bytes(&args.key);
    match client(&args.client).ttl(&key).await {
        Ok(Some(KeyTtl { ttl_ms: Some(ms), expires_at_ms: Some(at) })) => {
            let left = crate::client::ttl_text(ms, " ");
            outln!("{left} (at {})", utc(at));
            0
        }
        Ok(Some(_)) => {
            outln!("no expiry");
            0
        }
        Ok(None) => fail_with(exit::NOT_FOUND, format!("key \"{}\" not found", crate::keys::escape(&key))),
        Err(e) => fail(e),
    }
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const LAST_RFC3339_MS: u64 = 253_402_300_799_999;

/// A time in ms since the Unix epoch (a deadline, a version's), in UTC; one past the year 9999 (a
/// TTL of thousands of years, `PXAT` far ahead, a version stamped by a clock that far off) in ms,
/// which RFC 3339 cannot write (`dkv ttl` panicked on it, found by trying, 2026-12-06).
pub fn utc(at_ms: u64) -> String {
    if at_ms > LAST_RFC3339_MS {
        return format!("{at_ms} ms since the Unix epoch, after the year 9999");
    }
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms)).to_string()
}

pub async fn del(args: DelArgs) -> i32 {
    let key = key_bytes(&args.key);
    match client(&args.client).delete_at(&key, args.w.as_deref()).await {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

pub async fn health(args: HealthArgs) -> i32 {
    // The path starts at the first `/` after the host, with a scheme or without one (a bare
    // `127.0.0.1:8080/health` asked for `/health/health`: found by review, 2026-12-07).
    let after = args.url.find("://").map_or(0, |i| i + 3);
    let (base, path) = match args.url[after..].find('/').map(|j| after + j) {
        Some(split) => (&args.url[..split], &args.url[split..]),
        None => (args.url.as_str(), "/health"),
    };
    // Checked as `--node` is (an `ftp://` URL was sent as HTTP and passed, port 99999 read as a
    // refused connection: found by a hunt, 2026-12-07); 1, not clap's 2, which Docker reserves.
    if let Err(e) = crate::cli::node_url(base) {
        return fail_with(1, format!("--url {e}"));
    }
    // 1 for anything but healthy: Docker reserves 2 in a health check (a --cacert that did not
    // load exited 2: found by a hunt, 2026-12-07).
    let client = match Client::new(base).with_tls(&args.tls) {
        Ok(c) => c,
        Err(e) => return fail_with(1, e),
    };
    match client.raw(Method::GET, path, None).await {
        Ok((StatusCode::OK, _)) => 0,
        Ok((StatusCode::SERVICE_UNAVAILABLE, body)) if args.leaving_ok && says_leaving(&body) => 0,
        Ok((status, body)) => {
            fail_with(1, format!("{} answered {status}: {}", args.url, String::from_utf8_lossy(&body).trim()))
        }
        Err(e) => fail_with(1, e),
    }
}

/// Whether a node's `/health` answer says it is leaving.
fn says_leaving(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["status"] == "leaving")
}

/// The id of the member the seed lists at `addr`.
async fn member_at(seed: &Client, addr: &str) -> Result<dkv_membership::NodeId, ClientError> {
    let view = seed.seed_json("/nodes").await?;
    let nodes = view["nodes"].as_array().map(Vec::as_slice).unwrap_or_default();
    let id = nodes.iter().find(|m| m["addr"] == addr).and_then(|m| m["id"].as_str()?.parse().ok());
    id.ok_or_else(|| {
        ClientError::Usage(format!("no member at {addr}: {}/nodes lists the members and their addresses", seed.base()))
    })
}

/// `dkv remove`: each member out at the seed, in turn, whatever became of the ones before; the
/// worst exit code of them.
pub async fn remove(args: RemoveArgs) -> i32 {
    let client = match Client::new(&args.seed).with_secret(args.cluster_secret).with_tls(&args.tls) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // Each member is tried, whatever became of the ones before it: stopping at the first that
    // failed left the rest in the membership without a word (found by trying, 2026-12-06).
    let (mut code, mut failed) = (0, 0);
    for who in &args.members {
        let this = remove_one(&client, who, args.force).await;
        (code, failed) = (code.max(this), failed + usize::from(this != 0));
    }
    let named = args.members.len();
    match failed {
        0 => {}
        _ if named == 1 => {}
        _ if failed == named => errln!("dkv: none of the {named} members named was removed (see above)"),
        _ => errln!("dkv: {failed} of the {named} members named were not removed (see above); the others were"),
    }
    code
}

/// Remove one member at the seed; 0, or the exit code of its failure (said on stderr).
async fn remove_one(client: &Client, who: &crate::cli::Member, force: bool) -> i32 {
    let id = match who {
        crate::cli::Member::Id(id) => *id,
        crate::cli::Member::Addr(addr) => match member_at(client, addr).await {
            Ok(id) => id,
            Err(e) => return fail(e),
        },
    };
    let body = serde_json::json!({ "id": id, "force": force }).to_string();
    match client.to_seed(Method::POST, "/remove", Some(body.into())).await {
        Ok((StatusCode::OK, view)) => {
            let members = serde_json::from_slice::<serde_json::Value>(&view)
                .ok()
                .and_then(|v| v["nodes"].as_array().map(Vec::len))
                .map_or_else(|| "? members".to_string(), |n| format!("{n} member{}", if n == 1 { "" } else { "s" }));
            outln!("removed {id}: {members} left; they take over its ranges from the replicas left");
            0
        }
        Ok((status, line)) => {
            let line = String::from_utf8_lossy(&line);
            let code = if status.is_client_error() { exit::REFUSED } else { exit::UNAVAILABLE };
            fail_with(code, format!("{}/remove of {id}: {status}: {}", client.base(), line.trim()))
        }
        Err(e) => fail(e),
    }
}

/// Ask a node to leave the cluster for good (`POST /admin/leave`); it hands its keys to the
/// remaining members and exits.
pub async fn leave(args: LeaveArgs) -> i32 {
    let client = match Client::new(&args.node).with_secret(args.cluster_secret).with_tls(&args.tls) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_the_year_9999_are_written_in_ms() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(LAST_RFC3339_MS), "9999-12-31T23:59:59.999Z");
        assert!(utc(LAST_RFC3339_MS + 1).contains("after the year 9999"));
        assert!(utc(u64::MAX).starts_with(&u64::MAX.to_string()));
    }
}
