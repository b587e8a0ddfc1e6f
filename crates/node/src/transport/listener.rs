//! One port for both protocols: node-to-node frames and public HTTP.
//!
//! A member's address is the one its peers and its clients use, so the transport shares the
//! HTTP port rather than adding a second one to every member record, container and firewall rule.
//! The first byte tells them apart: a transport connection starts with a zero byte (the magic
//! `\0DKV`), which no HTTP request does. Each accepted connection is told apart in its own task,
//! bounded by a timeout, so a client that connects and says nothing holds up no one else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dkv_transport::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::life::state::Node;
use crate::transport::internal::Internal;

/// Longest a new connection may stay silent before its first byte tells what it speaks.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP half of a shared listener, for `axum::serve`.
pub struct HttpConnections {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpConnections {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop stopped: so does HTTP (graceful shutdown ends `serve` first).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accept on `listener` until `stop`: transport connections are served here, HTTP ones are
/// handed to the returned listener.
pub fn split(node: Node, listener: TcpListener, config: ServerConfig, stop: watch::Receiver<bool>) -> HttpConnections {
    let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (tx, rx) = mpsc::channel(1024);
    let handler = Arc::new(Internal(node));
    let config = Arc::new(config);
    tokio::spawn(accept_loop(listener, handler, config, tx, stop));
    HttpConnections { rx, local }
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<Internal>,
    config: Arc<ServerConfig>,
    http: mpsc::Sender<(TcpStream, SocketAddr)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let Some((stream, peer)) = accept_until_stopped(&listener, &mut stop, "node").await else { return };
        let (handler, config, http, stop) = (handler.clone(), config.clone(), http.clone(), stop.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(1)) if first[0] == dkv_transport::frame::MAGIC[0] => {
                    dkv_transport::serve(stream, handler, config, stop).await
                }
                Ok(Ok(1)) => {
                    let _ = http.send((stream, peer)).await;
                }
                _ => {} // closed, failed or silent: nothing to serve
            }
        });
    }
}

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

/// Resolves once `stop` is set (without holding the channel's guard across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
