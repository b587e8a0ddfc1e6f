//! Accepting connections until told to stop, for every listener of a node and of the seed, and
//! turning away the ones over a listener's bound.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Throttle;

/// The next connection on `listener`, with TCP_NODELAY set, or `None` once `stop` is set. A
/// failed accept (out of file descriptors and the like) is logged and retried after a moment
/// rather than in a spin.
pub async fn accept_until_stopped(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = stopped(stop) => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => {
                    static FAILED: Throttle = Throttle::new();
                    if let Some(more) = FAILED.allow(&e.to_string()) {
                        tracing::warn!("{what} accept failed: {e}{more}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Resolves once `stop` is set (without holding the channel's lock guard across an await).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A whole HTTP/1.1 answer with a one-line text body that closes the connection: what a
/// listener says to an HTTP client it turns away before any HTTP server sees it. `headers` follow
/// the standard ones.
pub fn closing_http_answer(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("\r\n");
    answer.push_str(body);
    answer
}

/// Send a refused client its last answer and close the connection, reading (and dropping) what
/// it still sends first: until it is quiet for a second, for 4 s and 256 MiB at most. Closing a
/// socket with unread input makes the kernel reset the connection, and a reset can destroy the
/// answer before the client reads it. (Until 2026-12-07 the drain stopped after one second
/// whatever the client was doing, and a client library still writing a 4 MB value on a busy
/// host got the reset now and then instead of the error.)
pub async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &[u8]) {
    const LINGER: Duration = Duration::from_secs(1);
    const LINGER_MAX: Duration = Duration::from_secs(4);
    // Read into a small buffer and dropped: time, not memory. A value of 40 MiB over a 16 MiB
    // limit still got a reset when this was 16 MiB (the hunt of 2026-12-07).
    const LINGER_BYTES: usize = 256 << 20;
    if tokio::time::timeout(LINGER * 2, stream.write_all(answer)).await.is_err() {
        return; // the client does not read: no answer will reach it
    }
    // Bounded too: over TLS the answer may still wait in the session's buffer, and a shutdown
    // writes it out first, for as long as the client does not read.
    if tokio::time::timeout(LINGER * 2, stream.shutdown()).await.is_err() {
        return;
    }
    let mut sink = [0u8; 16 * 1024];
    let mut drained = 0;
    let _ = tokio::time::timeout(LINGER_MAX, async {
        while drained < LINGER_BYTES {
            match tokio::time::timeout(LINGER, stream.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break, // closed, failed, or quiet for a second
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_closing_answer_counts_its_body_and_ends_its_headers() {
        let answer = super::closing_http_answer("503 Service Unavailable", &[("retry-after", "1")], "full\n");
        assert_eq!(
            answer,
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 5\r\n\
             connection: close\r\nretry-after: 1\r\n\r\nfull\n"
        );
    }
}
