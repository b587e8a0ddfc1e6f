//! The least an idle process that heartbeats can cost: the floor `bench/idle-floor.sh` measures
//! dkv's idle nodes against (docs/performance-log.md, "Membership at scale").
//!
//! `idle-floor sleep`: a Tokio runtime like a node's (two workers) whose one task sleeps 1 s in a
//! loop. `idle-floor timerfd`: the same, paced by a kernel timer on the runtime's epoll, as a
//! node's heartbeat is (`crates/node/src/life/ticker.rs`). `idle-floor rpc ADDR`: sleeping, and
//! after each sleep it sends 200 bytes over a kept TCP connection to `idle-floor server ADDR`,
//! which echoes them, and reads them back: a heartbeat with nothing in it. `idle-floor tick-rpc
//! ADDR` makes that round trip paced by the kernel timer, as a node's heartbeat is now, and
//! `idle-floor tick-send ADDR` only sends, unanswered: a heartbeat the seed answers only when it
//! has something to say.

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
                    // Bytes of 2 are one-way (`tick-send`): nothing goes back.
                    if buf[0] != 2 && s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    let mut conn = match mode {
        "rpc" | "tick-rpc" | "tick-send" => {
            let s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            Some(s)
        }
        _ => None,
    };
    let mut timerfd = mode.starts_with("t").then(TimerFd::every_second);
    loop {
        match &mut timerfd {
            Some(t) => t.tick().await,
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
        if let Some(s) = conn.as_mut().filter(|_| mode == "tick-send") {
            if s.write_all(&[2u8; 200]).await.is_err() {
                return;
            }
        } else if let Some(s) = &mut conn {
            let mut back = [0u8; 200];
            if s.write_all(&[1u8; 200]).await.is_err() || s.read_exact(&mut back).await.is_err() {
                return; // the server is gone: the run is over
            }
        }
    }
}

/// A kernel timer the runtime's epoll waits on: one wake-up a tick.
struct TimerFd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

impl TimerFd {
    fn every_second() -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: plain system calls; the descriptor is owned from here on.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        assert!(fd >= 0, "timerfd_create");
        let second = libc::timespec { tv_sec: 1, tv_nsec: 0 };
        let spec = libc::itimerspec { it_interval: second, it_value: second };
        // SAFETY: `fd` is a timerfd and `spec` outlives the call.
        assert_eq!(unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) }, 0);
        // SAFETY: `fd` was just created and is owned by nothing else.
        TimerFd(tokio::io::unix::AsyncFd::new(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }).expect("register"))
    }

    async fn tick(&mut self) {
        use std::os::fd::AsRawFd;
        loop {
            let mut guard = self.0.readable().await.expect("readable");
            let mut expirations = 0u64;
            // SAFETY: reads 8 bytes into a u64.
            let n = unsafe { libc::read(self.0.as_raw_fd(), (&mut expirations as *mut u64).cast(), 8) };
            if n == 8 {
                return;
            }
            guard.clear_ready();
        }
    }
}
