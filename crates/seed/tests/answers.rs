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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config =
        dkv_seed::SeedConfig { node_ttl: Duration::from_secs(60), cluster_secret: None, cluster_name: "dkv".into() };
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
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_one_line() {
    let addr = seed().await;
    // axum's default limit answered 2 MB bodies with a line without its newline; the limit is now
    // the seed's own, large enough for the view of a big cluster.
    let a = call(&addr, "POST", "/register", &" ".repeat(9 << 20)).await;
    assert_one_line(&a, 413);
    // A returning member presents the view of a 1000-member cluster, 2.5 MB of JSON.
    let tokens = vec!["12345678901234567890"; 128].join(",");
    let members: Vec<String> = (1..=1000)
        .map(|i| format!(r#"{{"id":"{i:x}","addr":"h:{i}","tokens":[{tokens}],"state":"normal"}}"#))
        .collect();
    let view = format!(
        r#"{{"addr":"h:1","id":"1","tokens":[{tokens}],"state":"normal","view":{{"epoch":1,"nodes":[{}]}}}}"#,
        members.join(",")
    );
    assert!(view.len() > 2 << 20, "over axum's default limit");
    assert_eq!(call(&addr, "POST", "/register", &view).await.status, 200);
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
