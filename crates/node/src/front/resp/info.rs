//! `INFO`, `DBSIZE` and `MEMORY USAGE`: the node's figures, and the cluster's key count, in
//! Redis's shapes, which dashboards, `redis_exporter`, `redis-cli --stat` and `--memkeys` read.
//!
//! `DBSIZE` and `INFO keyspace` ask every member for its count (`/stats`) and divide the copies
//! by the copies per key; `MEMORY USAGE` reads one key's length without its value.

use bytes::Bytes;
use dkv_membership::View;

use super::commands::{length, unknown_subcommand};
use super::frame::{self, Reply};
use crate::life::state::Node;

/// `MEMORY USAGE key [SAMPLES n]`: about how many bytes the key takes in one replica's store
/// (each of its N replicas holds a copy): its name, its value and [`ENTRY_OVERHEAD`], the
/// store's own per entry. Found by a read of heads, as `STRLEN`'s. `redis-cli --memkeys` asks
/// this (it reported 0 bytes for every key until 2026-12-06). `MEMORY HELP` lists it; the other
/// subcommands (`STATS`, `DOCTOR`, `PURGE`, `MALLOC-STATS`) are Redis's allocator's, and refused.
pub(super) async fn memory(node: &Node, a: &[Bytes]) -> Reply {
    let sub = a[0].to_ascii_lowercase();
    match (sub.as_slice(), &a[1..]) {
        (b"usage", [key] | [key, _, _]) => {
            if let [_, opt, n] = &a[1..] {
                if !opt.eq_ignore_ascii_case(b"samples") {
                    return Reply::err("syntax error");
                }
                match frame::integer(n) {
                    None => return frame::not_an_integer(),
                    Some(..0) => return Reply::err("syntax error"),
                    Some(_) => {}
                }
            }
            match length(node, key).await {
                Ok(Some(l)) => Reply::Int((key.len() as u64 + l.len + ENTRY_OVERHEAD) as i64),
                Ok(None) => Reply::Nil,
                Err(e) => e,
            }
        }
        (b"usage", []) => Reply::err("wrong number of arguments for 'memory|usage' command"),
        (b"usage", _) => Reply::err("syntax error"),
        (b"help", []) => {
            let lines = [
                "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "USAGE <key> [SAMPLES <count>]",
                "    Return about how many bytes <key> takes in one replica's store.",
                "HELP",
                "    Print this help.",
            ];
            Reply::Array(lines.iter().map(|l| Reply::Simple(l)).collect())
        }
        _ => unknown_subcommand("MEMORY", &a[0]),
    }
}

/// What a node's store takes per entry besides its key and value: 175 bytes of resident memory
/// per key of 100 bytes and a name of about 9 (`bench/memory.sh`, the memory engine, 2026-12-04).
const ENTRY_OVERHEAD: u64 = 64;

/// `DBSIZE`: an error when a member did not answer, rather than a count that leaves out its
/// keys (with one replica of three paused, it answered two thirds of the keys; found by trying,
/// 2026-12-06).
pub(super) async fn dbsize(node: &Node) -> Reply {
    let count = cluster_keys(node).await;
    match count.unanswered.first() {
        None => Reply::Int(count.keys as i64),
        Some((addr, reason)) => Reply::err(format!(
            "DBSIZE counts the keys every member holds, and {} of {} members did not answer ({addr}: {reason}): \
             retry once they are back (dkv status shows them)",
            count.unanswered.len(),
            count.members
        )),
    }
}

/// What [`cluster_keys`] counted.
pub(super) struct KeyCount {
    pub(super) keys: u64,
    /// Of them, with a deadline.
    expires: u64,
    members: usize,
    /// The members that did not answer, and why: their keys are not counted.
    pub(super) unanswered: Vec<(String, String)>,
}

/// Keys in the whole cluster, and how many of them have a deadline: the copies every member not
/// joining holds, divided by the copies per key, as `dkv status` counts them. Exact once every
/// key is at its N copies (a write is acknowledged at W; the last replicas apply it within
/// milliseconds). Every such member is asked at once, each within the request timeout. A joining
/// member's copies are its share being copied in, on top of the N its keys already have: counted,
/// they made `DBSIZE` a quarter too high for the whole of a join onto three nodes (found by a
/// hunt, 2026-12-08).
pub(super) async fn cluster_keys(node: &Node) -> KeyCount {
    let topo = node.topology();
    let joining = |id| topo.view.nodes.iter().any(|m| m.id == id && m.state == dkv_membership::NodeState::Joining);
    let stats = match joining(node.me) {
        true => Default::default(),
        false => node.engine.stats(),
    };
    let others = topo.view.nodes.iter().filter(|m| m.id != node.me && m.state != dkv_membership::NodeState::Joining);
    let asks = others.map(|m| async move {
        let asked = tokio::time::timeout(
            node.config.request_timeout,
            node.peers.node_json::<serde_json::Value>(&m.addr, "/stats"),
        );
        let answer = match asked.await {
            Ok(Ok(s)) => Ok((s["keys"].as_u64().unwrap_or(0), s["expiring"].as_u64().unwrap_or(0))),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within --request-timeout {:?}", node.config.request_timeout)),
        };
        (m.addr.clone(), answer)
    });
    let (mut copies, mut expiring, mut unanswered) = (stats.keys, stats.expiring, Vec::new());
    for (addr, answer) in futures_util::future::join_all(asks).await {
        match answer {
            Ok((keys, expires)) => {
                copies += keys;
                expiring += expires;
            }
            Err(reason) => unanswered.push((addr, reason)),
        }
    }
    let per_key = node.config.replicas.min(serving(&topo.view)).max(1) as u64;
    KeyCount { keys: copies / per_key, expires: expiring / per_key, members: topo.view.nodes.len(), unanswered }
}

fn serving(view: &View) -> usize {
    view.nodes.iter().filter(|m| m.state != dkv_membership::NodeState::Joining).count()
}

/// `INFO [section ...]`: the sections named (any of them, as Redis 7 takes several), or all.
pub(super) async fn info(node: &Node, sections: &[Bytes]) -> String {
    let sections: Vec<String> = sections.iter().map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()).collect();
    let all = sections.is_empty() || sections.iter().any(|s| ["all", "default", "everything"].contains(&s.as_str()));
    let want = |name: &str| all || sections.iter().any(|s| s == name);
    let topo = node.topology();
    let mut out = String::new();
    if want("server") {
        // `standalone`, though dkv is a cluster: to a client every node is a whole server, with
        // no Redis Cluster protocol (slots, `MOVED`); a client that reads `cluster` here or in
        // `HELLO` switches to cluster mode and asks for `CLUSTER SLOTS`.
        out += &format!(
            "# Server\r\nredis_version:7.0.0\r\ndkv_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nrun_id:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            node.config.resp_listen.map_or(0, |a| a.port()),
            node.me,
        );
    }
    if want("cluster") {
        // For the reason `redis_mode` says `standalone` (above).
        out += "# Cluster\r\ncluster_enabled:0\r\n\r\n";
    }
    if want("keyspace") {
        // Informational, so partial: what the members that answered hold, and how many did not.
        let c = cluster_keys(node).await;
        out += &format!("# Keyspace\r\ndb0:keys={},expires={},avg_ttl=0\r\n", c.keys, c.expires);
        if !c.unanswered.is_empty() {
            out += &format!("dkv_members_unanswered:{}\r\n", c.unanswered.len());
        }
        out += "\r\n";
    }
    if want("replication") {
        let e = node.engine.stats();
        out += &format!(
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\ndkv_replication_factor:{}\r\ndkv_write_quorum:{}\r\ndkv_read_quorum:{}\r\ndkv_members:{}\r\ndkv_epoch:{}\r\ndkv_local_key_copies:{}\r\ndkv_hints_pending:{}\r\n\r\n",
            node.config.replicas,
            node.config.write_quorum,
            node.config.read_quorum,
            topo.view.nodes.len(),
            topo.epoch(),
            e.keys,
            node.hints.counts().0,
        );
    }
    // The figures dashboards and exporters read (`connected_clients`, `used_memory`,
    // `total_commands_processed`; redis_exporter, `redis-cli --stat`), as far as dkv has them:
    // until 2026-12-06 these sections were empty, and `redis-cli --stat` printed i64::MIN.
    if want("clients") {
        use crate::front::limits::Listener;
        out += &format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\ndkv_http_clients:{}\r\n\r\n",
            node.guard.connected(Listener::Resp),
            node.guard.limits.max_connections,
            node.guard.connected(Listener::Http),
        );
    }
    if want("memory") {
        let rss = resident_bytes();
        out += &format!(
            "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\ndkv_stored_bytes:{}\r\ndkv_client_buffered_bytes:{}\r\n\r\n",
            memory_human(rss),
            node.engine.stats().bytes,
            node.guard.charged(),
        );
    }
    // What exporters look for before they trust the rest (`loading`); dkv's journal plays the
    // part of Redis's append-only file, when the node has a data directory.
    if want("persistence") {
        out += &format!(
            "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_bgsave_in_progress:0\r\nrdb_last_bgsave_status:ok\r\naof_enabled:{}\r\naof_rewrite_in_progress:0\r\naof_last_write_status:ok\r\n\r\n",
            u8::from(node.local.is_some()),
        );
    }
    if want("cpu") {
        let (system, user) = cpu_seconds();
        out += &format!("# CPU\r\nused_cpu_sys:{system:.6}\r\nused_cpu_user:{user:.6}\r\n\r\n");
    }
    if want("stats") {
        use std::sync::atomic::Ordering::Relaxed;
        let st = &node.stats;
        let refused = node.guard.refusals().find(|(why, _)| *why == crate::front::limits::Refusal::Connections);
        out += &format!(
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:0\r\n\r\n",
            node.guard.resp_admitted(),
            st.gets.load(Relaxed) + st.puts.load(Relaxed) + st.deletes.load(Relaxed),
            refused.map_or(0, |(_, n)| n),
            st.expired.load(Relaxed),
        );
    }
    // Sections end in a blank line, as Redis separates them, but the last: Redis's text ends
    // with its last line.
    if out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// Bytes as Redis's `used_memory_human` gives them: `912B`, `1.00K`, `3.11M`, `2.50G`.
fn memory_human(n: u64) -> String {
    match n {
        0..1024 => format!("{n}B"),
        1024..1_048_576 => format!("{:.2}K", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.2}M", n as f64 / 1_048_576.0),
        _ => format!("{:.2}G", n as f64 / 1_073_741_824.0),
    }
}

/// CPU time this process has used, system and user, in seconds.
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_stime), secs(usage.ru_utime))
}

/// This process's resident memory, in bytes (`used_memory`: dkv's allocator keeps no count of
/// its own), from `/proc/self/statm`; 0 where there is none.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf with a valid name reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_as_redis_writes_it() {
        let shown: Vec<String> = [912, 1024, 3_261_071, 2_684_354_560].into_iter().map(memory_human).collect();
        assert_eq!(shown, ["912B", "1.00K", "3.11M", "2.50G"]);
    }
}
