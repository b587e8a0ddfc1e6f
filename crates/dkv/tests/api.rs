//! The public API through a real 3-node cluster: the seed system's curl session, the client
//! commands, and every kind of bad input.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_session_works_through_three_different_nodes() {
    let c = Cluster::start(3).await;
    let (a, b, d) = (c.client(0), c.client(1), c.client(2));
    a.put(b"user_123", "John Doe").await.unwrap();
    assert_eq!(b.get(b"user_123").await.unwrap().as_deref(), Some(&b"John Doe"[..]));
    d.delete(b"user_123").await.unwrap();
    assert_eq!(a.get(b"user_123").await.unwrap(), None);
    let (status, body) = a.raw(Method::GET, "/get?key=user_123", None).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");

    // Arbitrary bytes round-trip exactly, keys included.
    let key = b"\x00k\xffey with spaces/&=?";
    let value = Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>());
    b.put(key, value.clone()).await.unwrap();
    for i in 0..3 {
        assert_eq!(c.client(i).get(key).await.unwrap(), Some(value.clone()), "via node {i}");
    }
    // `HEAD /get`: the length, no value; a 404 for an absent key.
    for (k, answer) in [(&key[..], "200 OK"), (b"user_123", "404 Not Found")] {
        let pq = format!("/get?key={}", dkv::client::encode_key(k));
        let request = format!("HEAD {pq} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (_, text) = exchange(&c.nodes[2].addr, request.into_bytes()).await;
        assert!(text.starts_with(&format!("HTTP/1.1 {answer}\r\n")), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").expect("a whole answer");
        assert_eq!(body, "", "a HEAD answer has no body");
        if answer == "200 OK" {
            assert!(head.contains("\r\ncontent-length: 70000\r\n"), "{head}");
        }
    }

    let stats = a.json("/stats").await.unwrap();
    assert_eq!(stats["replicas"], 3);
    for field in ["id", "keys", "bytes", "epoch", "state"] {
        assert!(!stats[field].is_null(), "stats lacks {field}: {stats}");
    }

    let cluster = d.json("/cluster").await.unwrap();
    let members = cluster["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for m in members {
        assert_eq!(m["tokens"].as_array().unwrap().len(), 128);
        assert_eq!(m["state"], "normal");
        assert!(m["id"].is_string() && m["addr"].is_string());
    }
    assert_eq!(cluster["epoch"], stats["epoch"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_a_replica_coordinates_writes_and_forwards_reads() {
    let c = Cluster::start_with(3, &["--replication", "1"]).await;
    let data = dataset("f", 60);
    write_all(&c, &[0], &data).await;
    let forwarded = || async { c.client(0).json("/stats").await.unwrap()["requests"]["forwarded"].as_u64().unwrap() };
    assert_eq!(forwarded().await, 0, "node 0 sends writes to the owner itself, never as a forward");
    assert_eq!(c.keys_on(0).await + c.keys_on(1).await + c.keys_on(2).await, 60, "one copy each with N=1");
    assert!(missing(&c, &[0], &data).await.is_empty());
    let reads = forwarded().await;
    assert!(reads > 0 && reads < 60, "node 0 owns part of 60 keys and forwards reads of the rest: {reads}");
    assert!(missing(&c, &[1, 2], &data).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_put_get_del_and_status() {
    let c = Cluster::start(2).await;
    let node = format!("http://{}", c.nodes[0].addr);
    let run = |args: &[&str]| {
        let out = dkv().args(args).args(["--node", &node]).output().expect("run dkv");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(run(&["put", "city", "Zürich"]).0, Some(0));
    let (code, out, _) = run(&["get", "city"]);
    assert_eq!((code, out.as_str()), (Some(0), "Zürich"));
    let (code, out, _) = run(&["status"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("normal") && out.contains("key copies: 2") && out.contains("keys: 1"),
        "one key, two copies: {out}"
    );
    assert_eq!(run(&["del", "city"]).0, Some(0));
    let (code, _, err) = run(&["get", "city"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = dkv()
        .args(["get", "x", "--node", "http://127.0.0.1:1"])
        .output()
        .map(|o| (o.status.code(), (), String::from_utf8_lossy(&o.stderr).to_string()))
        .unwrap();
    assert_eq!(code, Some(3), "worth trying again, not a missing key");
    assert!(err.contains("cannot reach"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    // One copy per key, so that one of the two nodes is not a replica of the hop-test key.
    let c = Cluster::start_with(2, &["--max-value-size", "64KiB", "--replication", "1"]).await;
    let a = c.client(0);
    a.put(b"keep", "original").await.unwrap();
    let before = (c.keys_on(0).await, c.keys_on(1).await);

    let cases: Vec<(Method, String, Option<Bytes>, StatusCode)> = vec![
        (Method::PUT, "/put".into(), Some("v".into()), StatusCode::BAD_REQUEST),
        (Method::PUT, "/put?key=".into(), Some("v".into()), StatusCode::BAD_REQUEST),
        (Method::PUT, "/put?other=keep".into(), Some("v".into()), StatusCode::BAD_REQUEST),
        (Method::GET, "/get".into(), None, StatusCode::BAD_REQUEST),
        (Method::DELETE, "/delete?key=".into(), None, StatusCode::BAD_REQUEST),
        (
            Method::PUT,
            format!("/put?key={}", "k".repeat(8 * 1024 + 1)),
            Some("v".into()),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (Method::GET, format!("/get?key={}", "k".repeat(8 * 1024 + 1)), None, StatusCode::PAYLOAD_TOO_LARGE),
        (
            Method::PUT,
            "/put?key=keep".into(),
            Some(Bytes::from(vec![b'x'; 64 * 1024 + 1])),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (Method::POST, "/put?key=keep".into(), Some("v".into()), StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/put?key=keep".into(), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::PUT, "/get?key=keep".into(), Some("v".into()), StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/delete?key=keep".into(), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/nope".into(), None, StatusCode::NOT_FOUND),
    ];
    for node in 0..2 {
        for (method, pq, body, want) in &cases {
            let (status, text) = c.client(node).raw(method.clone(), pq, body.clone()).await.unwrap();
            let short = &pq[..pq.len().min(40)];
            assert_eq!(status, *want, "{method} {short} via node {node}: {text:?}");
            let text = String::from_utf8_lossy(&text);
            assert!(
                !text.trim().is_empty() && text.trim().lines().count() == 1,
                "{method} {short}: error body should be one line: {text:?}"
            );
        }
    }

    // A value over the limit without Content-Length (chunked) is refused too, without storing.
    let (status, _) = chunked_put(&c.nodes[0].addr, "/put?key=keep", 64 * 1024 + 10).await;
    assert_eq!(status, 413);

    // A request that was already forwarded the maximum number of times is refused, not bounced.
    use dkv_node::transport::wire::{ForwardReply, ForwardRequest, Kind, Op};
    let forwarded = |epoch| ForwardRequest {
        epoch,
        hops: dkv_node::front::router::MAX_HOPS,
        op: Op::Get,
        key: Bytes::from_static(b"hop-test"),
        value: None,
        expires: None,
        level: None,
    };
    let mut statuses = Vec::new();
    for node in &c.nodes {
        let epoch = c.client(0).json("/health").await.unwrap()["epoch"].as_u64().unwrap();
        let reply: ForwardReply = internal_call(&node.addr, None, Kind::Forward, &forwarded(epoch)).await.unwrap();
        statuses.push(match reply {
            Ok(None) => 404,
            Ok(Some(_)) => 200,
            Err(e) => e.status().as_u16(),
        });
    }
    // Exactly one node owns the key: it answers "not found", the other refuses with 503.
    statuses.sort();
    assert_eq!(statuses, [404, 503]);

    assert_eq!(a.get(b"keep").await.unwrap().as_deref(), Some(&b"original"[..]));
    assert_eq!((c.keys_on(0).await, c.keys_on(1).await), before, "bad requests changed the store");
}

/// A raw HTTP/1.1 exchange (for headers and encodings the client does not produce).
async fn exchange(addr: &str, request: Vec<u8>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before the whole body is sent; ignore write errors.
    let _ = s.write_all(&request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

async fn chunked_put(addr: &str, pq: &str, size: usize) -> (u16, String) {
    let mut req =
        format!("PUT {pq} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
    let chunk = vec![b'y'; 4096];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        req.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        req.extend_from_slice(&chunk[..n]);
        req.extend_from_slice(b"\r\n");
        left -= n;
    }
    req.extend_from_slice(b"0\r\n\r\n");
    exchange(addr, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_secret_guards_internal_and_membership_endpoints() {
    let seed_addr = format!("127.0.0.1:{}", free_port());
    let node_addr = format!("127.0.0.1:{}", free_port());
    let child = dkv()
        .env("DKV_CLUSTER_SECRET", "s3cret")
        .args(["seed", "--new-cluster", "--listen", &seed_addr])
        .spawn()
        .unwrap();
    let _seed = Proc { child, addr: seed_addr.clone(), args: Vec::new(), resp: None };
    let child = dkv()
        .env("DKV_CLUSTER_SECRET", "s3cret")
        .args(["node", "--listen", &node_addr, "--seed", &seed_addr, "--heartbeat-interval", HEARTBEAT])
        .spawn()
        .unwrap();
    let _node = Proc { child, addr: node_addr.clone(), args: Vec::new(), resp: None };
    let node = dkv::client::Client::new(&node_addr);
    // The node registered with the secret and serves clients, who need none.
    eventually(std::time::Duration::from_secs(10), "the node to serve", || {
        let node = node.clone();
        async move { node.json("/health").await.ok() }
    })
    .await;
    node.put(b"k", "v").await.unwrap();
    assert_eq!(node.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));

    // Without the secret: node-to-node messages, admin and membership-changing calls are refused.
    use dkv_node::transport::wire::{Kind, RefreshRequest};
    let refresh = RefreshRequest { epoch: 0 };
    for secret in [None, Some("wrong")] {
        let e = common::internal_call::<_, ()>(&node_addr, secret, Kind::Refresh, &refresh).await.unwrap_err();
        assert!(
            matches!(&e, dkv_transport::CallError::Handshake { reason, .. } if reason.contains("cluster secret")),
            "{e}"
        );
    }
    common::internal_call::<_, ()>(&node_addr, Some("s3cret"), Kind::Refresh, &refresh).await.expect("with the secret");
    let seed = dkv::client::Client::new(&seed_addr);
    for (client, path) in [(&node, "/admin/stop"), (&seed, "/register"), (&seed, "/leave")] {
        let (status, body) = client.raw(Method::POST, path, Some(Bytes::from_static(b"{}"))).await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body:?}");
        assert!(String::from_utf8_lossy(&body).contains("cluster secret"));
    }
    assert_eq!(
        seed.json("/nodes").await.unwrap()["nodes"].as_array().unwrap().len(),
        1,
        "reading the membership stays open"
    );
    assert_eq!(node.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]), "the refused stop changed nothing");
}
