//! The least an idle process that heartbeats can cost: the floor `bench/idle-floor.sh` measures
//! dkv's idle nodes against (README, "Membership at scale").
//!
//! `idle-floor sleep`: a Tokio runtime like a node's (two workers) whose one task sleeps 1 s in a
//! loop. `idle-floor rpc ADDR`: the same, and after each sleep it sends 200 bytes over a kept TCP
//! connection to `idle-floor server ADDR`, which echoes them, and reads them back: a heartbeat
//! with nothing in it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("sleep");
    let addr = args.get(2).cloned().unwrap_or_default();
    if mode == "server" {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        loop {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    let mut conn = match mode {
        "rpc" => {
            let s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            Some(s)
        }
        _ => None,
    };
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(s) = &mut conn {
            let mut back = [0u8; 200];
            if s.write_all(&[1u8; 200]).await.is_err() || s.read_exact(&mut back).await.is_err() {
                return; // the server is gone: the run is over
            }
        }
    }
}
