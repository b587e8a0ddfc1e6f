//! One port for both protocols: node-to-node frames and public HTTP.
//!
//! A member's address is the one its peers and its clients use, so the transport shares the
//! HTTP port rather than adding a second one to every member record, container and firewall rule.
//! The first byte tells them apart: a transport connection starts with a zero byte (the magic
//! `\0DKV`), which no HTTP request does. Each accepted connection is told apart in its own task,
//! bounded by a timeout, so a client that connects and says nothing holds up no one else.
//! Client connections are counted against `--max-connections` here (see [`split`]).
//!
//! With TLS (`tls.rs`) the port speaks only TLS: each connection's handshake comes first,
//! bounded like the first byte and holding the same slot, then the first decrypted byte tells
//! the two apart. A transport connection must have presented a member's certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dkv_transport::{accept_until_stopped, ServerConfig, Throttle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::front::limits::{Guard, Listener, Refusal};
use crate::life::state::Node;
use crate::transport::internal::Internal;
use crate::transport::tls::{self, ClientStream, Prefixed, Tls};

/// How long a connection that arrived while the HTTP side was full may take to show it is a
/// peer's transport connection (peers are not counted against `--max-connections`).
const FULL_SNIFF_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections that arrived while the HTTP side was full and are still being told apart.
const MAX_UNADMITTED: usize = 256;

/// An HTTP connection with its slot under `--max-connections`.
pub struct HttpConn {
    pub stream: ClientStream,
    pub peer: SocketAddr,
    pub slot: OwnedSemaphorePermit,
}

/// Accept on `listener` until `stop`: transport connections are served here, HTTP ones are
/// handed on through the returned channel, each with its slot. The returned task ends once the
/// transport connections it serves have closed after `stop`.
///
/// A new connection is given an HTTP slot at once. It must send its first byte within
/// `--read-timeout`. When no slot is free, it gets [`FULL_SNIFF_TIMEOUT`] to show it is a peer
/// (a cluster under a flood of clients must still hear its members); an HTTP client is then
/// answered `503` and closed.
pub fn split(
    node: Node,
    listener: TcpListener,
    config: ServerConfig,
    guard: Arc<Guard>,
    stop: watch::Receiver<bool>,
) -> (mpsc::Receiver<HttpConn>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1024);
    let handler = Arc::new(Internal(node));
    let config = Arc::new(config);
    (rx, tokio::spawn(accept_loop(listener, handler, config, guard, tx, stop)))
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<Internal>,
    config: Arc<ServerConfig>,
    guard: Arc<Guard>,
    http: mpsc::Sender<HttpConn>,
    mut stop: watch::Receiver<bool>,
) {
    let unadmitted = Arc::new(Semaphore::new(MAX_UNADMITTED));
    let tracker = TaskTracker::new();
    loop {
        let Some((stream, peer)) = accept_until_stopped(&listener, &mut stop, "node").await else { break };
        let slot = guard.admit(Listener::Http);
        let waiting = match slot {
            Some(_) => None,
            None => match unadmitted.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    guard.refused(Refusal::Connections);
                    continue; // dropped: closed at once
                }
            },
        };
        let sniff = if slot.is_some() { guard.limits.read_timeout } else { FULL_SNIFF_TIMEOUT };
        let (handler, config, http, guard, stop) =
            (handler.clone(), config.clone(), http.clone(), guard.clone(), stop.clone());
        let tls = handler.0.config.tls.clone();
        tracker.spawn(async move {
            let slots = Slots { client: slot, waiting };
            if let Some(tls) = tls {
                return tls_connection(stream, peer, &tls, slots, sniff, handler, config, http, guard, stop).await;
            }
            let Slots { client: slot, waiting } = slots;
            let mut first = [0u8; 1];
            match tokio::time::timeout(sniff, stream.peek(&mut first)).await {
                Ok(Ok(1)) if first[0] == dkv_transport::frame::MAGIC[0] => {
                    let config = hello_bound(config, &waiting);
                    let admit = || as_peer(&guard, slot, waiting);
                    dkv_transport::serve_admitted(stream, handler, config, stop, admit).await
                }
                Ok(Ok(1)) => match slot {
                    Some(slot) => {
                        let _ = http.send(HttpConn { stream: ClientStream::Plain(stream), peer, slot }).await;
                    }
                    None => {
                        guard.refused(Refusal::Connections);
                        refuse_http(stream, &guard, handler.0.me).await;
                    }
                },
                Ok(_) => {} // closed or failed before saying anything
                Err(_) => guard.refused(if slot.is_some() { Refusal::ReadTimeout } else { Refusal::Connections }),
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// What a connection holds while it is told apart: an HTTP slot, or a place among those that
/// arrived while the HTTP side was full.
struct Slots {
    client: Option<OwnedSemaphorePermit>,
    waiting: Option<OwnedSemaphorePermit>,
}

/// The server configuration for a transport connection's hello: one that holds a place among
/// those that came while the HTTP side was full has [`FULL_SNIFF_TIMEOUT`] for it, as for its
/// first byte, so connections that say nothing more cannot hold those places for long.
fn hello_bound(config: Arc<ServerConfig>, waiting: &Option<OwnedSemaphorePermit>) -> Arc<ServerConfig> {
    match waiting {
        Some(_) if config.handshake_timeout > FULL_SNIFF_TIMEOUT => {
            Arc::new(ServerConfig { handshake_timeout: FULL_SNIFF_TIMEOUT, ..(*config).clone() })
        }
        _ => config,
    }
}

/// A transport connection whose hello passed (the cluster's name and secret) gives up what it
/// held while it was told apart and said hello, for a peer's slot: refused, closing it, when
/// `--max-connections` transport connections are open.
fn as_peer(
    guard: &Guard,
    client: Option<OwnedSemaphorePermit>,
    waiting: Option<OwnedSemaphorePermit>,
) -> Result<OwnedSemaphorePermit, String> {
    drop((client, waiting));
    let slot = guard.admit(Listener::Peer);
    if slot.is_none() {
        guard.refused(Refusal::Connections);
        static REFUSED: Throttle = Throttle::new();
        if let Some(more) = REFUSED.allow("") {
            tracing::warn!(
                "closed a transport connection: {} are open, as many as --max-connections allows{more}",
                guard.limits.max_connections
            );
        }
    }
    slot.ok_or_else(|| {
        format!("{} transport connections are open, as many as --max-connections allows", guard.limits.max_connections)
    })
}

/// A connection on a TLS port: the handshake and the first decrypted byte within `sniff` (the
/// same bound, and the same slot, as a plain connection's first byte), then a peer's transport
/// connection (only with a member's certificate) or a client's HTTP.
#[allow(clippy::too_many_arguments)]
async fn tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: &Tls,
    slots: Slots,
    sniff: Duration,
    handler: Arc<Internal>,
    config: Arc<ServerConfig>,
    http: mpsc::Sender<HttpConn>,
    guard: Arc<Guard>,
    stop: watch::Receiver<bool>,
) {
    let Slots { client: slot, waiting } = slots;
    let acceptor = tls.shared_acceptor();
    let opened = tokio::time::timeout(sniff, async {
        let mut s = acceptor.accept(stream).await?;
        let mut first = [0u8; 1];
        let n = s.read(&mut first).await?;
        Ok::<_, std::io::Error>((s, (n == 1).then_some(first[0])))
    })
    .await;
    let (s, first) = match opened {
        Err(_) => {
            guard.refused(if slot.is_some() { Refusal::ReadTimeout } else { Refusal::Connections });
            return;
        }
        Ok(Err(e)) if tls::is_certificate_error(&e) => {
            static REFUSED: Throttle = Throttle::new();
            let e = e.to_string();
            if let Some(more) = REFUSED.allow(&e) {
                tracing::warn!(%peer, "TLS handshake refused: {e}{more}");
            }
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Ok(Ok((_, None))) => return, // closed before saying anything
        Ok(Ok(opened)) => opened,
    };
    let certs = s.get_ref().1.peer_certificates().map(|c| c.to_vec());
    let stream = Prefixed::new(first, s);
    if first == Some(dkv_transport::frame::MAGIC[0]) {
        let conn = dkv_transport::Split { stream, peer: peer.to_string() };
        if !tls.is_peer(certs.as_deref()) {
            // Refused with the place it was told apart in, not a peer's: connections without a
            // member's certificate took peers' places while they were refused, and enough of
            // them shut members out (found by reading, 2026-12-06).
            let reason =
                "TLS between nodes needs a certificate signed by the cluster CA: check --tls-cert and --tls-peer-ca";
            dkv_transport::refuse(conn, &config, reason).await;
            return;
        }
        let config = hello_bound(config, &waiting);
        let admit = || as_peer(&guard, slot, waiting);
        dkv_transport::serve_admitted(conn, handler, config, stop, admit).await;
        return;
    }
    let stream = ClientStream::Tls(Box::new(stream));
    match slot {
        Some(_) if !(tls.is_client(certs.as_deref()) || tls.is_peer(certs.as_deref())) => {
            static REFUSED: Throttle = Throttle::new();
            if let Some(more) = REFUSED.allow("") {
                tracing::warn!(%peer, "refused an HTTPS client without a certificate signed by --tls-client-ca{more}");
            }
            let body = "a client certificate signed by the node's --tls-client-ca is needed\n";
            answer_and_close(stream, http_answer("403 Forbidden", body, handler.0.me).as_bytes()).await;
        }
        Some(slot) => {
            let _ = http.send(HttpConn { stream, peer, slot }).await;
        }
        None => {
            guard.refused(Refusal::Connections);
            refuse_http(stream, &guard, handler.0.me).await;
        }
    }
}

/// A whole HTTP/1.1 answer that closes the connection.
fn http_answer(status: &str, body: &str, me: dkv_membership::NodeId) -> String {
    dkv_transport::closing_http_answer(status, &[(dkv_membership::api::NODE_HEADER, &me.to_string())], body)
}

/// Answer an HTTP client that came over `--max-connections` with a `503`, and close.
async fn refuse_http<S: AsyncRead + AsyncWrite + Unpin>(stream: S, guard: &Guard, me: dkv_membership::NodeId) {
    let body = format!(
        "too many connections: this node serves at most {} HTTP clients at once (--max-connections); retry later\n",
        guard.limits.max_connections
    );
    let headers = [("retry-after", "1"), (dkv_membership::api::NODE_HEADER, &me.to_string())];
    let answer = dkv_transport::closing_http_answer("503 Service Unavailable", &headers, &body);
    answer_and_close(stream, answer.as_bytes()).await;
}

pub use dkv_transport::answer_and_close;

/// Connections the kernel may hold for a listener before they are accepted. Tokio's default is
/// 1024; a burst of clients larger than that would have its handshakes dropped and retried for
/// seconds, so a flood would delay even the clients that come after it.
const BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of [`BACKLOG`] (the kernel caps it at `somaxconn`).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
