//! dkv-transport against tarpc, on dkv's two hottest internal calls.
//!
//! ```text
//! rpc-bench [--calls N] [--secs S] [--rounds R] [--conc 64,8] [--server-cpu CPU]
//!           [--transports dkv,tarpc-bincode,tarpc-postcard] [--raw FILE]
//! rpc-bench server TRANSPORT      (started by the above; prints its port, exits on stdin EOF)
//! ```
//!
//! For every round, transport and concurrency C, a fresh server process is started
//! (`taskset -c CPU` this binary `server TRANSPORT`, on 127.0.0.1, an in-memory map behind a
//! mutex), one client connection is opened, and C tasks share it: first `apply` calls (an
//! `ApplyRequest` of one entry, a 10-byte key and a 100-byte value), then `read` calls of the keys
//! just written (a `ReadResponse` carrying the same entry back). Each phase runs N calls or S
//! seconds, whichever ends first, after a warm-up. Measured per phase: calls/s, p50/p99 latency,
//! and the CPU time (user + system, all threads) of the server process (/proc/PID/stat) and of
//! this client process (getrusage) divided by the calls made. The table gives the median of the
//! rounds for each figure.
//!
//! Transports:
//! * `dkv`: dkv-transport's `Client` and `serve`, bodies in postcard, exactly as the node uses it.
//! * `tarpc-bincode`: tarpc's serde transport (tokio-util length-delimited frames) with
//!   tokio-serde's bincode format, what tarpc ships (`serde-transport-bincode`).
//! * `tarpc-postcard`: the same with postcard as the tokio-serde format (a 20-line adapter below),
//!   so the codec and the RPC machinery can be told apart.
//!
//! Both sides set TCP_NODELAY, as dkv-transport does.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::marker::PhantomData;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::Response;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

// ---- dkv's message shapes (crates/node/src/transport/wire.rs, crates/storage/src/version.rs) ----

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub ts: u64,
    pub node: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub version: Version,
    pub value: Option<Bytes>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyEntry {
    pub key: Bytes,
    pub entry: Entry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyKind {
    Write,
    Handoff,
    Hint,
    Repair,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub epoch: u64,
    pub kind: ApplyKind,
    pub entries: Vec<KeyEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadRequest {
    pub epoch: u64,
    pub key: Bytes,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadResponse {
    pub entry: Option<Entry>,
    pub settled: bool,
}

const KIND_APPLY: u8 = 1;
const KIND_READ: u8 = 2;
/// Distinct keys written and read: call i uses key number `i % KEYS`.
const KEYS: u64 = 100_000;
const WARMUP_CALLS: u64 = 3_000;
const MAX_FRAME: usize = 16 << 20;
/// A server left behind by a client that died without closing its stdin still stops.
const SERVER_LIFETIME: Duration = Duration::from_secs(20 * 60);

// ---- the server's state: an in-memory map ----

#[derive(Default)]
struct Store(Mutex<HashMap<Bytes, Entry>>);

impl Store {
    fn apply(&self, req: ApplyRequest) {
        let mut map = self.0.lock().unwrap();
        for kv in req.entries {
            match map.get_mut(&kv.key) {
                Some(old) if old.version >= kv.entry.version => {}
                Some(old) => *old = kv.entry,
                None => {
                    map.insert(kv.key, kv.entry);
                }
            }
        }
    }

    fn read(&self, req: ReadRequest) -> ReadResponse {
        ReadResponse { entry: self.0.lock().unwrap().get(&req.key).cloned(), settled: true }
    }
}

// ---- dkv-transport: the handler, as crates/node/src/transport/internal.rs writes it ----

struct DkvHandler(Arc<Store>);

impl dkv_transport::Handler for DkvHandler {
    async fn handle(&self, kind: u8, body: Bytes) -> Result<Vec<u8>, dkv_transport::Refusal> {
        fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, dkv_transport::Refusal> {
            postcard::from_bytes(b).map_err(|e| dkv_transport::Refusal::new(400, e.to_string()))
        }
        fn encode<T: Serialize>(m: &T) -> Result<Vec<u8>, dkv_transport::Refusal> {
            postcard::to_allocvec(m).map_err(|e| dkv_transport::Refusal::new(500, e.to_string()))
        }
        match kind {
            KIND_APPLY => {
                self.0.apply(decode(&body)?);
                encode(&())
            }
            KIND_READ => encode(&self.0.read(decode(&body)?)),
            k => Err(dkv_transport::Refusal::new(400, format!("unknown kind {k}"))),
        }
    }
}

fn dkv_auth() -> dkv_transport::Auth {
    dkv_transport::Auth { cluster: "bench".into(), secret: None }
}

// ---- tarpc: the service ----

#[tarpc::service]
pub trait Kv {
    async fn apply(req: ApplyRequest);
    async fn read(req: ReadRequest) -> ReadResponse;
}

#[derive(Clone)]
struct KvServer(Arc<Store>);

impl Kv for KvServer {
    async fn apply(self, _: tarpc::context::Context, req: ApplyRequest) {
        self.0.apply(req)
    }
    async fn read(self, _: tarpc::context::Context, req: ReadRequest) -> ReadResponse {
        self.0.read(req)
    }
}

/// postcard as a tokio-serde format, for tarpc's serde transport.
type Ghost<Item, SinkItem> = PhantomData<(fn() -> Item, fn(SinkItem))>;
struct Postcard<Item, SinkItem>(Ghost<Item, SinkItem>);

impl<Item, SinkItem> Default for Postcard<Item, SinkItem> {
    fn default() -> Self {
        Postcard(PhantomData)
    }
}

impl<Item: DeserializeOwned, SinkItem> tarpc::tokio_serde::Deserializer<Item> for Postcard<Item, SinkItem> {
    type Error = std::io::Error;
    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<Item, Self::Error> {
        postcard::from_bytes(src).map_err(std::io::Error::other)
    }
}

impl<Item, SinkItem: Serialize> tarpc::tokio_serde::Serializer<SinkItem> for Postcard<Item, SinkItem> {
    type Error = std::io::Error;
    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> Result<Bytes, Self::Error> {
        postcard::to_allocvec(item).map(Bytes::from).map_err(std::io::Error::other)
    }
}

fn framed(stream: TcpStream) -> Framed<TcpStream, LengthDelimitedCodec> {
    let _ = stream.set_nodelay(true);
    Framed::new(stream, LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_codec())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Dkv,
    TarpcBincode,
    TarpcPostcard,
}

impl Transport {
    fn parse(s: &str) -> Transport {
        match s {
            "dkv" => Transport::Dkv,
            "tarpc-bincode" => Transport::TarpcBincode,
            "tarpc-postcard" => Transport::TarpcPostcard,
            _ => die(&format!("unknown transport {s:?} (dkv, tarpc-bincode, tarpc-postcard)")),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Transport::Dkv => "dkv",
            Transport::TarpcBincode => "tarpc-bincode",
            Transport::TarpcPostcard => "tarpc-postcard",
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("rpc-bench: {msg}");
    std::process::exit(2)
}

// ---- server process ----

async fn run_server(transport: Transport) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    // Stop when the client closes our stdin (or dies), or after SERVER_LIFETIME in any case.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(SERVER_LIFETIME);
        std::process::exit(0);
    });
    println!("{port}");
    std::io::stdout().flush().expect("stdout");
    let store = Arc::new(Store::default());
    match transport {
        Transport::Dkv => {
            let handler = Arc::new(DkvHandler(store));
            let config = Arc::new(dkv_transport::ServerConfig {
                auth: dkv_auth(),
                max_frame: MAX_FRAME,
                max_concurrent: 1024,
                handshake_timeout: Duration::from_secs(5),
            });
            let (_stop_tx, stop) = tokio::sync::watch::channel(false);
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(dkv_transport::serve(stream, handler.clone(), config.clone(), stop.clone()));
            }
        }
        Transport::TarpcBincode | Transport::TarpcPostcard => {
            let server = KvServer(store);
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let framed = framed(stream);
                // Every request runs as its own task, as dkv-transport's server does.
                macro_rules! serve_with {
                    ($codec:expr) => {
                        tokio::spawn(
                            BaseChannel::with_defaults(tarpc::serde_transport::new(framed, $codec))
                                .execute(server.clone().serve())
                                .for_each(|call| async move {
                                    tokio::spawn(call);
                                }),
                        )
                    };
                }
                if transport == Transport::TarpcBincode {
                    serve_with!(Bincode::default());
                } else {
                    serve_with!(Postcard::default());
                }
            }
        }
    }
}

// ---- client side ----

#[derive(Clone)]
enum Api {
    Dkv(Arc<dkv_transport::Client>, Arc<str>),
    Tarpc(KvClient),
}

impl Api {
    async fn connect(transport: Transport, addr: &str) -> Api {
        match transport {
            Transport::Dkv => Api::Dkv(
                Arc::new(dkv_transport::Client::new(dkv_transport::ClientConfig {
                    auth: dkv_auth(),
                    connect_timeout: Duration::from_secs(5),
                    max_frame: MAX_FRAME,
                    max_in_flight: 4096,
                })),
                addr.into(),
            ),
            Transport::TarpcBincode | Transport::TarpcPostcard => {
                let stream = TcpStream::connect(addr).await.unwrap_or_else(|e| die(&format!("connect {addr}: {e}")));
                let framed = framed(stream);
                let config = tarpc::client::Config::default();
                let client = if transport == Transport::TarpcBincode {
                    KvClient::new(config, tarpc::serde_transport::new(framed, Bincode::default())).spawn()
                } else {
                    KvClient::new(config, tarpc::serde_transport::new(framed, Postcard::default())).spawn()
                };
                Api::Tarpc(client)
            }
        }
    }

    async fn apply(&self, req: &ApplyRequest) -> Result<(), String> {
        match self {
            Api::Dkv(client, addr) => {
                let body = client
                    .call(addr, KIND_APPLY, |b| dkv_transport::put_postcard(b, req), Duration::from_secs(10))
                    .await
                    .map_err(|e| e.to_string())?;
                postcard::from_bytes::<()>(&body).map_err(|e| e.to_string())
            }
            Api::Tarpc(client) => client.apply(tarpc::context::current(), req.clone()).await.map_err(|e| e.to_string()),
        }
    }

    async fn read(&self, req: &ReadRequest) -> Result<ReadResponse, String> {
        match self {
            Api::Dkv(client, addr) => {
                let body = client
                    .call(addr, KIND_READ, |b| dkv_transport::put_postcard(b, req), Duration::from_secs(10))
                    .await
                    .map_err(|e| e.to_string())?;
                postcard::from_bytes(&body).map_err(|e| e.to_string())
            }
            Api::Tarpc(client) => client.read(tarpc::context::current(), req.clone()).await.map_err(|e| e.to_string()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Apply,
    Read,
}

/// The key of call `i`, among `keys` distinct ones: 10 bytes.
fn key(i: u64, keys: u64) -> Bytes {
    Bytes::from(format!("key{:07}", i % keys))
}

/// Run `calls` calls of `op` on `keys` distinct keys (or until `limit` passes) from `conc` tasks
/// sharing `api`.
/// Returns the calls made, the errors, the wall time and every call's latency in ns.
async fn drive(
    api: &Api,
    op: Op,
    conc: usize,
    calls: u64,
    keys: u64,
    limit: Duration,
) -> (u64, u64, Duration, Vec<u64>) {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let value = Bytes::from(vec![b'v'; 100]);
    let start = Instant::now();
    let deadline = start + limit;
    let mut tasks = Vec::with_capacity(conc);
    for _ in 0..conc {
        let (api, next, errors, value) = (api.clone(), next.clone(), errors.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity((calls as usize) / conc + 1);
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let r = match op {
                    Op::Apply => {
                        let req = ApplyRequest {
                            epoch: 7,
                            kind: ApplyKind::Write,
                            entries: vec![KeyEntry {
                                key: key(i, keys),
                                entry: Entry {
                                    version: Version { ts: 1_000 + i, node: 3 },
                                    value: Some(value.clone()),
                                },
                            }],
                        };
                        api.apply(&req).await
                    }
                    Op::Read => {
                        let req = ReadRequest { epoch: 7, key: key(i, keys) };
                        match api.read(&req).await {
                            Ok(r) if r.entry.as_ref().and_then(|e| e.value.as_ref()).map(Bytes::len) == Some(100) => {
                                Ok(())
                            }
                            Ok(_) => Err("read found no 100-byte value".to_string()),
                            Err(e) => Err(e),
                        }
                    }
                };
                lat.push(t.elapsed().as_nanos() as u64);
                if let Err(e) = r {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
            (lat, first_error)
        }));
    }
    let mut all = Vec::with_capacity(calls as usize);
    for t in tasks {
        let (lat, first_error) = t.await.expect("caller task");
        if let Some(e) = first_error {
            eprintln!("rpc-bench: {op:?} error: {e}");
        }
        all.extend(lat);
    }
    let wall = start.elapsed();
    (all.len() as u64, errors.load(Ordering::Relaxed), wall, all)
}

/// Bytes on the wire for one call of each kind (request, answer), framing included: a sample
/// apply and read of the benchmark's sizes, encoded the way each transport does.
fn wire_bytes(transport: Transport) -> [(usize, usize); 2] {
    use tarpc::tokio_serde::Serializer as _;
    let apply = ApplyRequest {
        epoch: 7,
        kind: ApplyKind::Write,
        entries: vec![KeyEntry {
            key: key(12_345, KEYS),
            entry: Entry { version: Version { ts: 101_000, node: 3 }, value: Some(Bytes::from(vec![b'v'; 100])) },
        }],
    };
    let read = ReadRequest { epoch: 7, key: key(12_345, KEYS) };
    let answer = ReadResponse { entry: apply.entries[0].entry.clone().into(), settled: true };
    let id = 100_000; // a call well into a run
    match transport {
        Transport::Dkv => {
            let frame = 4 + dkv_transport::frame::HEADER;
            let pc = |n: usize| frame + n;
            [
                (pc(postcard::to_allocvec(&apply).unwrap().len()), pc(postcard::to_allocvec(&()).unwrap().len())),
                (pc(postcard::to_allocvec(&read).unwrap().len()), pc(postcard::to_allocvec(&answer).unwrap().len())),
            ]
        }
        Transport::TarpcBincode | Transport::TarpcPostcard => {
            let request = |message| {
                tarpc::ClientMessage::Request(tarpc::Request { context: tarpc::context::current(), id, message })
            };
            let response = |message| tarpc::Response { request_id: id, message: Ok(message) };
            macro_rules! sizes {
                ($codec:ident) => {{
                    let mut c: $codec<Response<KvResponse>, tarpc::ClientMessage<KvRequest>> = $codec::default();
                    let mut s: $codec<tarpc::ClientMessage<KvRequest>, Response<KvResponse>> = $codec::default();
                    let mut len_req = |m| 4 + Pin::new(&mut c).serialize(&request(m)).unwrap().len();
                    let (a, r) = (
                        len_req(KvRequest::Apply { req: apply.clone() }),
                        len_req(KvRequest::Read { req: read.clone() }),
                    );
                    let mut len_resp = |m| 4 + Pin::new(&mut s).serialize(&response(m)).unwrap().len();
                    [(a, len_resp(KvResponse::Apply(()))), (r, len_resp(KvResponse::Read(answer.clone())))]
                }};
            }
            if transport == Transport::TarpcBincode {
                sizes!(Bincode)
            } else {
                sizes!(Postcard)
            }
        }
    }
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// utime + stime of process `pid` (all its threads), in seconds.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server /proc stat");
    // The name (field 2) may hold spaces: fields after its closing parenthesis start at field 3.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clock_ticks_per_sec()
}

/// User + system CPU of this process (all its threads), in seconds.
fn self_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Sample {
    round: usize,
    transport: Transport,
    conc: usize,
    op: Op,
    calls: u64,
    errors: u64,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    server_us: f64,
    client_us: f64,
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(transport: Transport, cpu: &str) -> Server {
        let exe = std::env::current_exe().expect("current exe");
        let mut cmd = if cpu.is_empty() {
            Command::new(exe)
        } else {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu).arg(exe);
            c
        };
        let mut child = cmd
            .arg("server")
            .arg(transport.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| die(&format!("starting the server: {e}")));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("server port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            die(&format!("server said {line:?} instead of its port"))
        });
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: the server exits
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill(); // by its PID: the child we started
        let _ = self.child.wait();
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Args {
    calls: u64,
    secs: u64,
    rounds: usize,
    conc: Vec<usize>,
    server_cpu: String,
    transports: Vec<Transport>,
    raw: Option<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Args {
    let mut a = Args {
        calls: 200_000,
        secs: 30,
        rounds: 3,
        conc: vec![64, 8],
        server_cpu: "1".into(),
        transports: vec![Transport::Dkv, Transport::TarpcBincode, Transport::TarpcPostcard],
        raw: None,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| die(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--calls" => a.calls = val().parse().unwrap_or_else(|_| die("--calls N")),
            "--secs" => a.secs = val().parse().unwrap_or_else(|_| die("--secs S")),
            "--rounds" => a.rounds = val().parse().unwrap_or_else(|_| die("--rounds R")),
            "--conc" => a.conc = val().split(',').map(|c| c.parse().unwrap_or_else(|_| die("--conc 64,8"))).collect(),
            "--server-cpu" => a.server_cpu = val(),
            "--transports" => a.transports = val().split(',').map(Transport::parse).collect(),
            "--raw" => a.raw = Some(val()),
            _ => die(&format!("unknown argument {flag:?}")),
        }
    }
    a
}

/// One measured phase: a warm-up, then `args.calls` calls of `op` from `conc` callers.
#[allow(clippy::too_many_arguments)]
async fn measure(
    round: usize,
    transport: Transport,
    conc: usize,
    op: Op,
    pid: u32,
    api: &Api,
    written: &mut u64,
    args: &Args,
    limit: Duration,
) -> Sample {
    let (_, werr, _, _) = drive(api, op, conc, WARMUP_CALLS, (*written).min(WARMUP_CALLS), limit).await;
    if werr > 0 {
        die(&format!("{} {op:?}: {werr} errors in the warm-up", transport.name()));
    }
    let (s0, c0) = (proc_cpu(pid), self_cpu());
    let (calls, errors, wall, mut lat) = drive(api, op, conc, args.calls, *written, limit).await;
    let (s1, c1) = (proc_cpu(pid), self_cpu());
    if op == Op::Apply {
        *written = KEYS.min(calls).max(WARMUP_CALLS);
    }
    lat.sort_unstable();
    let n = calls.max(1) as f64;
    let s = Sample {
        round,
        transport,
        conc,
        op,
        calls,
        errors,
        per_sec: calls as f64 / wall.as_secs_f64(),
        p50_us: pct(&lat, 0.50),
        p99_us: pct(&lat, 0.99),
        server_us: (s1 - s0) * 1e6 / n,
        client_us: (c1 - c0) * 1e6 / n,
    };
    eprintln!(
        "round {round} C={conc:<3} {:<5} {:<14} {:>7} calls {:>3} err {:>9.0}/s p50 {:>7.1}us p99 {:>8.1}us cpu server {:>5.1}us client {:>5.1}us",
        format!("{op:?}").to_lowercase(),
        transport.name(),
        s.calls,
        s.errors,
        s.per_sec,
        s.p50_us,
        s.p99_us,
        s.server_us,
        s.client_us
    );
    s
}

async fn run_client(args: Args) {
    let limit = Duration::from_secs(args.secs);
    let mut samples = Vec::new();
    for round in 1..=args.rounds {
        for &conc in &args.conc {
            // One fresh server per transport, all up at once (an idle one costs nothing), so the
            // transports take turns phase by phase: the machine's load drifts less within a turn.
            let mut live = Vec::new();
            for &transport in &args.transports {
                let server = Server::start(transport, &args.server_cpu);
                let api = Api::connect(transport, &format!("127.0.0.1:{}", server.port)).await;
                // Reads ask for keys the apply phase wrote (all KEYS unless it was cut short).
                live.push((transport, server, api, KEYS));
            }
            for (turn, op) in [Op::Apply, Op::Read].into_iter().enumerate() {
                // A different transport goes first in every turn of every round.
                let n = live.len().max(1);
                let first = (2 * (round - 1) + turn) % n;
                for k in 0..n {
                    let (transport, server, api, written) = &mut live[(first + k) % n];
                    let s = measure(round, *transport, conc, op, server.child.id(), api, written, &args, limit).await;
                    samples.push(s);
                }
            }
            drop(live); // closes the connections, then stops the servers
        }
    }

    if let Some(path) = &args.raw {
        let mut out = String::from(
            "round\ttransport\tconc\top\tcalls\terrors\tcalls_per_s\tp50_us\tp99_us\tserver_cpu_us\tclient_cpu_us\n",
        );
        for s in &samples {
            out += &format!(
                "{}\t{}\t{}\t{:?}\t{}\t{}\t{:.0}\t{:.1}\t{:.1}\t{:.2}\t{:.2}\n",
                s.round,
                s.transport.name(),
                s.conc,
                s.op,
                s.calls,
                s.errors,
                s.per_sec,
                s.p50_us,
                s.p99_us,
                s.server_us,
                s.client_us
            );
        }
        std::fs::write(path, out).unwrap_or_else(|e| die(&format!("writing {path}: {e}")));
    }

    println!(
        "medians of {} rounds; {} calls per phase (or {} s); one connection; server on CPU {}, client on its own",
        args.rounds, args.calls, args.secs, args.server_cpu
    );
    println!(
        "{:<15} {:>3} {:<6} {:>9} {:>8} {:>8} {:>11} {:>11} {:>11} {:>7}",
        "transport", "C", "call", "calls/s", "p50 us", "p99 us", "server us", "client us", "total us", "errors"
    );
    for &conc in &args.conc {
        for op in [Op::Apply, Op::Read] {
            for &transport in &args.transports {
                let of = |f: fn(&Sample) -> f64| {
                    median(
                        samples
                            .iter()
                            .filter(|s| s.transport == transport && s.conc == conc && s.op == op)
                            .map(f)
                            .collect(),
                    )
                };
                let errors: u64 = samples
                    .iter()
                    .filter(|s| s.transport == transport && s.conc == conc && s.op == op)
                    .map(|s| s.errors)
                    .sum();
                let total = of(|s| s.server_us + s.client_us);
                println!(
                    "{:<15} {:>3} {:<6} {:>9.0} {:>8.1} {:>8.1} {:>11.2} {:>11.2} {:>11.2} {:>7}",
                    transport.name(),
                    conc,
                    if op == Op::Apply { "apply" } else { "read" },
                    of(|s| s.per_sec),
                    of(|s| s.p50_us),
                    of(|s| s.p99_us),
                    of(|s| s.server_us),
                    of(|s| s.client_us),
                    total,
                    errors
                );
            }
        }
    }
    println!("bytes on the wire per call, framing included (request + answer):");
    for &t in &args.transports {
        let [(aq, aa), (rq, ra)] = wire_bytes(t);
        println!("  {:<15} apply {aq} + {aa} = {}, read {rq} + {ra} = {}", t.name(), aq + aa, rq + ra);
    }
    if args.transports.contains(&Transport::Dkv) {
        // Paired within a round (the phases of one round ran seconds apart), then the median.
        println!("CPU per call (server + client) relative to dkv, median of the rounds' ratios [lowest-highest]:");
        let total = |t: Transport, round: usize, conc: usize, op: Op| {
            samples
                .iter()
                .find(|s| s.transport == t && s.round == round && s.conc == conc && s.op == op)
                .map(|s| s.server_us + s.client_us)
        };
        for &conc in &args.conc {
            for op in [Op::Apply, Op::Read] {
                let others: Vec<String> = args
                    .transports
                    .iter()
                    .filter(|t| **t != Transport::Dkv)
                    .map(|&t| {
                        let ratios: Vec<f64> = (1..=args.rounds)
                            .filter_map(|r| Some(total(t, r, conc, op)? / total(Transport::Dkv, r, conc, op)?))
                            .collect();
                        let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
                        let hi = ratios.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        format!("{} {:.2}x [{lo:.2}-{hi:.2}]", t.name(), median(ratios))
                    })
                    .collect();
                let name = if op == Op::Apply { "apply" } else { "read" };
                println!("  C={conc:<3} {name:<6} {}", others.join(", "));
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if args.peek().map(String::as_str) == Some("server") {
        args.next();
        let t = Transport::parse(&args.next().unwrap_or_else(|| die("server TRANSPORT")));
        rt.block_on(run_server(t));
    } else {
        let a = parse_args(args);
        rt.block_on(run_client(a));
    }
}
