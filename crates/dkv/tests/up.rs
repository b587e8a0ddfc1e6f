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

/// `dkv up` with `flags`, its stdout and stderr lines collected as they come.
struct Up {
    proc: Proc,
    out: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    err: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Up {
    fn start(flags: &[String]) -> Up {
        let mut child = dkv().arg("up").args(flags).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let collect = |r: Box<dyn std::io::Read + Send>| {
            let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    sink.lock().unwrap().push(line.unwrap_or_default());
                }
            });
            lines
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Up { proc: Proc { child, addr: "dkv up".into(), args: Vec::new(), resp: None }, out, err }
    }

    fn said(&self, what: &str) -> bool {
        self.out.lock().unwrap().iter().chain(self.err.lock().unwrap().iter()).any(|l| l.contains(what))
    }

    fn transcript(&self) -> String {
        format!("stdout: {:?}\nstderr: {:?}", self.out.lock().unwrap(), self.err.lock().unwrap())
    }
}

fn up_flags(nodes: u16, seed_port: u16, base_port: u16) -> Vec<String> {
    ["--nodes", &nodes.to_string(), "--seed-port", &seed_port.to_string(), "--base-port", &base_port.to_string()]
        .into_iter()
        .chain(["--heartbeat-interval", "100ms", "--node-ttl", "2s"])
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_refuses_overlapping_ports_and_ports_another_process_holds() {
    // The seed's port is also node 0's.
    let port = free_port_run(2);
    let mut up = Up::start(&up_flags(2, port, port));
    assert_eq!(up.proc.wait_exit(Duration::from_secs(10)).await, Some(1), "{}", up.transcript());
    assert!(up.said(&format!("port {port} would be used by both the seed")), "{}", up.transcript());
    assert!(!up.said("cluster is up"), "{}", up.transcript());

    // Another dkv seed already listens on node 1's port: it answers /health, but it is not a node.
    let base = free_port_run(2);
    let _squatter = spawn_seed(&format!("127.0.0.1:{}", base + 1));
    eventually(Duration::from_secs(10), "the other seed to listen", || async move {
        std::net::TcpStream::connect(("127.0.0.1", base + 1)).ok()
    })
    .await;
    let mut up = Up::start(&up_flags(2, free_port(), base));
    assert_eq!(up.proc.wait_exit(Duration::from_secs(20)).await, Some(1), "{}", up.transcript());
    assert!(up.said(&format!("port {}, for node 1 (--base-port + 1), is not free", base + 1)), "{}", up.transcript());
    assert!(!up.said("cluster is up"), "{}", up.transcript());
}

/// Children of `pid` that have exited but were not reaped.
fn zombie_children(pid: u32) -> Vec<u32> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] == "Z" && fields[1] == pid.to_string() {
            zombies.push(entry.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    zombies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_reports_a_child_that_exits_and_reaps_it() {
    let base = free_port_run(2);
    let mut up = Up::start(&up_flags(2, free_port(), base));
    eventually(Duration::from_secs(30), "the cluster to be up", || async { up.said("Ctrl-C").then_some(()) }).await;
    let node1 = format!("127.0.0.1:{}", base + 1);
    let (status, _) = Client::new(&node1).raw(http::Method::POST, "/admin/stop", None).await.unwrap();
    assert_eq!(status, http::StatusCode::ACCEPTED);
    let reported = format!("node 1 (http://{node1}) exited (exit status: 0)");
    eventually(Duration::from_secs(20), "dkv up to report node 1's exit", || async {
        up.said(&reported).then_some(())
    })
    .await;
    let pid = up.proc.child.id();
    eventually(Duration::from_secs(5), "node 1 to be reaped", || async move {
        zombie_children(pid).is_empty().then_some(())
    })
    .await;
    // The rest of the cluster still runs and still stops on Ctrl-C.
    Client::new(&format!("127.0.0.1:{base}")).node_json("/health").await.unwrap();
    up.proc.signal(libc::SIGINT);
    assert_eq!(up.proc.wait_exit(Duration::from_secs(20)).await, Some(0), "{}", up.transcript());
}
