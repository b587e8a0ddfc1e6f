//! The client commands against real clusters: `--r`/`--w`, `--json`, `dkv where`, what
//! `dkv status` counts, `dkv get` on a terminal, `dkv bench --prefix`, and `dkv scan` into a
//! closed pipe; a node refusing lifetimes that do not nest, and one that answers while it waits for
//! its seed.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Run `dkv ARGS --node NODE`: exit code, stdout, stderr.
fn run(node: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = dkv().args(args).args(["--node", node]).output().expect("run dkv");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Run `dkv` with `args`, which it must refuse before doing anything (exit code 1); its stderr.
fn refused(args: &[&str]) -> String {
    let out = dkv().args(args).output().expect("run dkv");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

fn json(node: &str, args: &[&str]) -> Value {
    let (code, out, err) = run(node, args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_and_w_reach_the_node() {
    // A long node TTL: the paused node below stays a member.
    let mut c = Cluster::start_full(3, &[], "60s").await;
    let node = c.nodes[0].addr.clone();
    assert_eq!(run(&node, &["put", "k", "v1", "--w", "all"]).0, Some(0));
    assert_eq!(run(&node, &["get", "k", "--r", "all"]).1, "v1");
    let (code, _, err) = run(&node, &["get", "k", "--r", "4"]);
    assert_eq!(code, Some(2), "refused as written");
    assert!(err.contains("r=4 is more than the 3 replicas"), "the node's 400: {err}");
    let (code, _, err) = run(&node, &["put", "k", "v", "--w", "most"]);
    assert_eq!(code, Some(2), "refused by the parser, nothing sent");
    assert!(err.contains("not a level"), "{err}");

    // One replica paused: w=all cannot be acknowledged, w=2 can; r=all cannot answer.
    c.nodes[2].pause().await;
    let (code, _, err) = run(&node, &["put", "k", "v2", "--w", "all"]);
    assert_eq!(code, Some(3), "may succeed later");
    assert!(err.contains("503") && err.contains("3 needed"), "{err}");
    assert_eq!(run(&node, &["put", "k", "v3", "--w", "2"]).0, Some(0));
    assert_eq!(run(&node, &["get", "k", "--r", "one"]).1, "v3");
    assert_eq!(run(&node, &["del", "k", "--w", "quorum"]).0, Some(0));
    c.nodes[2].resume();
    let (code, out, _) = run(&node, &["get", "k", "--r", "all"]);
    assert_eq!((code, out.as_str()), (Some(1), ""), "deleted");
    c.wait_normal(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_json_and_ends_with_a_newline_on_a_terminal() {
    let c = Cluster::start(1).await;
    let node = c.nodes[0].addr.clone();
    c.client(0).put(b"city", "Zürich").await.unwrap();
    c.client(0).put(b"bin", &b"\xff\x00"[..]).await.unwrap();
    let v = json(&node, &["get", "city", "--json"]);
    assert_eq!(v, serde_json::json!({ "key": { "utf8": "city" }, "found": true, "value": { "utf8": "Zürich" } }));
    assert_eq!(json(&node, &["get", "bin", "--json"])["value"], serde_json::json!({ "percent": "%FF%00" }));
    let (code, out, _) = run(&node, &["get", "nope", "--json"]);
    assert_eq!(code, Some(1));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["found"], false);

    // Into a pipe, the bytes exactly; on a terminal (a pty from script(1)), a newline after.
    assert_eq!(run(&node, &["get", "city"]).1, "Zürich");
    let bin = env!("CARGO_BIN_EXE_dkv");
    let out = std::process::Command::new("script")
        .args(["-qec", &format!("{bin} get city --node {node}"), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Zürich\r\n", "the terminal turns \\n into \\r\\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_shows_each_replica_and_its_copy() {
    // N = 3 on four nodes: three of them hold the key.
    let c = Cluster::start(4).await;
    let node = c.nodes[1].addr.clone();
    c.client(0).put(b"user:1", "x".repeat(10)).await.unwrap();
    let report = json(&node, &["where", "user:1", "--json"]);
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{report:#}");
    let versions: Vec<&Value> = nodes.iter().map(|n| &n["copy"]["version"]).collect();
    for n in nodes {
        assert_eq!((n["role"].as_str(), n["member_state"].as_str()), (Some("replica"), Some("normal")), "{n}");
        let copy = &n["copy"];
        assert_eq!(
            (copy["state"].as_str(), copy["bytes"].as_u64(), copy["newest"].as_bool()),
            (Some("value"), Some(10), Some(true))
        );
        assert_eq!(&copy["version"], versions[0], "every replica has the same version");
    }
    assert_eq!(report["key"], serde_json::json!({ "utf8": "user:1" }));
    // Each named node does hold it, and the fourth does not.
    let holders: Vec<&str> = nodes.iter().map(|n| n["addr"].as_str().unwrap()).collect();
    for (i, p) in c.nodes.iter().enumerate() {
        let local = c.client(i).local(b"user:1").await.unwrap();
        let holds = holders.contains(&p.addr.as_str());
        assert_eq!((local["state"] == "value", local["replica"] == true), (holds, holds), "node {i}: {local}");
    }

    c.client(2).delete(b"user:1").await.unwrap();
    let (code, text, err) = run(&node, &["where", "user:1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.starts_with("key \"user:1\"  hash "), "{text}");
    // A key that is not plain text is shown as `dkv scan` prints it, which `--escaped` reads.
    let (code, shown, err) = run(&node, &["where", "--escaped", "n\\x00b"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(shown.starts_with("key \"n\\x00b\"  hash "), "{shown}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("replica")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows.iter().all(|r| r.contains("tombstone") && !r.contains("(older)")), "{text}");
    for h in &holders {
        assert!(text.contains(h), "{h} in {text}");
    }
    // A replica that does not answer (paused) is shown as such after 3 s, beside the others
    // (asked one after the other, it held the answer for the client's 10 s).
    let paused = c.nodes.iter().position(|p| p.addr != node && holders.contains(&p.addr.as_str())).expect("a holder");
    c.nodes[paused].pause().await;
    let report = json(&node, &["where", "user:1", "--json"]);
    let rows = report["nodes"].as_array().unwrap();
    let silent: Vec<&Value> = rows.iter().filter(|n| n["copy"]["state"] == "unreachable").collect();
    assert_eq!(silent.len(), 1, "{report:#}");
    assert!(silent[0]["copy"]["error"].as_str().unwrap().contains("no answer within 3s"), "{report:#}");
    c.nodes[paused].resume();

    // A key the nodes refuse is an error that says why, not three unreachable replicas.
    let (code, _, err) = run(&node, &["where", ""]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("empty key") && !err.contains("unreachable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_keys_apart_from_key_copies() {
    // Two nodes with N = 3: each key has two copies.
    let c = Cluster::start(2).await;
    let node = c.nodes[0].addr.clone();
    write_all(&c, &[0, 1], &dataset("st", 5)).await;
    let (code, text, _) = run(&node, &["status"]);
    assert_eq!(code, Some(0));
    assert!(text.contains("COPIES") && text.contains("MOVED-IN"), "{text}");
    assert!(
        text.contains("key copies: 10 (2 per key)")
            && text.contains("keys: 5 (key copies of the members not joining / 2)"),
        "{text}"
    );
    let s = json(&node, &["status", "--json"]);
    assert_eq!(
        (s["keys"].as_u64(), s["key_copies"].as_u64(), s["copies_per_key"].as_u64()),
        (Some(5), Some(10), Some(2))
    );
    let members = s["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    for m in members {
        assert_eq!(
            (m["reachable"].as_bool(), m["key_copies"].as_u64(), m["tokens"].as_u64()),
            (Some(true), Some(5), Some(128))
        );
        assert_eq!(m["state"], "normal");
    }
}

/// A node joining three with N = 3 pulls every key from each of the three: what moves in is
/// each key once, not once per holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_in_counts_each_key_once() {
    let mut c = Cluster::start(3).await;
    write_all(&c, &[0, 1, 2], &dataset("m", 200)).await;
    c.add_node();
    c.wait_normal(4).await;
    c.wait_total_keys(&[0, 1, 2, 3], 600).await; // three copies each, the extra ones dropped
    let node = c.nodes[0].addr.clone();
    let s = json(&node, &["status", "--json"]);
    let joined =
        s["members"].as_array().unwrap().iter().find(|m| m["addr"] == c.nodes[3].addr.as_str()).unwrap().clone();
    let (held, moved_in) = (joined["key_copies"].as_u64().unwrap(), joined["moved_in"].as_u64().unwrap());
    assert!(held > 50, "the newcomer holds its share: {joined}");
    assert_eq!(moved_in, held, "each key it holds moved in once: {joined}");
    for m in s["members"].as_array().unwrap().iter().filter(|m| m["addr"] != c.nodes[3].addr.as_str()) {
        assert_eq!(m["moved_in"], 0, "nothing moves to the old members: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_keys_stay_apart_from_the_users() {
    let c = Cluster::start(1).await;
    let node = c.nodes[0].addr.clone();
    c.client(0).put(b"key1", "mine").await.unwrap();
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "--load", "--keys", "20", "-c", "2", "--value-size", "3"];
        args.extend(extra);
        let (code, out, err) = run(&node, &args);
        assert_eq!(code, Some(0), "{out}{err}");
    };
    bench(&[]);
    bench(&["--prefix", "b:"]);
    let (_, out, _) = run(&node, &["scan"]);
    let keys: std::collections::BTreeSet<String> = out.lines().map(String::from).collect();
    let want: std::collections::BTreeSet<String> =
        (0..20).flat_map(|i| [format!("dkv-bench:key{i}"), format!("b:{i}")]).chain(["key1".to_string()]).collect();
    assert_eq!(keys, want);
    assert_eq!(c.client(0).get(b"key1").await.unwrap().as_deref(), Some(&b"mine"[..]), "the user's key untouched");
}

/// A paused node holds a `dkv bench` run at most a second past `--duration`: its requests then
/// count as failed. Its connections waited out their 10 s timeout, and a 3 s run took 10.5 s
/// (found by a hunt, 2026-12-07). And `--load` stopped by `-n` says so, not that `--duration` did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ends_soon_after_its_duration_with_a_node_paused() {
    let c = Cluster::start(2).await;
    let (code, _, err) = run(&c.nodes[0].addr, &["bench", "--load", "--keys", "50", "-c", "2", "-n", "10"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("wrote 10 of the 50 keys: -n 10 ended it first"), "{err}");

    c.nodes[1].pause().await;
    let started = std::time::Instant::now();
    let (code, out, err) = run(&c.nodes[0].addr, &["bench", "--all-nodes", "-d", "1s", "-c", "2", "--keys", "50"]);
    let took = started.elapsed();
    c.nodes[1].resume();
    assert_eq!(code, Some(1), "the paused node's requests failed: {out}{err}");
    assert!(err.contains("past the end of the run"), "{err}");
    assert!(took < Duration::from_secs(8), "took {took:?}, the request timeout is 10 s: {out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_into_a_closed_pipe_exits_quietly() {
    let c = Cluster::start(1).await;
    write_all(&c, &[0], &dataset("p", 50)).await;
    // stdout a pipe whose reader has closed, as `dkv scan | head -1` leaves it.
    let mut child = dkv()
        .args(["scan", "--count", "1", "--node", &c.nodes[0].addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out =
        tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(move || child.wait_with_output()))
            .await
            .expect("it ends")
            .unwrap()
            .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "quietly: {err}");
}

/// A hint kept longer than a tombstone could be delivered after the delete it should lose to was
/// purged, and bring the deleted value back: a node refuses lifetimes that do not nest, before it
/// binds or registers anything.
#[test]
fn a_node_refuses_hints_that_outlive_tombstones() {
    let err = refused(&["node", "--listen", "127.0.0.1:0", "--seed", "127.0.0.1:1", "--tombstone-grace", "1h"]);
    assert!(err.contains("--hint-max-age") && err.contains("--tombstone-grace"), "{err}");
}

/// A node that cannot register (no seed there) answers while it retries: HTTP `503` saying why,
/// RESP `-LOADING`. Both hung until the seed came (found by trying, 2026-12-06): a load
/// balancer's health check timed out instead of reading a reason.
#[tokio::test]
async fn a_node_waiting_for_its_seed_answers_503_and_loading_rather_than_hanging() {
    use std::io::{Read, Write};
    let (port, resp_port, seed_port) = (free_port(), free_port(), free_port());
    let child = dkv()
        .args(["node", "--listen", &format!("127.0.0.1:{port}"), "--seed", &format!("127.0.0.1:{seed_port}")])
        .args(["--resp-listen", &format!("127.0.0.1:{resp_port}"), "--heartbeat-interval", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run dkv node");
    let _node = Proc { child, addr: format!("127.0.0.1:{port}"), args: Vec::new(), resp: None };
    let ask = |port: u16, request: &'static [u8]| async move {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(request).ok()?;
        let mut got = String::new();
        s.read_to_string(&mut got).ok()?;
        Some(got)
    };
    let health = eventually(Duration::from_secs(20), "the node to answer /health", || {
        ask(port, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    })
    .await;
    assert!(health.starts_with("HTTP/1.1 503 "), "{health}");
    assert!(health.contains(&format!("not registered with the seed at 127.0.0.1:{seed_port}")), "{health}");
    let ping = ask(resp_port, b"PING\r\n").await.expect("the RESP port answers");
    assert!(ping.starts_with("-LOADING this node is starting"), "{ping}");
}

/// `--advertise` a loopback address where nothing listens: no one could reach the node, which
/// joined and stayed a member that every write to its ranges waited for (found by trying,
/// 2026-12-06). It refuses to start.
#[test]
fn a_node_refuses_to_advertise_a_loopback_address_nothing_listens_on() {
    let (port, nowhere) = (free_port(), free_port());
    let (listen, advertise) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{nowhere}"));
    let err = refused(&["node", "--listen", &listen, "--seed", "127.0.0.1:1", "--advertise", &advertise]);
    assert!(err.contains("nothing listens there (connection refused)"), "{err}");
}

/// `dkv bench` refuses what it would silently ignore, before it sends anything.
#[test]
fn bench_refuses_a_resp_port_without_the_resp_protocol() {
    let out = dkv()
        .args(["bench", "--node", "http://127.0.0.1:1", "--protocol", "http", "--resp-port", "6379"])
        .output()
        .expect("run dkv");
    let err = String::from_utf8_lossy(&out.stderr);
    // 2, as for every flag the command refuses (1 until 2026-12-07).
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--resp-port is the RESP port to load: it goes with --protocol resp"), "{err}");
}
