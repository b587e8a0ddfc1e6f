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
//! With `--tls-cert` (`tls.rs`) the port speaks only TLS: the first byte is read after the
//! handshake, decrypted, and handed back before the rest (`Prefixed`), and a transport connection
//! must have presented a member's certificate.
//!
//! Connections of both kinds count against `--max-connections` from the moment they are accepted
//! until they close. One over the bound is told so, in its own protocol (an HTTP `503`, or a
//! transport goodbye that the node logs), and closed; at most [`MAX_REFUSING`] are being told at
//! once, and past that they are closed at once.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use dkv_membership::api::{IdRequest, SEED_HEARTBEAT_KIND};
use dkv_membership::compact;
use dkv_transport::{Auth, Handler, Io, Prefixed, Refusal, ServerConfig, Split, Throttle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::format::VERSION;
use crate::server::{status_of, Seed, SeedConfig, Via};
use crate::SeedTls;

/// How long a new connection may take to send its first byte before it is closed, at most:
/// `--read-timeout` when that is shorter (a silent connection was held 10 s whatever the flag
/// said, where a half-sent request was closed at it: found by a hunt, 2026-12-07).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest heartbeat frame read: a heartbeat is a few hundred bytes (its load report is bounded).
const MAX_REQUEST: usize = 64 << 10;

/// Largest answer sent: a whole view for a node far behind, at 10 000 members and 128 tokens.
const MAX_ANSWER: usize = 64 << 20;

/// Connections over `--max-connections` being told so at once.
const MAX_REFUSING: usize = 256;

/// How long a connection over the bound may take to show which protocol it speaks.
const REFUSAL_SNIFF_TIMEOUT: Duration = Duration::from_secs(2);

/// An accepted connection with its place under `--max-connections`, given back when it closes:
/// a TCP stream, or a TLS session over one.
pub(crate) struct Counted {
    stream: Box<dyn Io>,
    /// Over TLS, whether it presented a member's certificate; `None` in the clear.
    member: Option<bool>,
    _slot: OwnedSemaphorePermit,
    /// Since when a read, and a write, has waited without moving a byte (`--read-timeout`):
    /// axum gives hyper no timer, so hyper's own header timeout never runs, and a client that
    /// sent one byte of a request, or kept a connection idle, held its place under
    /// `--max-connections` for good (until 2026-12-06): 20 000 of them shut out every member.
    reading: Stall,
    writing: Stall,
    /// Since the first byte of a request (the first read after the last answer written): all
    /// of it must arrive within `--read-timeout`. A wait's own timer restarts with every byte,
    /// so a client that sent one byte every 10 s held its place for good, and 100 of them kept
    /// a seed with `--max-connections 100` from every member (found by trying, 2026-12-06).
    request: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Counted {
    fn new(stream: Box<dyn Io>, member: Option<bool>, slot: OwnedSemaphorePermit, timeout: Duration) -> Counted {
        let stall = || Stall { timeout, timer: None };
        Counted { stream, member, _slot: slot, reading: stall(), writing: stall(), request: None }
    }

    /// An error once the request under way has taken longer than `--read-timeout` to arrive.
    fn request_late(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        let timer = self.request.as_mut()?;
        timer.as_mut().poll(cx).is_ready().then(|| {
            let why = format!("a request did not arrive whole within {:?} (--read-timeout)", self.reading.timeout);
            std::io::Error::new(std::io::ErrorKind::TimedOut, why)
        })
    }

    /// Bytes were written: the answer to the request under way.
    fn answered<T>(&mut self, polled: &Poll<std::io::Result<T>>) {
        if matches!(polled, Poll::Ready(Ok(_))) {
            self.request = None;
        }
    }
}

/// A timer that runs while an operation waits and is dropped as soon as it moves bytes.
struct Stall {
    timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    /// `polled` is the operation's result; past `timeout` of waiting it becomes an error.
    fn check<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.timer = None;
            return polled;
        }
        let timeout = self.timeout;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer = None;
                let why = format!("no byte moved for {timeout:?} (--read-timeout)");
                Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What the seed's HTTP handlers know of the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caller {
    /// As [`Counted::member`].
    pub member: Option<bool>,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.stream).poll_read(cx, buf);
        if buf.filled().len() > before && this.request.is_none() {
            this.request = Some(Box::pin(tokio::time::sleep(this.reading.timeout)));
        }
        if let Some(late) = this.request_late(cx) {
            return Poll::Ready(Err(late));
        }
        this.reading.check(cx, polled)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.stream).poll_write(cx, buf);
        this.answered(&polled);
        this.writing.check(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.stream).poll_write_vectored(cx, bufs);
        this.answered(&polled);
        this.writing.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The HTTP connections of the seed's port, for `serve.rs`.
pub(crate) struct HttpConnections {
    rx: mpsc::Receiver<(Counted, SocketAddr)>,
}

impl HttpConnections {
    /// The next connection; never, once the accept loop has ended (stopping).
    pub(crate) async fn next(&mut self) -> Counted {
        match self.rx.recv().await {
            Some((conn, _)) => conn,
            None => std::future::pending().await,
        }
    }
}

impl Counted {
    /// Over TLS, whether it presented a member's certificate; `None` in the clear.
    pub(crate) fn member(&self) -> Option<bool> {
        self.member
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
    let (tx, rx) = mpsc::channel(256);
    let handler = Arc::new(Heartbeats(seed));
    let server = Arc::new(ServerConfig {
        auth: Auth { cluster: config.cluster_name.clone(), secret: config.cluster_secret.clone() },
        max_frame: MAX_REQUEST,
        max_answer: MAX_ANSWER,
        max_concurrent: 16,
        // A heartbeat is answered at once; a seed's request never waits on anything remote.
        max_request_time: Duration::from_secs(30),
        // A member's hello comes with its first byte: as long as that may take, no longer.
        handshake_timeout: FIRST_BYTE_TIMEOUT.min(config.read_timeout),
    });
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let onward = Onward { http: tx, handler, server, stop: stop.clone(), read_timeout: config.read_timeout };
    tokio::spawn(accept_loop(listener, onward, config.tls.clone(), slots, stop));
    Ok(HttpConnections { rx })
}

/// Where an accepted connection goes once its first byte says which protocol it speaks.
#[derive(Clone)]
struct Onward {
    http: mpsc::Sender<(Counted, SocketAddr)>,
    handler: Arc<Heartbeats>,
    server: Arc<ServerConfig>,
    stop: watch::Receiver<bool>,
    /// `--read-timeout`, for [`Counted`].
    read_timeout: Duration,
}

impl Onward {
    fn first_byte_timeout(&self) -> Duration {
        FIRST_BYTE_TIMEOUT.min(self.read_timeout)
    }
}

async fn accept_loop(
    listener: TcpListener,
    onward: Onward,
    tls: Option<Arc<dyn SeedTls>>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let (max, refusing) = (slots.available_permits(), Arc::new(Semaphore::new(MAX_REFUSING)));
    while let Some((stream, peer)) = dkv_transport::accept_until_stopped(&listener, &mut stop, "seed").await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // A TLS connection is closed without a word: telling it would cost a handshake.
            if tls.is_none() {
                if let Ok(refusing) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, peer, onward.server.clone(), max, refusing));
                }
            }
            continue;
        };
        let (onward, tls) = (onward.clone(), tls.clone());
        tokio::spawn(async move {
            if let Some(tls) = tls {
                return open_tls(stream, peer, &*tls, slot, onward).await;
            }
            match first_byte(&stream, onward.first_byte_timeout()).await {
                Some(b) if b == dkv_transport::frame::MAGIC[0] => {
                    dkv_transport::serve(stream, onward.handler, onward.server, onward.stop).await;
                    drop(slot);
                }
                Some(_) => {
                    let conn = Counted::new(Box::new(stream), None, slot, onward.read_timeout);
                    let _ = onward.http.send((conn, peer)).await;
                }
                // Closed, failed, or silent: nothing to answer.
                None => {}
            }
        });
    }
}

/// A connection to a seed that speaks TLS: the handshake and the first decrypted byte within
/// [`Onward::first_byte_timeout`], then the transport (for members only) or HTTP, as in the clear.
async fn open_tls(stream: TcpStream, peer: SocketAddr, tls: &dyn SeedTls, slot: OwnedSemaphorePermit, onward: Onward) {
    let _ = stream.set_nodelay(true);
    let opened = tokio::time::timeout(onward.first_byte_timeout(), async {
        let mut s = tls.acceptor().accept(stream).await?;
        let mut first = [0u8; 1];
        let n = s.read(&mut first).await?;
        Ok::<_, std::io::Error>((s, (n == 1).then_some(first[0])))
    })
    .await;
    let (s, first) = match opened {
        Ok(Ok((s, Some(first)))) => (s, first),
        Ok(Ok((_, None))) | Err(_) => return, // closed or silent: nothing to answer
        Ok(Err(e)) => {
            // A client that does not trust the seed's certificate, or speaks no TLS: worth a
            // line, since a member with the wrong CA or `--seed` without https ends up here.
            static FAILED: Throttle = Throttle::new();
            let e = e.to_string();
            if let Some(more) = FAILED.allow(&e) {
                // rustls's words for a caller in the clear say nothing of it (found by a hunt,
                // 2026-12-07).
                let hint = match dkv_transport::mismatch::answered_in_the_clear(&e) {
                    true => " (the caller spoke in the clear: a node needs --seed https://… and its TLS flags)",
                    false => "",
                };
                tracing::warn!(%peer, "TLS handshake failed: {e}{hint}{more}");
            }
            return;
        }
    };
    let member = tls.is_member(s.get_ref().1.peer_certificates());
    let stream = Prefixed::new(Some(first), s);
    if first != dkv_transport::frame::MAGIC[0] {
        let conn = Counted::new(Box::new(stream), Some(member), slot, onward.read_timeout);
        let _ = onward.http.send((conn, peer)).await;
        return;
    }
    let conn = Split { stream, peer: peer.to_string() };
    if member {
        dkv_transport::serve(conn, onward.handler, onward.server, onward.stop).await;
    } else {
        let reason = "heartbeats over TLS need a member's certificate signed by the cluster CA: check the node's \
                      --tls-cert and --tls-peer-ca";
        static REFUSED: Throttle = Throttle::new();
        if let Some(more) = REFUSED.allow("") {
            tracing::warn!(%peer, "refused a heartbeat line: {reason}{more}");
        }
        dkv_transport::refuse(conn, &onward.server, reason).await;
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
    static REFUSED: Throttle = Throttle::new();
    if let Some(more) = REFUSED.allow("") {
        tracing::warn!(%peer, "refused a connection: {why}{more}");
    }
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
        answer(self.0.clone(), kind, body)
    }
}

/// A heartbeat's answer, or why there is none.
async fn answer(seed: Seed, kind: u8, body: Bytes) -> Result<Vec<u8>, Refusal> {
    if kind != SEED_HEARTBEAT_KIND {
        return Err(Refusal::new(
            400,
            format!(
                "the seed answers only heartbeats (kind {SEED_HEARTBEAT_KIND}) over the transport, not kind {kind}"
            ),
        ));
    }
    let req: IdRequest = compact::decode(&body, VERSION).map_err(|e| Refusal::new(400, e.to_string()))?;
    match seed.heartbeat(req, Via::Transport).await {
        Ok(answer) => Ok(compact::encode(&answer, VERSION)),
        Err(e) => Err(Refusal::new(status_of(&e).as_u16(), e.to_string())),
    }
}
