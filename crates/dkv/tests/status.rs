//! `dkv status --watch`: the table drawn again every `--interval`, `--count` times, then exit;
//! the same as JSON, one document a line. (A thousand members: the unit tests of `status.rs`.)

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Run `dkv` with `args`, bounded in time; returns exit code, stdout and stderr.
async fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let child = dkv().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run dkv");
    let out =
        tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(move || child.wait_with_output()))
            .await
            .expect("dkv status --watch --count ends by itself")
            .unwrap()
            .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_draws_the_table_count_times() {
    let c = Cluster::start(2).await;
    write_all(&c, &[0, 1], &dataset("w", 20)).await;
    let node = c.nodes[0].addr.clone();
    let (code, out, err) = run(&["status", "--watch", "--interval", "200ms", "--count", "3", "--node", &node]).await;
    assert_eq!(code, Some(0), "{err}");
    // Not a terminal: each table under a `--- time` line, rather than the screen cleared.
    assert_eq!(out.lines().filter(|l| l.starts_with("--- ")).count(), 3, "{out}");
    assert!(!out.contains('\x1b'), "no escape codes into a pipe: {out:?}");
    for head in ["REQ/S", "P99", "MOVING", "HINTS", "COPIES"] {
        assert_eq!(out.matches(head).count(), 3, "{head} in every table: {out}");
    }
    assert_eq!(out.matches("key copies: 40 (2 per key)").count(), 3, "{out}");

    let (code, out, err) =
        run(&["status", "--watch", "--json", "--interval", "100ms", "--count", "2", "--node", &node]).await;
    assert_eq!(code, Some(0), "{err}");
    let docs: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("one JSON document a line")).collect();
    assert_eq!(docs.len(), 2, "{out}");
    for d in &docs {
        let members = d["members"].as_array().unwrap();
        assert_eq!(members.len(), 2);
        assert!(members.iter().all(|m| m["moves"].is_array() && m.get("requests_per_s").is_some()), "{d}");
        assert_eq!(d["states"], serde_json::json!({ "normal": 2 }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_flags_are_checked() {
    let (code, _, err) = run(&["status", "--watch", "--interval", "10ms", "--node", "127.0.0.1:1"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("shorter than 100ms"), "{err}");
    let (code, _, err) = run(&["status", "--count", "2", "--node", "127.0.0.1:1"]).await;
    assert_eq!(code, Some(2), "--count needs --watch: {err}");
    // A node that does not answer: each failure on stderr, nothing but documents on stdout, and
    // exit code 3 (unavailable), as without --watch (the errors were on stdout, and the exit
    // code 0).
    let down = format!("127.0.0.1:{}", free_port());
    let (code, out, err) =
        run(&["status", "--watch", "--json", "--interval", "100ms", "--count", "2", "--node", &down]).await;
    assert_eq!((code, out.as_str()), (Some(3), ""), "{err}");
    assert_eq!(err.matches("cannot reach").count(), 2, "{err}");
}
