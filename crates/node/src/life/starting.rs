//! Answers while the node registers with the seed. The listeners are bound first (the ports are
//! checked, and the advertised address is checked against them), and registering is retried
//! until the seed answers, which may take a long time: no seed yet, a wrong `--cluster-secret`,
//! a directory another process already is. Nothing served the listeners meanwhile, so a client's
//! connection was taken by the kernel and then hung: `/health`, `/metrics` and a RESP `PING`
//! timed out, and a load balancer or Prometheus saw a hang rather than a reason (found by
//! trying, 2026-12-06). Until the node serves, each HTTP request is answered `503` with why (and
//! the node's header, so that `dkv up` and the CLI know a node answered) and the connection
//! closed, each RESP connection gets Redis's `-LOADING` (which clients retry), and a peer's
//! transport connection is closed (its calls fail at once and are retried). What a client sent
//! beyond its request is read and dropped for a moment before the close, so the answer is not
//! lost to a reset. Over TLS a connection is closed unanswered: answering would take the
//! handshake of the node proper. An HTTP/2 client that starts with the preface gets the HTTP/1.1
//! answer, which it cannot read.
//!
//! Bounded: at most [`AT_ONCE`] connections are answered at a time (the others are closed), each
//! within [`WITHIN`], reading at most [`HEAD_MAX`] bytes of a request.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections answered at once.
const AT_ONCE: usize = 64;
/// How long one connection may take to send its request, take the answer and stop sending.
const WITHIN: Duration = Duration::from_secs(4);
/// The most of a request head read before answering.
const HEAD_MAX: usize = 16 * 1024;

/// Answer on `http` (and `resp`) as the module says, until the future is dropped (the node
/// registered, and serves the listeners itself). `seed` is named in the answers; `tls`: close
/// every connection unanswered.
pub async fn answer_until_registered(http: &TcpListener, resp: Option<&TcpListener>, seed: &str, tls: bool) {
    let why = format!("this node is starting: it has not registered with the seed at {seed} yet (its log says why)");
    let http_answer: Arc<[u8]> = http_503(&why).into();
    let resp_answer: Arc<[u8]> = format!("-LOADING {why}; retry shortly\r\n").into_bytes().into();
    let (http_answer, resp_answer) = match tls {
        true => (None, None),
        false => (Some(http_answer), Some(resp_answer)),
    };
    let permits = Arc::new(Semaphore::new(AT_ONCE));
    let answer = |stream: TcpStream, reply: Option<Arc<[u8]>>, is_http: bool| {
        let Ok(permit) = permits.clone().try_acquire_owned() else { return };
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(WITHIN, answer_one(stream, reply, is_http)).await;
        });
    };
    loop {
        let resp_accept = async {
            match resp {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        // An accept that fails (out of file descriptors) is tried again a little later.
        let accepted = tokio::select! {
            r = http.accept() => r.map(|(stream, _)| answer(stream, http_answer.clone(), true)),
            r = resp_accept => r.map(|(stream, _)| answer(stream, resp_answer.clone(), false)),
        };
        if accepted.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A whole `503` response with a JSON body saying `why`.
fn http_503(why: &str) -> Vec<u8> {
    let body = serde_json::json!({ "status": "starting", "error": why }).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         {}: starting\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        dkv_membership::api::NODE_HEADER,
        body.len()
    )
    .into_bytes()
}

/// Answer one connection: an HTTP one once its request head is in (a peer's transport
/// connection, whose first byte is 0, is closed), a RESP one at once.
async fn answer_one(mut stream: TcpStream, reply: Option<Arc<[u8]>>, is_http: bool) {
    let Some(reply) = reply else { return };
    if is_http {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        // The head ends with an empty line, `\r\n\r\n` or a bare `\n\n`.
        let ended = |h: &[u8]| h.windows(4).any(|w| w == b"\r\n\r\n") || h.windows(2).any(|w| w == b"\n\n");
        while head.len() < HEAD_MAX && !ended(&head) {
            match stream.read(&mut buf).await {
                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => return,
            }
            if head.first() == Some(&0) {
                return; // a peer's transport connection
            }
        }
    }
    dkv_transport::answer_and_close(stream, &reply).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn exchange(addr: std::net::SocketAddr, send: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(send).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await.expect("answered").unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn a_starting_node_answers_http_503_and_resp_loading_and_closes_peers() {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let resp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (h, r) = (http.local_addr().unwrap(), resp.local_addr().unwrap());
        let serving =
            tokio::spawn(async move { answer_until_registered(&http, Some(&resp), "10.0.0.9:9000", false).await });
        let health = exchange(h, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 503 "), "{health}");
        assert!(health.contains("not registered with the seed at 10.0.0.9:9000"), "{health}");
        let body = health.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body of the length given");
        assert_eq!(json["status"], "starting");
        assert!(health.contains("x-dkv-node: starting\r\n"), "the node's header: {health}");
        assert!(exchange(r, b"PING\r\n").await.starts_with("-LOADING this node is starting"));
        assert_eq!(exchange(h, b"\0DKV").await, "", "a peer's connection is closed unanswered");
        serving.abort();
    }
}
