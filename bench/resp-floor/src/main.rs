//! The least a RESP server can cost per unpipelined `GET` or `SET` on this machine: the floor that
//! `FLOOR=1 bench/resp.sh` sets beside Redis and dkv (docs/performance-log.md, "Figures of
//! 2026-12-04 afternoon").
//!
//! It parses only well-formed arrays of bulk strings, keeps keys in one `HashMap`, answers `GET`,
//! `SET` and `PING`, and refuses anything else. It has no limits, no expiry, no metrics, no
//! timeouts and no replication: none of what a store must do. Five ways to run it:
//! - `resp-floor mio PORT`: one thread on its own epoll loop (mio, edge-triggered), as Redis runs,
//!   each reply written as soon as its command ran;
//! - `resp-floor mio-deferred PORT`: the same loop, writing replies in Redis's order: every ready
//!   connection is read and its commands run, then every reply is written before the next wait
//!   (Redis's `beforeSleep`), so a client woken by the first reply of a burst finds the others
//!   already there;
//! - `resp-floor mio-spin PORT`: the first loop, but it waits for events with a zero timeout
//!   (busy polling) until nothing happened for [`SPIN`], and only then sleeps in `epoll_wait`:
//!   a client's command then finds the server awake, and the client's own system call does not
//!   have to wake it (the experiment of docs/performance-log.md, "Figures of 2026-12-05 early morning");
//! - `resp-floor tokio PORT`: a task per connection on Tokio's multi-thread runtime, as a dkv
//!   node runs; the map sits behind a `Mutex`, which is never contended when the process is
//!   pinned to one CPU;
//! - `resp-floor tokio-spin PORT`: the same, with a task that yields in a loop while reads keep
//!   coming and sleeps once none came for [`SPIN`], as a dkv node's `--busy-poll` does.
//!
//! Whatever the floor costs per command is what the kernel's TCP path and the event loop cost;
//! the distance from it to a real server is that server's own work.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::{Arc, Mutex};

type Map = HashMap<Vec<u8>, Vec<u8>>;

const READ_SIZE: usize = 16 * 1024;

/// Unparsed input one connection may hold: a client that sends more without a whole command
/// (or sends something the floor does not parse) is closed.
const MAX_INPUT: usize = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(port)) = (args.get(1), args.get(2).and_then(|p| p.parse::<u16>().ok())) else {
        eprintln!("usage: resp-floor mio|mio-deferred|mio-spin|tokio|tokio-spin PORT");
        std::process::exit(2);
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match mode.as_str() {
        "mio" => run_mio(addr, false, false),
        "mio-deferred" => run_mio(addr, true, false),
        "mio-spin" => run_mio(addr, false, true),
        "tokio" => run_tokio(addr, false),
        "tokio-spin" => run_tokio(addr, true),
        _ => {
            eprintln!("resp-floor: the mode is mio, mio-deferred, mio-spin, tokio or tokio-spin, not {mode}");
            std::process::exit(2);
        }
    }
}

/// One command's arguments, as ranges into the input buffer.
type Args = Vec<std::ops::Range<usize>>;

/// A decimal length and the CRLF after it, from the start of `b`: (the number, bytes used).
fn length(b: &[u8]) -> Option<(usize, usize)> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || b.get(digits..digits + 2) != Some(b"\r\n") {
        return None;
    }
    let n = b[..digits].iter().fold(0, |n, c| n * 10 + usize::from(c - b'0'));
    Some((n, digits + 2))
}

/// One whole command from the start of `b`, its arguments in `args`: the bytes it takes, or
/// `None` while it is not all here, or if it is not an array of bulk strings (the connection
/// then waits until it holds `MAX_INPUT` bytes and is closed: the floor trusts its load).
fn parse(b: &[u8], args: &mut Args) -> Option<usize> {
    args.clear();
    if b.first() != Some(&b'*') {
        return None;
    }
    let (count, used) = length(&b[1..])?;
    let mut at = 1 + used;
    for _ in 0..count {
        if b.get(at) != Some(&b'$') {
            return None;
        }
        let (len, used) = length(&b[at + 1..])?;
        let start = at + 1 + used;
        if b.len() < start + len + 2 {
            return None;
        }
        args.push(start..start + len);
        at = start + len + 2;
    }
    Some(at)
}

/// Runs every whole command at the front of `input`, appends the replies to `out`, and returns
/// the bytes used.
fn serve(input: &[u8], map: &mut Map, args: &mut Args, out: &mut Vec<u8>) -> usize {
    let mut at = 0;
    while let Some(used) = parse(&input[at..], args) {
        let cmd = &input[at..at + used];
        let arg = |i: usize| args.get(i).map(|r| &cmd[r.clone()]);
        match (arg(0), args.len()) {
            (Some(name), 2) if name.eq_ignore_ascii_case(b"GET") => match map.get(arg(1).unwrap_or_default()) {
                Some(v) => {
                    out.push(b'$');
                    out.extend_from_slice(v.len().to_string().as_bytes());
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(v);
                    out.extend_from_slice(b"\r\n");
                }
                None => out.extend_from_slice(b"$-1\r\n"),
            },
            (Some(name), 3) if name.eq_ignore_ascii_case(b"SET") => {
                let (k, v) = (arg(1).unwrap_or_default(), arg(2).unwrap_or_default());
                map.insert(k.to_vec(), v.to_vec());
                out.extend_from_slice(b"+OK\r\n");
            }
            (Some(name), 1) if name.eq_ignore_ascii_case(b"PING") => out.extend_from_slice(b"+PONG\r\n"),
            _ => out.extend_from_slice(b"-ERR the floor serves GET, SET and PING only\r\n"),
        }
        at += used;
    }
    at
}

struct Conn {
    socket: mio::net::TcpStream,
    input: Vec<u8>,
    /// Replies not yet written (`deferred` only).
    output: Vec<u8>,
}

/// How long `mio-spin` and `tokio-spin` keep polling without sleeping once nothing happens.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

fn run_mio(addr: std::net::SocketAddr, deferred: bool, spin: bool) {
    use mio::{Events, Interest, Poll, Token};
    const LISTENER: Token = Token(usize::MAX);
    let mut poll = Poll::new().expect("epoll");
    let mut listener = mio::net::TcpListener::bind(addr).expect("bind");
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE).expect("register");
    let (mut conns, mut map) = (Vec::<Option<Conn>>::new(), Map::new());
    let (mut events, mut args, mut out) = (Events::with_capacity(256), Args::new(), Vec::new());
    let mut chunk = vec![0u8; READ_SIZE];
    // Connections with replies to write once every ready one was read (`deferred`).
    let mut pending = Vec::new();
    let mut last_event = std::time::Instant::now();
    loop {
        let timeout = match spin && last_event.elapsed() < SPIN {
            true => Some(std::time::Duration::ZERO),
            false => None,
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "epoll_wait: {e}");
            continue;
        }
        if spin && !events.is_empty() {
            last_event = std::time::Instant::now();
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut socket, _)) = listener.accept() {
                    socket.set_nodelay(true).expect("nodelay");
                    let slot = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry().register(&mut socket, Token(slot), Interest::READABLE).expect("register");
                    conns[slot] = Some(Conn { socket, input: Vec::new(), output: Vec::new() });
                }
                continue;
            }
            let slot = event.token().0;
            let Some(conn) = conns[slot].as_mut() else { continue };
            let mut open = true;
            loop {
                match conn.socket.read(&mut chunk) {
                    Ok(0) => open = false,
                    Ok(n) => {
                        conn.input.extend_from_slice(&chunk[..n]);
                        if n == chunk.len() {
                            continue;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => open = false,
                }
                break;
            }
            if deferred {
                let had = conn.output.len();
                let used = serve(&conn.input, &mut map, &mut args, &mut conn.output);
                conn.input.drain(..used);
                if had == 0 && !conn.output.is_empty() {
                    pending.push(slot);
                }
            } else {
                let used = serve(&conn.input, &mut map, &mut args, &mut out);
                conn.input.drain(..used);
                // The load sends one command and waits for its reply, so a reply never fills
                // the socket's buffer; a blocking write keeps the floor simple.
                if !out.is_empty() && write_blocking(&mut conn.socket, &out).is_err() {
                    open = false;
                }
                out.clear();
            }
            open &= conn.input.len() <= MAX_INPUT;
            if !open {
                close(&poll, &mut conns, slot);
            }
        }
        for slot in pending.drain(..) {
            let Some(conn) = conns[slot].as_mut() else { continue };
            let written = write_blocking(&mut conn.socket, &conn.output);
            conn.output.clear();
            if written.is_err() {
                close(&poll, &mut conns, slot);
            }
        }
    }
}

fn close(poll: &mio::Poll, conns: &mut [Option<Conn>], slot: usize) {
    if let Some(mut conn) = conns[slot].take() {
        let _ = poll.registry().deregister(&mut conn.socket);
    }
}

fn write_blocking(socket: &mut mio::net::TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match socket.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads done by every connection (`tokio-spin`), and whether the spinning task sleeps.
static READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static ASLEEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn run_tokio(addr: std::net::SocketAddr, spin: bool) {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        if spin {
            // Keeps the worker polling its events with a zero timeout while reads keep coming.
            tokio::spawn(async {
                let (mut seen, mut since) = (0, std::time::Instant::now());
                loop {
                    let reads = READS.load(Relaxed);
                    if reads != seen {
                        (seen, since) = (reads, std::time::Instant::now());
                    } else if since.elapsed() >= SPIN {
                        let woken = WAKE.notified();
                        ASLEEP.store(true, Relaxed);
                        if READS.load(Relaxed) == seen {
                            woken.await;
                        }
                        ASLEEP.store(false, Relaxed);
                        since = std::time::Instant::now();
                    }
                    tokio::task::yield_now().await;
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let map = Arc::new(Mutex::new(Map::new()));
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            socket.set_nodelay(true).expect("nodelay");
            let map = map.clone();
            tokio::spawn(async move {
                let (mut input, mut args, mut out) = (Vec::with_capacity(READ_SIZE), Args::new(), Vec::new());
                loop {
                    if input.capacity() - input.len() < READ_SIZE / 2 {
                        input.reserve(READ_SIZE);
                    }
                    match socket.read_buf(&mut input).await {
                        Ok(1..) => {}
                        _ => return,
                    }
                    if spin {
                        READS.fetch_add(1, Relaxed);
                        if ASLEEP.load(Relaxed) {
                            WAKE.notify_one();
                        }
                    }
                    let used = serve(&input, &mut map.lock().expect("map"), &mut args, &mut out);
                    input.drain(..used);
                    if input.len() > MAX_INPUT {
                        return;
                    }
                    if !out.is_empty() && socket.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
            });
        }
    });
}
