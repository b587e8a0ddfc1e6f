//! Accepting connections until told to stop, for every listener of a node and of the seed, and
//! turning away the ones over a listener's bound.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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
                    tracing::warn!("{what} accept failed: {e}");
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

/// Send a refused client its last answer and close the connection, reading (and dropping) what
/// it still sends for a moment first. Closing a socket with unread input makes the kernel reset
/// the connection, and a reset can destroy the answer before the client reads it.
pub async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &[u8]) {
    const LINGER: Duration = Duration::from_secs(1);
    const LINGER_BYTES: usize = 16 << 20;
    if tokio::time::timeout(LINGER * 2, stream.write_all(answer)).await.is_err() {
        return; // the client does not read: no answer will reach it
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 16 * 1024];
    let mut drained = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
