//! `dkv bench`: a load generator for one node or all of them, over HTTP or RESP.
//!
//! Each connection is its own task with its own keep-alive TCP connection, sending one request
//! at a time (closed loop: like `wrk` and `redis-benchmark` without pipelining), to the nodes in
//! turn. Each task keeps its own latency histogram (hdrhistogram); they are merged at the end, so
//! measuring takes no lock on the hot path. The run stops at `--duration` or after `--requests`,
//! whichever comes first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use dkv_node::transport::tls::{self, Outgoing};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::cli::{BenchArgs, Protocol};
use crate::client::{Client, ClientError};
use crate::{errln, outln};

#[derive(Default)]
struct Tally {
    done: AtomicU64,
    errors: AtomicU64,
    misses: AtomicU64,
    /// What the first failed request was answered: the run's error shows it (it said "see
    /// errors above", above which there were none, found by trying, 2026-12-06).
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn failed(&self, why: impl FnOnce() -> String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(why());
        }
    }
}

/// 0 once the load ran; 2 for flags out of their range, as for every command (they were 1, with
/// a failed run: found by a hunt, 2026-12-07); 1 for a run that failed.
pub async fn run(args: BenchArgs) -> i32 {
    if let Err(e) = check(&args) {
        errln!("dkv bench: {e}");
        return crate::commands::exit::REFUSED;
    }
    // Exit codes as for every command: 2 for a `--node` that is the seed, 3 for one that cannot
    // be reached. Pointed at the seed it sent its requests there for the whole --duration, each
    // answered with an error (found by a hunt, 2026-12-07).
    let targets = match targets(&args).await {
        Ok(targets) => targets,
        Err(e) => {
            errln!("dkv bench: {e}");
            return e.exit_code();
        }
    };
    match run_inner(args, targets).await {
        Ok(()) => 0,
        Err(e) => {
            errln!("dkv bench: {e}");
            1
        }
    }
}

/// Connections one bench opens at most.
const MAX_CONNECTIONS: usize = 10_000;

/// The flags, each within its range and with the others it needs.
fn check(args: &BenchArgs) -> Result<(), String> {
    if args.connections == 0 || args.keys == 0 {
        return Err("--connections and --keys must be at least 1".into());
    }
    // Each connection is a task with a socket and buffers: 100 000 of them took 6 GB and ran
    // nothing for seconds.
    if args.connections > MAX_CONNECTIONS {
        return Err(format!(
            "--connections {} is over {MAX_CONNECTIONS}: a node serves 10000 clients by default",
            args.connections
        ));
    }
    if args.resp_port.is_some() && args.protocol != crate::cli::Protocol::Resp {
        return Err("--resp-port is the RESP port to load: it goes with --protocol resp".into());
    }
    if args.requests == Some(0) {
        return Err("--requests 0 sends nothing: give at least 1, or leave it out to run for --duration".into());
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err(format!("--read-ratio must be between 0 and 1, got {}", args.read_ratio));
    }
    // Its requests go to the node's own paths: `http://h:8080/prefix` dialed `h:8080/prefix`
    // (found by review, 2026-12-07).
    let node = args.node.trim_end_matches('/');
    if node.split("://").last().is_some_and(|rest| rest.contains('/')) {
        return Err(format!("--node {} has a path: dkv bench loads a node directly, at its own paths", args.node));
    }
    Ok(())
}

async fn run_inner(args: BenchArgs, targets: Vec<String>) -> Result<(), String> {
    let tls = connector(&args)?;
    let prefix: Arc<str> = Arc::from(args.prefix.as_str());
    let value = Bytes::from(vec![b'v'; args.value_size]);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // `-n` exactly: the first `n % connections` connections send one more.
    let share =
        |c: u64| args.requests.map(|n| n / args.connections as u64 + u64::from(c < n % args.connections as u64));
    let read_ratio = if args.load { 0.0 } else { args.read_ratio };
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let addr = targets[c % targets.len()].clone();
        let (tally, stop, value) = (tally.clone(), stop.clone(), value.clone());
        let order = args.load.then_some((c as u64, args.connections as u64));
        let prefix = prefix.clone();
        let protocol = args.protocol;
        let limit = share(c as u64);
        let cfg = Load { keys: args.keys, read_ratio, limit, protocol, order, prefix, tls: tls.clone(), end: deadline };
        let password = args.password.clone();
        tasks.push(tokio::spawn(async move {
            let result = connection(addr, cfg, password, value, tally, stop, c as u64).await;
            (result, Instant::now())
        }));
    }

    let bar = indicatif::ProgressBar::new(args.duration.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {elapsed_precise} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    loop {
        // Until the next progress tick, or the deadline if it comes first: a --duration of 300ms
        // ran for 400 (found by trying, 2026-12-06).
        tokio::time::sleep_until((Instant::now() + Duration::from_millis(200)).min(deadline).into()).await;
        let done = tally.done.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        bar.set_position(started.elapsed().as_millis() as u64);
        bar.set_message(format!(
            "{done} requests, {:.0}/s, {} errors",
            done as f64 / secs,
            tally.errors.load(Ordering::Relaxed)
        ));
        if Instant::now() >= deadline || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut first_error = None;
    // The run ends when its last connection does, not at the progress tick that notices it (up
    // to 200 ms later: 8% of a 2.5 s run).
    let mut ended = started;
    for t in tasks {
        let (result, end) = t.await.map_err(|e| format!("a connection task failed: {e}"))?;
        ended = ended.max(end);
        match result {
            Ok(h) => hist.add(&h).expect("same bounds"),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = (ended - started).as_secs_f64();
    bar.finish_and_clear();
    let done = tally.done.load(Ordering::Relaxed);
    let q = |p: f64| Duration::from_micros(hist.value_at_quantile(p));
    outln!(
        "{} over {:?} to {} node(s), {} connections, {:.0}% reads, {} keys ({}0..), {} B values",
        done,
        args.protocol,
        targets.len(),
        args.connections,
        read_ratio * 100.0,
        args.keys,
        args.prefix,
        args.value_size
    );
    outln!("throughput  {:.0} requests/s  ({done} in {elapsed:.2} s)", done as f64 / elapsed);
    outln!(
        "latency     p50 {:?}  p90 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        Duration::from_micros(hist.max())
    );
    outln!(
        "errors      {}  (reads of absent keys: {})",
        tally.errors.load(Ordering::Relaxed),
        tally.misses.load(Ordering::Relaxed)
    );
    if args.load && done < args.keys && tally.errors.load(Ordering::Relaxed) == 0 {
        match args.requests {
            // `-n` ended it: the message blamed --duration (found by a hunt, 2026-12-07).
            Some(n) if done >= n => errln!("--load wrote {done} of the {} keys: -n {n} ended it first", args.keys),
            _ => errln!(
                "--load wrote {done} of the {} keys within --duration {:?}: give a longer --duration to write them all",
                args.keys,
                args.duration
            ),
        }
    }
    if let Some(e) = first_error {
        return Err(format!("a connection gave up: {e}"));
    }
    if tally.errors.load(Ordering::Relaxed) > 0 {
        let first = tally.first_failure.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        return Err(format!("some requests failed; the first: {first}"));
    }
    Ok(())
}

/// The addresses to load: `--node`, or with `--all-nodes` every member it lists. For RESP, each
/// node's RESP port comes from its `/stats` (`resp_port`), or `--resp-port` for `--node` itself.
async fn targets(args: &BenchArgs) -> Result<Vec<String>, ClientError> {
    let base = Client::new(&args.node).with_password(args.password.as_deref()).with_tls(&args.tls)?;
    let host_port = base.base().split("://").nth(1).unwrap_or(base.base()).to_string();
    let http: Vec<String> = if args.all_nodes {
        let cluster = base.node_json("/cluster").await?;
        cluster["members"]
            .as_array()
            .ok_or_else(|| ClientError::Usage("the node's /cluster has no members".into()))?
            .iter()
            .filter_map(|m| m["addr"].as_str().map(String::from))
            .collect()
    } else {
        if args.protocol == Protocol::Http {
            // The seed, or nothing there, is refused before any load. Any other HTTP server is
            // loaded as it is: the bench scripts load the reference server with it.
            let probe = base.node_json("/health").await;
            if let Err(e @ (ClientError::Seed { .. } | ClientError::Unreachable { .. })) = probe {
                return Err(e);
            }
        }
        vec![host_port.clone()]
    };
    if args.protocol == Protocol::Http {
        return Ok(http);
    }
    let mut resp = Vec::new();
    for addr in &http {
        let port = match (args.resp_port, addr == &host_port) {
            (Some(p), true) => p,
            _ => {
                let stats = base.sibling(addr).node_json("/stats").await?;
                let port = stats["resp_port"].as_u64().ok_or_else(|| {
                    ClientError::Usage(format!("{addr} serves no RESP (start it with --resp-listen)"))
                })?;
                port as u16
            }
        };
        let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
        resp.push(format!("{host}:{port}"));
    }
    Ok(resp)
}

#[derive(Clone)]
struct Load {
    keys: u64,
    read_ratio: f64,
    limit: Option<u64>,
    protocol: Protocol,
    /// `--load`: (this connection's first key, stride): keys in order, each once.
    order: Option<(u64, u64)>,
    /// `--prefix`: every key is this and a number.
    prefix: Arc<str>,
    /// For an `https://` node: both its ports speak TLS.
    tls: Option<TlsConnector>,
    /// When `--duration` ends the run.
    end: Instant,
}

impl Load {
    /// How long a request (or a connection's setup) started now may wait for its answer: up to
    /// [`REQUEST_TIMEOUT`], and at most [`END_GRACE`] past the run's end. A paused node held a 3 s
    /// run for 10.5 s, its connections waiting out their timeout (found by a hunt, 2026-12-07).
    fn wait(&self) -> Duration {
        REQUEST_TIMEOUT.min((self.end + END_GRACE).saturating_duration_since(Instant::now()))
    }
}

/// TLS for the connections when `--node` is `https://`, with `--cacert` (and `--client-cert`).
fn connector(args: &BenchArgs) -> Result<Option<TlsConnector>, String> {
    if !args.node.starts_with("https://") {
        return Ok(None);
    }
    let tls = args.tls.connector().map_err(|e| e.to_string())?;
    tls.map(Some).ok_or_else(|| "an https:// node needs --cacert FILE (the CA that signed its certificate)".into())
}

enum Conn {
    /// With the `Authorization` header of `--password`.
    Http(http1::SendRequest<Full<Bytes>>, Option<http::HeaderValue>),
    Resp(Outgoing, BytesMut),
}

/// The longest one request (or a connection's setup) may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past the run's end a request in flight then may still take before it counts as
/// failed: a node that answers at all answers well within it.
const END_GRACE: Duration = Duration::from_secs(1);

async fn connect(addr: &str, load: &Load, password: Option<&str>) -> Result<Conn, String> {
    let wait = load.wait();
    tokio::time::timeout(wait, connect_within(addr, load, password))
        .await
        .unwrap_or_else(|_| Err(format!("connecting to {addr}: no answer within {wait:?}")))
}

async fn connect_within(addr: &str, load: &Load, password: Option<&str>) -> Result<Conn, String> {
    let mut stream = tls::connect(addr, load.tls.as_ref()).await.map_err(|e| format!("connecting to {addr}: {e}"))?;
    match load.protocol {
        Protocol::Resp => {
            let mut buf = BytesMut::with_capacity(4096);
            if let Some(p) = password {
                let cmd = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{p}\r\n", p.len());
                stream.write_all(cmd.as_bytes()).await.map_err(|e| e.to_string())?;
                while !buf.ends_with(b"\r\n") {
                    if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                        return Err(format!("{addr} closed the connection after AUTH"));
                    }
                }
                if !buf.starts_with(b"+OK") {
                    return Err(format!("{addr} refused AUTH: {}", String::from_utf8_lossy(&buf).trim()));
                }
                buf.clear();
            }
            Ok(Conn::Resp(stream, buf))
        }
        Protocol::Http => {
            let io = hyper_util::rt::TokioIo::new(stream);
            let (send, conn) = http1::handshake(io).await.map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
            tokio::spawn(conn);
            let auth = password.map(|p| {
                use base64::Engine as _;
                let basic = base64::engine::general_purpose::STANDARD.encode(format!("default:{p}"));
                http::HeaderValue::from_str(&format!("Basic {basic}")).expect("base64 is a valid header value")
            });
            Ok(Conn::Http(send, auth))
        }
    }
}

async fn connection(
    addr: String,
    load: Load,
    password: Option<String>,
    value: Bytes,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> Result<Histogram<u64>, String> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
    let mut conn = connect(&addr, &load, password.as_deref()).await?;
    let mut sent = 0u64;
    // An answer is at most a value this bench wrote (as other commands' answers, `MAX_ANSWER`).
    let max_answer = crate::client::MAX_ANSWER.max(value.len().saturating_add(1 << 20));
    while !stop.load(Ordering::Relaxed) && load.limit.is_none_or(|l| sent < l) {
        let n = match load.order {
            Some((first, stride)) => first + sent * stride,
            None => rng.random_range(0..load.keys),
        };
        if n >= load.keys {
            break;
        }
        let key = format!("{}{n}", load.prefix);
        let read = rng.random_bool(load.read_ratio);
        let t0 = Instant::now();
        let request = async {
            match &mut conn {
                Conn::Http(send, auth) => {
                    let value = if read { None } else { Some(value.clone()) };
                    http_request(send, auth.as_ref(), &addr, &key, value, max_answer).await
                }
                Conn::Resp(stream, buf) => {
                    resp_request(stream, buf, &key, if read { None } else { Some(&value) }).await
                }
            }
        };
        // A node that stops answering (paused, cut off) must not hold the run past its end: a
        // request unanswered for REQUEST_TIMEOUT, or at END_GRACE past the end, counts as failed,
        // and the connection is made again if the run goes on.
        let wait = load.wait();
        let outcome = tokio::time::timeout(wait, request).await.unwrap_or_else(|_| match wait < REQUEST_TIMEOUT {
            true => Err(format!("no answer within {:?}, {END_GRACE:?} past the end of the run", t0.elapsed())),
            false => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
        });
        sent += 1;
        let mut broken = false;
        match outcome {
            Ok(Outcome::Ok) => {}
            Ok(Outcome::Miss) => {
                tally.misses.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Outcome::Failed(why)) => tally.failed(|| format!("{addr} answered {why}")),
            Err(e) => {
                // The connection broke: count it and reconnect once per failure.
                tally.failed(|| format!("{addr}: {e}"));
                tracing::debug!("{addr}: {e}");
                broken = true;
            }
        }
        let _ = hist.record((t0.elapsed().as_micros() as u64).max(1));
        tally.done.fetch_add(1, Ordering::Relaxed);
        if broken && !stop.load(Ordering::Relaxed) {
            conn = connect(&addr, &load, password.as_deref()).await?;
        }
    }
    Ok(hist)
}

enum Outcome {
    Ok,
    /// A read of a key that does not exist (not an error: the key space starts empty).
    Miss,
    /// What the server answered instead.
    Failed(String),
}

async fn http_request(
    send: &mut http1::SendRequest<Full<Bytes>>,
    auth: Option<&http::HeaderValue>,
    addr: &str,
    key: &str,
    value: Option<Bytes>,
    max_answer: usize,
) -> Result<Outcome, String> {
    let (method, path) = if value.is_some() { ("PUT", "put") } else { ("GET", "get") };
    let key = crate::client::encode_key(key.as_bytes());
    let mut req =
        http::Request::builder().method(method).uri(format!("/{path}?key={key}")).header(http::header::HOST, addr);
    if let Some(auth) = auth {
        req = req.header(http::header::AUTHORIZATION, auth.clone());
    }
    let req = req.body(Full::new(value.unwrap_or_default())).map_err(|e| e.to_string())?;
    send.ready().await.map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    // A 404 is a miss only from a node: the seed, or a server that is not dkv, answers one too.
    let from_a_node = resp.headers().contains_key(dkv_membership::api::NODE_HEADER);
    // Bounded as the other commands' answers are (`client::MAX_ANSWER`, or a value's size).
    let body = http_body_util::Limited::new(resp.into_body(), max_answer)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(match status.as_u16() {
        200 | 204 => Outcome::Ok,
        404 if from_a_node => Outcome::Miss,
        _ => {
            let said = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
            let who = if from_a_node { "" } else { " (not as a dkv node: no x-dkv-node header)" };
            Outcome::Failed(format!("{status}{who}: {said}"))
        }
    })
}

async fn resp_request(
    stream: &mut Outgoing,
    buf: &mut BytesMut,
    key: &str,
    value: Option<&Bytes>,
) -> Result<Outcome, String> {
    let args: Vec<&[u8]> = match value {
        Some(v) => vec![b"SET", key.as_bytes(), v],
        None => vec![b"GET", key.as_bytes()],
    };
    let mut cmd = Vec::with_capacity(64 + value.map_or(0, Bytes::len));
    cmd.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        cmd.extend_from_slice(a);
        cmd.extend_from_slice(b"\r\n");
    }
    stream.write_all(&cmd).await.map_err(|e| e.to_string())?;
    loop {
        if let Some(outcome) = parse_reply(buf)? {
            return Ok(outcome);
        }
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the server closed the connection".into());
        }
    }
}

/// One complete reply to SET or GET at the front of `buf`, consumed; `None` if more is needed.
fn parse_reply(buf: &mut BytesMut) -> Result<Option<Outcome>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
    let outcome = match buf[0] {
        b'+' => Outcome::Ok,
        b'-' => Outcome::Failed(String::from_utf8_lossy(&buf[1..eol.min(201)]).to_string()),
        b'$' => {
            let len: i64 =
                std::str::from_utf8(&buf[1..eol]).ok().and_then(|s| s.parse().ok()).ok_or("bad bulk header")?;
            if len < 0 {
                buf.advance(eol + 2);
                return Ok(Some(Outcome::Miss));
            }
            let total = eol + 2 + len as usize + 2;
            if buf.len() < total {
                return Ok(None);
            }
            buf.advance(total);
            return Ok(Some(Outcome::Ok));
        }
        b'H' => return Err("an HTTP answer, not a RESP reply: --resp-port is the node's HTTP port; give its RESP port (resp_port in its /stats)".into()),
        other => return Err(format!("unexpected reply type {:?}: is that a RESP port?", other as char)),
    };
    buf.advance(eol + 2);
    Ok(Some(outcome))
}
