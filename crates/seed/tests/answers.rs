//! The seed's answers on a real socket, as its OpenAPI description (`src/openapi.json`) states
//! them: error bodies are one line of plain text whatever the client sent, a body over the limit
//! is refused with 413, and integers are read in any JSON spelling (schemathesis found that one:
//! `67108863.0` is an integer to JSON Schema; see `scripts/api-schema-test.sh`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

async fn seed() -> String {
    seed_with(dkv_seed::SeedConfig::MAX_CONNECTIONS).await
}

async fn seed_with(max_connections: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = dkv_seed::SeedConfig {
        node_ttl: Duration::from_secs(60),
        cluster_secret: None,
        cluster_name: "dkv".into(),
        max_connections,
        tls: None,
        data_dir: None,
        read_timeout: Duration::from_secs(1),
        new_cluster: true,
    };
    tokio::spawn(dkv_seed::run(config, listener, std::future::pending()));
    addr
}

/// One HTTP/1.1 request. The body is written while the answer is read, since the seed answers a
/// body over its limit before it has all of it.
async fn call(addr: &str, method: &str, path: &str, body: &str) -> Answer {
    let conn = TcpStream::connect(addr).await.unwrap();
    let (mut rx, mut tx) = conn.into_split();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: seed\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let writer = tokio::spawn(async move {
        // The seed may close the connection before reading all of a refused body.
        let _ = tx.write_all(request.as_bytes()).await;
        tx
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), rx.read_to_end(&mut raw)).await.expect("an answer");
    assert!(read.is_ok() || !raw.is_empty(), "no answer: {read:?}");
    drop(writer.await);
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(String::from))
        .unwrap_or_default();
    Answer { status, content_type, body: body.to_string() }
}

fn assert_one_line(a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{:?}", a.body);
    assert!(a.content_type.starts_with("text/plain"), "{}", a.content_type);
    assert!(a.body.ends_with('\n') && a.body.matches('\n').count() == 1, "not one line: {:?}", a.body);
}

#[tokio::test]
async fn errors_are_one_line_even_when_they_quote_the_request() {
    let addr = seed().await;
    // serde_json quotes an unknown enum variant as it is: a newline in it used to split the line.
    let a = call(&addr, "POST", "/register", r#"{"addr":"h:1","state":"nor\nmal"}"#).await;
    assert_one_line(&a, 400);
    assert!(a.body.contains("nor\\nmal"), "{:?}", a.body);
    let a = call(&addr, "POST", "/heartbeat", r#"{"id":"00000000000000ff"}"#).await;
    assert_one_line(&a, 404);
    let a = call(&addr, "POST", "/register", r#"{"addr":"h:1","cluster":"other"}"#).await;
    assert_one_line(&a, 409);
    let a = call(&addr, "POST", "/register", r#"{"addr":"a\tb:1"}"#).await;
    assert_one_line(&a, 400);
    // JSON that is not an object is named as what it is, not as the Rust type it missed.
    for (body, got) in [("[]", "an array"), (" 7", "a number"), (r#""x""#, "a string"), ("null", "null")] {
        let a = call(&addr, "POST", "/register", body).await;
        assert_one_line(&a, 400);
        assert!(
            a.body.starts_with(&format!("invalid JSON body: {got}, where the seed takes an object")),
            "{:?}",
            a.body
        );
        assert!(!a.body.contains("struct"), "{:?}", a.body);
    }
    // No endpoint takes a query parameter: refused, not ignored.
    let a = call(&addr, "GET", "/nodes?x=1", "").await;
    assert_one_line(&a, 400);
    assert!(a.body.contains("take no query parameters"), "{:?}", a.body);
    assert_eq!(call(&addr, "GET", "/health?", "").await.status, 200, "an empty query is none");
    let a = call(&addr, "POST", "/register?x=1", "{}").await;
    assert!(a.body.contains("take no query parameters"), "{:?}", a.body);
    // A node's paths, with their query, get the 404 that says keys go through a node.
    for (method, path) in [("GET", "/get?key=a"), ("PUT", "/put?key=a"), ("DELETE", "/delete?key=a")] {
        let a = call(&addr, method, path, "").await;
        assert_one_line(&a, 404);
        assert!(a.body.contains("keys are read and written through a node"), "{path}: {:?}", a.body);
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_one_line() {
    let addr = seed().await;
    // axum's default limit answered 2 MB bodies with a line without its newline; the limit is now
    // the seed's own, large enough for the view of a big cluster.
    let a = call(&addr, "POST", "/register", &" ".repeat(9 << 20)).await;
    assert_one_line(&a, 413);
    // A returning member presents the view of a 1000-member cluster, 2.5 MB of JSON.
    let tokens: Vec<String> = (0..128u64).map(|j| (12_345_678_901_234_567_000 + j).to_string()).collect();
    let tokens = tokens.join(",");
    let members: Vec<String> = (1..=1000)
        .map(|i| format!(r#"{{"id":"{i:x}","addr":"h:{i}","tokens":[{tokens}],"state":"normal"}}"#))
        .collect();
    let view = format!(
        r#"{{"addr":"h:1","id":"1","tokens":[{tokens}],"state":"normal","view":{{"epoch":1,"nodes":[{}]}}}}"#,
        members.join(",")
    );
    assert!(view.len() > 2 << 20, "over axum's default limit");
    assert_eq!(call(&addr, "POST", "/register", &view).await.status, 200);

    // A length declared over the limit is refused from the header, the body never sent: it
    // waited out the read timeout, then got a 400 about buffering (found by a hunt, 2026-12-07).
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let head = format!("POST /register HTTP/1.1\r\nHost: seed\r\nContent-Length: {}\r\n\r\n", 1u64 << 32);
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer)).await.expect("answered at once").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("request body of 4294967296 bytes over the limit of 8 MiB"), "{answer}");
}

#[tokio::test]
async fn integers_are_read_in_any_json_spelling() {
    let addr = seed().await;
    let a = call(&addr, "POST", "/register", r#"{"addr":"h:1","vnodes":8.0,"tokens":[287404.0]}"#).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.body.split(r#""id":""#).nth(1).unwrap()[..16].to_string();
    let hb = format!(r#"{{"id":"{id}","keys":67108863.0,"clock_offset_ms":-5.0}}"#);
    assert_eq!(call(&addr, "POST", "/heartbeat", &hb).await.status, 200);
    let a = call(&addr, "POST", "/heartbeat", &format!(r#"{{"id":"{id}","keys":1.5}}"#)).await;
    assert_one_line(&a, 400);
}

/// One HTTP/1.1 request with extra headers and a binary body: status, content type, body.
async fn call_bytes(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nhost: seed\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    conn.write_all(&bytes).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut raw)).await.expect("an answer").unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(String::from))
        .unwrap_or_default();
    (head[9..12].parse().unwrap(), content_type, raw[split + 4..].to_vec())
}

#[tokio::test]
async fn nodes_that_ask_get_the_compact_encoding_and_everyone_else_json() {
    use dkv_membership::api::{HeartbeatAnswer, IdRequest, RegisterResponse};
    use dkv_membership::compact;
    use dkv_membership::View;

    let addr = seed().await;
    let v = dkv_transport::frame::VERSION;
    let accept = compact::content_type(v);
    // A first registration in JSON, asking for a compact answer.
    let (status, ct, body) = call_bytes(&addr, "POST", "/register", &[("accept", &accept)], br#"{"addr":"h:1"}"#).await;
    assert_eq!((status, ct.as_str()), (200, accept.as_str()));
    let registered: RegisterResponse = compact::decode(&body, v).expect("a compact answer");
    let view = View { epoch: registered.epoch, nodes: registered.nodes };

    // A compact heartbeat from the current view: unchanged, compact.
    let hb = IdRequest { epoch: Some(view.epoch), digest: Some(view.digest()), ..IdRequest::id(registered.id) };
    let headers = [("content-type", accept.as_str()), ("accept", accept.as_str())];
    let (status, ct, body) = call_bytes(&addr, "POST", "/heartbeat", &headers, &compact::encode(&hb, v)).await;
    assert_eq!((status, ct.as_str()), (200, accept.as_str()));
    let answer: HeartbeatAnswer = compact::decode(&body, v).unwrap();
    assert_eq!((answer.epoch, answer.nodes, answer.changes), (view.epoch, None, None));
    assert!(answer.now_ms.is_some());

    // Another release's version: the body is refused with 415, the answer comes in JSON.
    let other = compact::content_type(v.wrapping_add(1));
    let (status, ct, body) =
        call_bytes(&addr, "POST", "/heartbeat", &[("content-type", &other)], &compact::encode(&hb, v.wrapping_add(1)))
            .await;
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
    assert!(ct.starts_with("text/plain") && body.ends_with(b"\n"));
    let (status, ct, _) = call_bytes(&addr, "GET", "/nodes", &[("accept", &other)], b"").await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    // A compact body that is not a message: 400, one line.
    let (status, _, body) = call_bytes(&addr, "POST", "/heartbeat", &[("content-type", &accept)], &[v, 0xff]).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // curl and the dashboard: JSON, whatever they accept.
    for accept in ["*/*", "application/json", ""] {
        let (status, ct, body) = call_bytes(&addr, "GET", "/nodes", &[("accept", accept)], b"").await;
        assert_eq!((status, ct.as_str()), (200, "application/json"));
        let json: View = serde_json::from_slice(&body).unwrap();
        assert!(json.same_placement(&view));
    }
}

/// Connections count from the moment they are accepted: with two open (silent ones), a third is
/// answered `503` and closed, and once one of the two closes the seed serves again.
#[tokio::test]
async fn connections_over_the_bound_are_refused_until_one_closes() {
    let addr = seed_with(2).await;
    let first = TcpStream::connect(&addr).await.unwrap();
    let _second = TcpStream::connect(&addr).await.unwrap();
    let refused = call(&addr, "GET", "/health", "").await;
    assert_one_line(&refused, 503);
    assert!(refused.body.contains("--max-connections"), "{}", refused.body);
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = call(&addr, "GET", "/health", "").await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{:?}", answer.body);
        assert!(tokio::time::Instant::now() < deadline, "the closed connection's place was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node's heartbeat line over the bound is refused in the transport's handshake, with the
/// reason, which the node logs as it logs any refused handshake.
#[tokio::test]
async fn a_transport_connection_over_the_bound_is_told_why() {
    let addr = seed_with(1).await;
    let _held = TcpStream::connect(&addr).await.unwrap();
    let line = dkv_transport::Line::new(dkv_transport::ClientConfig {
        auth: dkv_transport::Auth { cluster: "dkv".into(), secret: None },
        connect_timeout: Duration::from_secs(5),
        max_frame: 1 << 20,
        max_in_flight: 1,
        wrap: None,
    });
    let kind = dkv_membership::api::SEED_HEARTBEAT_KIND;
    match line.call(&addr, kind, |_| {}, Duration::from_secs(5)).await {
        Err(dkv_transport::CallError::Handshake { reason, .. }) => {
            assert!(reason.contains("--max-connections"), "{reason}")
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

/// A request trickled a byte at a time, each within the read timeout (1 s here), is closed once
/// the whole of it has taken longer than that: until 2026-12-06 each byte restarted the timer,
/// and such clients held their places for good.
#[tokio::test]
async fn a_request_trickled_a_byte_at_a_time_is_closed_after_the_read_timeout() {
    let addr = seed_with(2).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut closed = false;
    for b in b"GET /health HTTP/1.1\r\nHost: seed\r\nX-Slow: ".iter().chain([b'x'; 100].iter()) {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut one = [0u8; 1];
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut one)).await {
            closed = matches!(read, Ok(0) | Err(_));
            assert!(closed, "an answer before the request was whole");
            break;
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "closed only after {:?}", started.elapsed());
}

/// A connection that sends nothing is closed after `--read-timeout` (1 s here), as a half-sent
/// request is: it was held 10 s whatever the flag said (found by a hunt, 2026-12-07).
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_read_timeout() {
    let addr = seed_with(4).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still open after 15 s");
    assert!(started.elapsed() < Duration::from_secs(5), "closed only after {:?}", started.elapsed());
}

/// Connections that sent part of a request (one byte, or the start of HTTP/2's preface) are
/// closed after `--read-timeout` (1 s here), giving their places back: before 2026-12-06 the
/// seed's hyper had no timer, and they held them for good.
#[tokio::test]
async fn half_sent_requests_are_closed_after_the_read_timeout() {
    let addr = seed_with(2).await;
    let mut held = Vec::new();
    for start in [&b"G"[..], b"PRI * HTTP/2.0\r\n"] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(start).await.unwrap();
        held.push(s);
    }
    assert_eq!(call(&addr, "GET", "/health", "").await.status, 503, "both places taken");
    for mut s in held {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a half-sent request still open 10 s after a 1 s read timeout");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while call(&addr, "GET", "/health", "").await.status != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the places were never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
