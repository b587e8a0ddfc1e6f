//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/`: a handful of valid
//! inputs each (and a few just-invalid ones), encoded by dkv's own types so they stay valid when a
//! format changes. Run it after such a change, and commit what it writes:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus
//!
//! Each file is named after what it holds. The inputs' leading byte is the target's selector (see
//! each target's doc); the rest is what arrives from the network.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use dkv_membership::api::{IdRequest, LeaveRequest, RegisterRequest};
use dkv_membership::{Member, NodeId, NodeState, View};
use dkv_node::error::NodeError;
use dkv_node::replication::consistency::Level;
use dkv_node::transport::wire::{self, Kind};
use dkv_storage::{Entry, Version};
use dkv_transport::frame::{self, Hello, Refusal};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    resp_frame(&root.join("resp_frame"))?;
    transport_frame(&root.join("transport_frame"))?;
    wire_message(&root.join("wire_message"))?;
    query(&root.join("query"))?;
    seed_request(&root.join("seed_request"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes)?;
    println!("{} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

fn with(pick: u8, rest: &[u8]) -> Vec<u8> {
    [&[pick][..], rest].concat()
}

/// Selector 0xff: the server's limits, 4 bytes at a time; 0x2a: small limits, 1 byte at a time.
fn resp_frame(dir: &Path) -> std::io::Result<()> {
    let big = 0xff;
    let small = 0x2a;
    write(dir, "get", &with(big, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"))?;
    write(dir, "set", &with(big, b"*3\r\n$3\r\nSET\r\n$4\r\nuser\r\n$5\r\nvalue\r\n"))?;
    write(dir, "inline-ping", &with(big, b"PING\r\n"))?;
    write(dir, "pipelined", &with(big, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n  SET  a b \n*0\r\n*-1\r\n"))?;
    write(dir, "binary-safe", &with(big, b"*3\r\n$3\r\nSET\r\n$2\r\n\r\n\r\n$3\r\n\x00\xff\n\r\n"))?;
    write(dir, "mget-small-limits", &with(small, b"*4\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"))?;
    write(
        dir,
        "hello-client",
        &with(big, b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n*4\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n"),
    )?;
    write(dir, "incomplete", &with(big, b"*2\r\n$4\r\nECHO\r\n$5\r\nhel"))?;
    write(dir, "bulk-over-limit", &with(small, b"*1\r\n$17\r\n"))?;
    write(dir, "inline-over-limit", &with(small, &[b'a'; 40]))?;
    Ok(())
}

/// Selector 3: the server's limit before the hello (64 KiB), 1 byte at a time; 4: 1 MiB.
fn transport_frame(dir: &Path) -> std::io::Result<()> {
    let frame = |kind: u8, id: u64, body: &[u8]| {
        let mut b = BytesMut::new();
        frame::encode(&mut b, kind, id, |out| out.extend_from_slice(body));
        b.to_vec()
    };
    let postcard = |v: &dyn erased::Postcard| v.bytes();
    let hello = Hello { version: frame::VERSION, cluster: "dkv".into(), secret: Some("s3cret".into()) };
    let anonymous = Hello { version: frame::VERSION, cluster: "dkv".into(), secret: None };
    let read = wire::ReadRequest { epoch: 3, key: Bytes::from_static(b"user:1") };
    write(dir, "hello", &with(3, &frame(frame::KIND_HELLO, 0, &postcard(&hello))))?;
    let mut stream = frame(frame::KIND_HELLO, 0, &postcard(&anonymous));
    stream.extend(frame(Kind::Read as u8, 1, &postcard(&read)));
    stream.extend(frame(Kind::Clock as u8, 2, &[]));
    write(dir, "hello-then-requests", &with(3, &stream))?;
    let mut answers = frame(frame::KIND_WELCOME, 0, &[]);
    answers.extend(frame(frame::KIND_OK, 2, &postcard(&wire::ClockReply { now_ms: 1_700_000_000_000 })));
    answers.extend(frame(frame::KIND_REFUSED, 1, &postcard(&Refusal::new(409, "stale epoch 3"))));
    write(dir, "welcome-then-answers", &with(4, &answers))?;
    write(
        dir,
        "goodbye",
        &with(4, &frame(frame::KIND_GOODBYE, 0, b"cluster name \"x\" but this node belongs to \"dkv\"")),
    )?;
    write(dir, "over-the-limit", &with(2, &frame(Kind::Read as u8, 1, &[0; 64])))?;
    let mut other_version = frame(Kind::Read as u8, 1, b"x");
    other_version[4] = frame::VERSION + 1;
    write(dir, "other-version", &with(3, &other_version))?;
    Ok(())
}

/// Selector: the request kind, or 0x80 + the answer's index in the target.
fn wire_message(dir: &Path) -> std::io::Result<()> {
    let v = Version { ts: 1_700_000_000_000 << 16, node: 0xabcd };
    let kv = |k: &'static [u8], e: Entry| wire::KeyEntry { key: Bytes::from_static(k), entry: e };
    let entries = vec![
        kv(b"a", Entry::value(v, Bytes::from_static(b"1"))),
        kv(b"b", Entry::tombstone(v)),
        kv(b"", Entry::tombstone(v)),
        kv(b"t", Entry::expiring(v, Bytes::from_static(b"2"), Some(1_764_585_000_123))),
        kv(b"x", Entry::expiring(v, Bytes::from_static(b"3"), Some(5)).expired()),
    ];
    let req = |kind: Kind, v: &dyn erased::Postcard| with(kind as u8, &v.bytes());
    let answer = |n: u8, v: &dyn erased::Postcard| with(0x80 + n, &v.bytes());
    let apply = wire::ApplyRequest { epoch: 7, kind: wire::ApplyKind::Write, entries: entries.clone() };
    write(dir, "apply", &req(Kind::Apply, &apply))?;
    write(dir, "read", &req(Kind::Read, &wire::ReadRequest { epoch: 7, key: Bytes::from_static(b"user:1") }))?;
    write(dir, "writes", &req(Kind::Writes, &wire::WritesRequest { epoch: 7, entries: entries.clone() }))?;
    let keys = vec![Bytes::from_static(b"user:1"), Bytes::new(), Bytes::from_static(b"\x00\xff")];
    write(dir, "reads", &req(Kind::Reads, &wire::ReadsRequest { epoch: 7, keys }))?;
    let range = wire::RangeRequest { epoch: 7, for_node: 2, after: Some((42, Bytes::from_static(b"k"))) };
    write(dir, "range", &req(Kind::Range, &range))?;
    write(
        dir,
        "sync-summary",
        &req(Kind::SyncSummary, &wire::SyncSummary { epoch: 7, from: 1, digests: vec![1, 2, 3] }),
    )?;
    let bucket = wire::SyncBucket {
        epoch: 7,
        from: 1,
        bucket: 9,
        after: Some((40, Bytes::from_static(b"a"))),
        upto: None,
        entries: entries.clone(),
    };
    write(dir, "sync-bucket", &req(Kind::SyncBucket, &bucket))?;
    let versions = wire::SyncVersions {
        epoch: 7,
        from: 1,
        bucket: 9,
        after: Some((40, Bytes::from_static(b"a"))),
        upto: Some((90, Bytes::from_static(b"z"))),
        versions: entries.iter().map(|kv| (kv.key.clone(), kv.entry.version)).collect(),
    };
    write(dir, "sync-versions", &req(Kind::SyncVersions, &versions))?;
    write(dir, "refresh", &req(Kind::Refresh, &wire::RefreshRequest { epoch: 8 }))?;
    let forward = wire::ForwardRequest {
        epoch: 7,
        hops: 1,
        op: wire::Op::Put,
        key: Bytes::from_static(b"user:1"),
        value: Some(Bytes::from_static(b"v")),
        expires: Some(1_764_585_000_123),
        level: Some(Level::Count(2)),
    };
    write(dir, "forward", &req(Kind::Forward, &forward))?;
    write(dir, "clock", &req(Kind::Clock, &wire::ClockRequest {}))?;
    write(dir, "apply-reply", &answer(0, &wire::ApplyReply { superseded: Some(v) }))?;
    let read_response = wire::ReadResponse { entry: Some(Entry::value(v, Bytes::from_static(b"1"))), settled: true };
    write(dir, "read-response", &answer(1, &read_response))?;
    write(
        dir,
        "range-page",
        &answer(2, &wire::RangePage { entries: entries.clone(), next: Some((43, Bytes::from_static(b"l"))) }),
    )?;
    write(dir, "sync-diff", &answer(3, &wire::SyncDiff { buckets: vec![0, 9, 1023] }))?;
    let bucket_reply =
        wire::SyncBucketReply { entries: entries.clone(), stopped: Some((41, Bytes::from_static(b"b"))) };
    write(dir, "sync-bucket-reply", &answer(4, &bucket_reply))?;
    let forward_err: wire::ForwardReply = Err(NodeError::Unavailable("no replica of the key is up".into()));
    write(dir, "forward-reply-error", &answer(6, &forward_err))?;
    let found = wire::Found { value: Bytes::from_static(b"v"), expires: Some(1_764_585_000_123) };
    let forward_ok: wire::ForwardReply = Ok(Some(found));
    write(dir, "forward-reply", &answer(6, &forward_ok))?;
    let outcomes = vec![
        wire::WriteOutcome::Applied,
        wire::WriteOutcome::Superseded(v),
        wire::WriteOutcome::Refused { status: 422, message: "write version 5000 ms ahead".into() },
    ];
    write(dir, "writes-reply", &answer(8, &wire::WritesReply { outcomes }))?;
    let entries_read = vec![Some(Entry::value(v, Bytes::from_static(b"1"))), None, Some(Entry::tombstone(v))];
    write(dir, "reads-reply", &answer(9, &wire::ReadsReply { entries: entries_read, settled: false }))?;
    let versions_reply = wire::SyncVersionsReply {
        entries: entries.clone(),
        stopped: Some((41, Bytes::from_static(b"b"))),
        wanted: vec![Bytes::from_static(b"a"), Bytes::new()],
    };
    write(dir, "sync-versions-reply", &answer(10, &versions_reply))?;
    Ok(())
}

/// Selector: bits 0-1 the key limit (2: 1024 bytes), bits 2-3 the route (0: key, r; 1: key, w;
/// 2: none; 3: key, w, r).
fn query(dir: &Path) -> std::io::Result<()> {
    write(dir, "key", &with(0x02, b"key=user_123"))?;
    write(dir, "key-and-level", &with(0x06, b"key=a%20b+c%FF&w=quorum"))?;
    write(dir, "read-count", &with(0x02, b"r=2&key=k"))?;
    write(dir, "all-params", &with(0x0e, b"key=%00%01%ff&w=all&r=one"))?;
    write(dir, "encoded-name", &with(0x02, b"k%65y=v&&"))?;
    write(dir, "no-params", &with(0x0a, b""))?;
    write(dir, "repeated", &with(0x02, b"key=a&key=b"))?;
    write(dir, "unknown", &with(0x06, b"key=a&wr=all"))?;
    write(dir, "bad-percent", &with(0x02, b"key=%ZZ"))?;
    write(dir, "key-over-limit", &with(0x00, b"key=ab"))?;
    Ok(())
}

/// Requests separated by NUL, each a letter (the endpoint) and its JSON body, or `k` and two
/// bytes (a heartbeat from a node that is behind).
fn seed_request(dir: &Path) -> std::io::Result<()> {
    let json = |letter: u8, v: &dyn erased::Json| with(letter, &v.json());
    let join = |parts: Vec<Vec<u8>>| parts.join(&0u8);
    let register = |addr: &str| RegisterRequest { addr: addr.into(), vnodes: Some(8), ..Default::default() };
    let id = |n: u64| IdRequest {
        keys: Some(10),
        clock_offset_ms: Some(-3),
        coordinating_writes: Some(true),
        ..IdRequest::id(NodeId(n))
    };
    // Registrations without an id get 0x1000 + their position from the target.
    let life = join(vec![
        json(b'r', &register("127.0.0.1:7001")),
        json(b'r', &register("127.0.0.1:7002")),
        json(b'h', &id(0x1000)),
        json(b'y', &id(0x1001)),
        vec![b'k', 1, 2],
        json(b'l', &LeaveRequest { id: NodeId(0x1000), done: false }),
        vec![b'k', 2, 4],
        json(b'l', &LeaveRequest { id: NodeId(0x1000), done: true }),
        vec![b'x'],
    ]);
    write(dir, "register-heartbeat-ready-leave", &life)?;
    let member = |n: u64, state| Member {
        id: NodeId(n),
        addr: format!("10.0.0.{n}:7000"),
        tokens: vec![n << 60, (n << 60) + 1].into(),
        state,
        last_seen_ms: 5,
    };
    let view = View { epoch: 9, nodes: vec![member(1, NodeState::Normal), member(2, NodeState::Joining)] };
    let returning = RegisterRequest {
        addr: "10.0.0.3:7000".into(),
        id: Some(NodeId(3)),
        tokens: Some(vec![3 << 60]),
        state: Some(NodeState::Leaving),
        vnodes: None,
        view: Some(view.clone()),
        cluster: Some("dkv".into()),
    };
    write(dir, "returning-with-view", &json(b'r', &returning))?;
    let foreign = RegisterRequest { cluster: Some("other".into()), ..register("h:1") };
    write(dir, "foreign-cluster", &json(b'r', &foreign))?;
    write(dir, "bad-addr", &json(b'r', &register("no-port")))?;
    write(dir, "view-answer", &json(b'V', &view))?;
    // As every release writes the whole view: epoch, nodes and the seed's clock.
    let heartbeat = serde_json::json!({ "epoch": view.epoch, "nodes": view.nodes, "now_ms": 1_700_000_000_000u64 });
    write(dir, "heartbeat-answer", &json(b'H', &heartbeat))?;
    let registered = dkv_membership::api::RegisterResponse { id: NodeId(2), epoch: view.epoch, nodes: view.nodes };
    write(dir, "register-answer", &json(b'R', &registered))?;
    Ok(())
}

/// Object-safe encoders, so one closure takes any message.
mod erased {
    pub trait Postcard {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Postcard for T {
        fn bytes(&self) -> Vec<u8> {
            postcard::to_allocvec(self).expect("encoding a message")
        }
    }
    pub trait Json {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("encoding a body")
        }
    }
}
