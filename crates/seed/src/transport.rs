//! Heartbeats over the binary transport, on the seed's HTTP port.
//!
//! Every member heartbeats the seed once an interval, so the seed answers hundreds of them a
//! second in a large cluster, and an idle node spends most of its CPU on its own. Over HTTP each
//! one runs hyper's and axum's request machinery at both ends; over dkv's transport it is a
//! frame of a few hundred bytes each way on a connection the node keeps (its [`dkv_transport::Line`]),
//! which costs both sides a third less (docs/performance-log.md, "Membership at scale").
//!
//! The port stays one port: a transport connection starts with a zero byte, which no HTTP
//! request does, so each new connection is told apart by peeking at its first byte (nothing is
//! consumed) and handed to the transport or to axum. The transport checks the cluster name and
//! secret once per connection, in its handshake. Only heartbeats travel this way; registering,
//! ready, leave and the whole view stay HTTP, where people and older nodes find them.
//!
//! Connections of both kinds count against `--max-connections` from the moment they are accepted
//! until they close. One over the bound is told so, in its own protocol (an HTTP `503`, or a
//! transport goodbye that the node logs), and closed; at most [`MAX_REFUSING`] are being told at
//! once, and past that they are closed at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use dkv_membership::api::{IdRequest, SEED_HEARTBEAT_KIND};
use dkv_membership::compact;
use dkv_transport::{Auth, Handler, Refusal, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::format::VERSION;
use crate::server::{status_of, Seed, SeedConfig, Via};

/// How long a new connection may take to send its first byte before it is closed.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest heartbeat frame read: a heartbeat is a few hundred bytes (its load report is bounded).
const MAX_REQUEST: usize = 64 << 10;

/// Largest answer sent: a whole view for a node far behind, at 10 000 members and 128 tokens.
const MAX_ANSWER: usize = 64 << 20;

/// Connections over `--max-connections` being told so at once.
const MAX_REFUSING: usize = 256;

/// How long a connection over the bound may take to show which protocol it speaks.
const REFUSAL_SNIFF_TIMEOUT: Duration = Duration::from_secs(2);

/// An accepted connection with its place under `--max-connections`, given back when it closes.
pub(crate) struct Counted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The HTTP connections of the seed's port, for `axum::serve`.
pub(crate) struct HttpConnections {
    rx: mpsc::Receiver<(Counted, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpConnections {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
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
    let slots = Arc::new(Semaphore::new(config.max_connections));
    tokio::spawn(accept_loop(listener, tx, handler, server, slots, stop));
    Ok(HttpConnections { rx, local })
}

async fn accept_loop(
    listener: TcpListener,
    http: mpsc::Sender<(Counted, SocketAddr)>,
    handler: Arc<Heartbeats>,
    server: Arc<ServerConfig>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let (max, refusing) = (slots.available_permits(), Arc::new(Semaphore::new(MAX_REFUSING)));
    while let Some((stream, peer)) = dkv_transport::accept_until_stopped(&listener, &mut stop, "seed").await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Ok(refusing) = refusing.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, peer, server.clone(), max, refusing));
            }
            continue;
        };
        let (http, handler, server, stop) = (http.clone(), handler.clone(), server.clone(), stop.clone());
        tokio::spawn(async move {
            match first_byte(&stream, FIRST_BYTE_TIMEOUT).await {
                Some(b) if b == dkv_transport::frame::MAGIC[0] => {
                    dkv_transport::serve(stream, handler, server, stop).await;
                    drop(slot);
                }
                Some(_) => {
                    let _ = http.send((Counted { stream, _slot: slot }, peer)).await;
                }
                // Closed, failed, or silent: nothing to answer.
                None => {}
            }
        });
    }
}

/// The first byte `stream` sends, without taking it; `None` if it closes, fails or stays silent
/// for `within`.
async fn first_byte(stream: &TcpStream, within: Duration) -> Option<u8> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(within, stream.peek(&mut first)).await {
        Ok(Ok(1..)) => Some(first[0]),
        _ => None,
    }
}

/// Tell a connection over `--max-connections` so, in its protocol, and close it.
async fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<ServerConfig>,
    max: usize,
    _refusing: OwnedSemaphorePermit,
) {
    let why = format!("the seed serves at most {max} connections at once (--max-connections); retry later");
    tracing::warn!(%peer, "refused a connection: {why}");
    match first_byte(&stream, REFUSAL_SNIFF_TIMEOUT).await {
        Some(b) if b == dkv_transport::frame::MAGIC[0] => dkv_transport::refuse(stream, &server, &why).await,
        Some(_) => {
            let body = format!("too many connections: {why}\n");
            let answer = dkv_transport::closing_http_answer("503 Service Unavailable", &[("retry-after", "1")], &body);
            dkv_transport::answer_and_close(stream, answer.as_bytes()).await;
        }
        None => {}
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
