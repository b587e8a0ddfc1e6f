//! Heartbeats over the binary transport, on the seed's HTTP port.
//!
//! Every member heartbeats the seed once an interval, so the seed answers hundreds of them a
//! second in a large cluster, and an idle node spends most of its CPU on its own. Over HTTP each
//! one runs hyper's and axum's request machinery at both ends; over dkv's transport it is a
//! frame of a few hundred bytes each way on a connection the node keeps (its [`dkv_transport::Line`]),
//! which costs both sides a third less (README, "Membership at scale").
//!
//! The port stays one port: a transport connection starts with a zero byte, which no HTTP
//! request does, so each new connection is told apart by peeking at its first byte (nothing is
//! consumed) and handed to the transport or to axum. The transport checks the cluster name and
//! secret once per connection, in its handshake. Only heartbeats travel this way; registering,
//! ready, leave and the whole view stay HTTP, where people and older nodes find them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dkv_membership::api::{IdRequest, SEED_HEARTBEAT_KIND};
use dkv_membership::compact;
use dkv_transport::{Auth, Handler, Refusal, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::format::VERSION;
use crate::server::{status_of, Seed, SeedConfig, Via};

/// How long a new connection may take to send its first byte before it is closed.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest heartbeat frame read: a heartbeat is a few hundred bytes (its load report is bounded).
const MAX_REQUEST: usize = 64 << 10;

/// Largest answer sent: a whole view for a node far behind, at 10 000 members and 128 tokens.
const MAX_ANSWER: usize = 64 << 20;

/// The HTTP connections of the seed's port, for `axum::serve`.
pub(crate) struct HttpConnections {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpConnections {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop ended (stopping): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accept on `listener` until `stop`: transport connections are served here, HTTP ones are
/// returned for axum.
pub(crate) fn split(
    seed: Seed,
    config: &SeedConfig,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) -> std::io::Result<HttpConnections> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(256);
    let handler = Arc::new(Heartbeats(seed));
    let server = Arc::new(ServerConfig {
        auth: Auth { cluster: config.cluster_name.clone(), secret: config.cluster_secret.clone() },
        max_frame: MAX_REQUEST,
        max_answer: MAX_ANSWER,
        max_concurrent: 16,
        handshake_timeout: FIRST_BYTE_TIMEOUT,
    });
    tokio::spawn(accept_loop(listener, tx, handler, server, stop));
    Ok(HttpConnections { rx, local })
}

async fn accept_loop(
    listener: TcpListener,
    http: mpsc::Sender<(TcpStream, SocketAddr)>,
    handler: Arc<Heartbeats>,
    server: Arc<ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    while let Some((stream, peer)) = dkv_transport::accept_until_stopped(&listener, &mut stop, "seed").await {
        let (http, handler, server, stop) = (http.clone(), handler.clone(), server.clone(), stop.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(1..)) if first[0] == dkv_transport::frame::MAGIC[0] => {
                    dkv_transport::serve(stream, handler, server, stop).await
                }
                Ok(Ok(1..)) => {
                    let _ = http.send((stream, peer)).await;
                }
                // Closed, failed, or silent: nothing to answer.
                _ => {}
            }
        });
    }
}

/// The transport's requests: heartbeats.
struct Heartbeats(Seed);

impl Handler for Heartbeats {
    fn handle(&self, kind: u8, body: Bytes) -> impl std::future::Future<Output = Result<Vec<u8>, Refusal>> + Send {
        std::future::ready(self.answer(kind, &body))
    }
}

impl Heartbeats {
    fn answer(&self, kind: u8, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        if kind != SEED_HEARTBEAT_KIND {
            return Err(Refusal::new(
                400,
                format!(
                    "the seed answers only heartbeats (kind {SEED_HEARTBEAT_KIND}) over the transport, not kind {kind}"
                ),
            ));
        }
        let req: IdRequest = compact::decode(body, VERSION).map_err(|e| Refusal::new(400, e.to_string()))?;
        match self.0.heartbeat(req, Via::Transport) {
            Ok(answer) => Ok(compact::encode(&answer, VERSION)),
            Err(e) => Err(Refusal::new(status_of(&e).as_u16(), e.to_string())),
        }
    }
}
