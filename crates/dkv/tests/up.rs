//! `dkv up`: one command starts a working cluster, and Ctrl-C stops all of it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use dkv::client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_a_cluster_that_serves_and_ctrl_c_stops_every_process() {
    let seed_port = free_port();
    let base = free_port_run(3);
    let mut child = dkv()
        .args(["up", "--nodes", "3", "--seed-port", &seed_port.to_string(), "--base-port", &base.to_string()])
        .args(["--heartbeat-interval", "100ms", "--node-ttl", "2s"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn dkv up");
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            let done = line.contains("Ctrl-C");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines).await.expect("dkv up printed its banner").unwrap();
    let urls: Vec<String> = lines.iter().filter_map(|l| l.trim().strip_prefix("node ").map(str::to_string)).collect();
    assert_eq!(urls.len(), 3, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("curl")), "prints a curl example: {lines:?}");

    Client::new(&urls[0]).put(b"user_123", "John Doe").await.unwrap();
    assert_eq!(Client::new(&urls[2]).get(b"user_123").await.unwrap().as_deref(), Some(&b"John Doe"[..]));

    // SAFETY: kill(2) on the child this test started; SIGINT is what Ctrl-C sends.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut up = Proc { child, addr: "dkv up".into(), args: Vec::new(), resp: None };
    assert_eq!(up.wait_exit(Duration::from_secs(20)).await, Some(0));
    for url in &urls {
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        eventually(Duration::from_secs(5), &format!("{url} to be closed"), || async move {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err().then_some(())
        })
        .await;
    }
}
