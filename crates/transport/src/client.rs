//! The calling side: one long-lived connection per peer, shared by every call to it.
//!
//! A call takes a slot (at most `max_in_flight` per connection, so a slow peer cannot make us
//! queue without bound), gets a fresh id, registers a one-shot answer channel under it, queues
//! its frame in the connection's [`Outbox`] and waits, up to its deadline. The connection's reader
//! task hands every answer to the channel registered under its id, in whatever order answers
//! come. When the connection drops, every call still waiting fails at once with the reason, and
//! the next call reconnects; connection attempts that fail back off (50 ms doubling to 1 s), and
//! calls made meanwhile fail at once instead of piling up on a dead address.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::error::CallError;
use crate::frame::{self, Codec, Frame, Hello, Refusal};
use crate::io::{Wrapped, Wrapper};
use crate::outbox::Outbox;
use crate::Auth;

/// Status of a request not sent, or an answer not sent back, because it is larger than a frame
/// may be (HTTP's "content too large").
pub const STATUS_TOO_LARGE: u16 = 413;

/// Reconnects back off from `FIRST_BACKOFF`, doubling per failure, up to `MAX_BACKOFF`; or up to
/// `REFUSED_MAX_BACKOFF` when the peer's host refused the connection within
/// `REFUSED_WITHIN` (its process down, its port closed). Such an attempt costs next to nothing,
/// and the short cap finds a restarted peer within a tenth of a second instead of up to a
/// second, in which the writes its replicas took became hints. An attempt that hung, or a
/// refused handshake (a wrong secret: logged as an error each time), keeps the long cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const REFUSED_MAX_BACKOFF: Duration = Duration::from_millis(100);
const REFUSED_WITHIN: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// What the handshake presents.
    pub auth: Auth,
    /// Longest a connection attempt (TCP and handshake) may take.
    pub connect_timeout: Duration,
    /// Largest answer frame accepted.
    pub max_frame: usize,
    /// Calls in flight on one connection at once; more wait for a slot (within their deadline).
    pub max_in_flight: usize,
    /// What each new connection runs on before the handshake (the node's TLS); plain TCP if none.
    pub wrap: Option<Wrapper>,
}

/// Connections to every peer this node calls, keyed by address.
pub struct Client {
    config: Arc<ClientConfig>,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Self {
        Client { config: Arc::new(config), peers: Mutex::new(HashMap::new()) }
    }

    /// Send a request of `kind` whose body `body` writes, and wait for its answer's body, all
    /// within `timeout`.
    pub async fn call(
        &self,
        addr: &str,
        kind: u8,
        body: impl FnOnce(&mut BytesMut),
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        debug_assert!((1..=frame::MAX_REQUEST_KIND).contains(&kind));
        let deadline = Instant::now() + timeout;
        let timed_out = || CallError::Timeout { addr: addr.to_string(), ms: timeout.as_millis() };
        let peer = self.peer(addr);
        let conn = match tokio::time::timeout_at(deadline, peer.connection(addr, &self.config)).await {
            Ok(c) => c?,
            Err(_) => return Err(timed_out()),
        };
        let answer = conn.call(kind, body, deadline).await.ok_or_else(timed_out)?.map_err(|e| match e {
            Failed::Lost(reason) => CallError::Lost { addr: addr.to_string(), reason },
            Failed::TooLarge(e) => CallError::Refused {
                addr: addr.to_string(),
                status: STATUS_TOO_LARGE,
                message: format!("request not sent: {e}"),
            },
        })?;
        answer_body(addr, answer)
    }

    /// Close the connection to `addr`, failing its calls in flight (a member that left).
    pub fn forget(&self, addr: &str) {
        if let Some(peer) = self.peers.lock().expect("peers lock").remove(addr) {
            if let Some(c) = peer.conn.lock().expect("conn lock").take() {
                c.fail("closed by this node".into());
            }
        }
    }

    fn peer(&self, addr: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock().expect("peers lock");
        if let Some(p) = peers.get(addr) {
            return p.clone();
        }
        peers.entry(addr.to_string()).or_default().clone()
    }
}

/// The body of an answer, or the refusal it carries.
pub(crate) fn answer_body(addr: &str, answer: Frame) -> Result<Bytes, CallError> {
    match answer.kind {
        frame::KIND_OK => Ok(answer.body),
        frame::KIND_REFUSED => match postcard::from_bytes::<Refusal>(&answer.body) {
            Ok(r) => Err(CallError::Refused { addr: addr.to_string(), status: r.status, message: r.message }),
            Err(e) => Err(CallError::Protocol { addr: addr.to_string(), reason: format!("refusal: {e}") }),
        },
        k => Err(CallError::Protocol { addr: addr.to_string(), reason: format!("answer of kind {k:#x}") }),
    }
}

/// What the pool knows about one address.
#[derive(Default)]
struct Peer {
    conn: Mutex<Option<Arc<Conn>>>,
    /// Held while connecting, so a burst of calls to a new peer makes one connection.
    connecting: tokio::sync::Mutex<()>,
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last: Option<CallError>,
}

impl Peer {
    fn live(&self) -> Option<Arc<Conn>> {
        self.conn.lock().expect("conn lock").as_ref().filter(|c| !c.is_closed()).cloned()
    }

    fn backing_off(&self) -> Option<CallError> {
        let b = self.backoff.lock().expect("backoff lock");
        match (b.until, &b.last) {
            (Some(until), Some(last)) if Instant::now() < until => {
                let ms = until.saturating_duration_since(Instant::now()).as_millis();
                Some(match last {
                    CallError::Unreachable { addr, reason } => CallError::Unreachable {
                        addr: addr.clone(),
                        reason: format!("{reason} (next attempt in {ms} ms)"),
                    },
                    other => other.clone(),
                })
            }
            _ => None,
        }
    }

    async fn connection(&self, addr: &str, config: &ClientConfig) -> Result<Arc<Conn>, CallError> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        if let Some(e) = self.backing_off() {
            return Err(e);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.live() {
            return Ok(c);
        }
        if let Some(e) = self.backing_off() {
            return Err(e);
        }
        let mut attempt = Attempt { peer: self, addr, began: Instant::now(), over: false };
        let result = connect(addr, config).await;
        attempt.over = true;
        match result {
            Ok(c) => {
                *self.conn.lock().expect("conn lock") = Some(c.clone());
                *self.backoff.lock().expect("backoff lock") = Backoff::default();
                Ok(c)
            }
            Err(e) => {
                if matches!(e, CallError::Handshake { .. }) {
                    tracing::error!("{e}");
                }
                self.failed(e.clone(), attempt.began);
                Err(e)
            }
        }
    }

    /// An attempt begun at `began` failed with `e`: back off before the next.
    fn failed(&self, e: CallError, began: Instant) {
        let mut b = self.backoff.lock().expect("backoff lock");
        let refused = matches!(e, CallError::Unreachable { .. }) && began.elapsed() < REFUSED_WITHIN;
        let cap = if refused { REFUSED_MAX_BACKOFF } else { MAX_BACKOFF };
        let wait = FIRST_BACKOFF.saturating_mul(1 << b.failures.min(10)).min(cap);
        b.failures += 1;
        b.until = Some(Instant::now() + wait);
        b.last = Some(e);
    }
}

/// A connection attempt under way. Dropped before it ended (its caller's deadline came first:
/// a peer whose host drops packets answers nothing until the connect timeout), it counts as a
/// failure: unrecorded, the next caller waited out its whole deadline in turn, and every call to
/// such a peer took its full timeout, one after the other, where calls to a peer that is down
/// fail at once.
struct Attempt<'a> {
    peer: &'a Peer,
    addr: &'a str,
    began: Instant,
    over: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.over {
            let waited = self.began.elapsed().as_millis();
            let reason = format!("no connection within {waited} ms, as long as its caller could wait");
            self.peer.failed(CallError::Unreachable { addr: self.addr.to_string(), reason }, self.began);
        }
    }
}

/// Connect, present the hello, wait for the welcome, then start the reader and writer tasks.
async fn connect(addr: &str, config: &ClientConfig) -> Result<Arc<Conn>, CallError> {
    let attempt = async {
        match dial(addr, config).await? {
            Dialed::Plain(stream) => {
                let (read, write) = stream.into_split();
                let (frames, write) = handshake(addr, config, read, write).await?;
                Ok(start(addr, config, frames, write))
            }
            Dialed::Wrapped(stream) => {
                let (read, write) = tokio::io::split(stream);
                let (frames, write) = handshake(addr, config, read, write).await?;
                Ok(start(addr, config, frames, write))
            }
        }
    };
    within_connect_timeout(addr, config, attempt).await
}

/// A new connection, before the handshake.
pub(crate) enum Dialed {
    Plain(TcpStream),
    /// What the configuration's [`Wrapper`] made of it.
    Wrapped(Wrapped),
}

/// Open a TCP connection to `addr` with TCP_NODELAY, wrapped if the configuration says so.
pub(crate) async fn dial(addr: &str, config: &ClientConfig) -> Result<Dialed, CallError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| CallError::Unreachable { addr: addr.to_string(), reason: e.to_string() })?;
    if connected_to_itself(&stream) {
        // Dropped at once: held, it would keep the port from the node that should listen there.
        let reason = "connection refused (the socket connected to itself: nothing listens there, and the kernel \
                      gave the port as the source port, as it can for a port inside net.ipv4.ip_local_port_range)";
        return Err(CallError::Unreachable { addr: addr.to_string(), reason: reason.into() });
    }
    let _ = stream.set_nodelay(true);
    match &config.wrap {
        None => Ok(Dialed::Plain(stream)),
        // A failed TLS handshake is a refusal like a wrong secret: logged as one.
        Some(wrap) => wrap
            .0
            .wrap(addr, stream)
            .await
            .map(Dialed::Wrapped)
            .map_err(|e| CallError::Handshake { addr: addr.to_string(), reason: tls_failure(&e) }),
    }
}

/// Whether `stream` is a TCP self-connection: dialing a port on this host where nothing listens,
/// the kernel may pick that very port as the source port (when it lies in the ephemeral range),
/// and the connection opens to itself. A peer reconnecting every 100 ms to a stopped node's port
/// then held that port, and the node could not listen on it again for seconds (found by a
/// hunt on ports 45000–49999, 2026-12-07); the handshake also read its own hello as the answer.
fn connected_to_itself(stream: &TcpStream) -> bool {
    matches!((stream.local_addr(), stream.peer_addr()), (Ok(local), Ok(peer)) if local == peer)
}

/// A failed TLS handshake's reason, with what to do when the peer does not speak TLS: rustls
/// says only "received corrupt message of type InvalidContentType" (found by a hunt,
/// 2026-12-07).
fn tls_failure(e: &std::io::Error) -> String {
    let e = e.to_string();
    match crate::mismatch::answered_in_the_clear(&e) {
        true => format!(
            "TLS: {e} (the peer answered in the clear: it runs without --tls-cert; give every member the same TLS \
             flags, --tls-cert, --tls-key and --tls-peer-ca)"
        ),
        false => format!("TLS: {e}"),
    }
}

/// `attempt` (dialing and the handshake), failed as unreachable past the connect timeout.
pub(crate) async fn within_connect_timeout<T>(
    addr: &str,
    config: &ClientConfig,
    attempt: impl std::future::Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(CallError::Unreachable {
            addr: addr.to_string(),
            reason: format!("no connection within {} ms", config.connect_timeout.as_millis()),
        }),
    }
}

/// Present the hello and wait for the welcome.
async fn handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    addr: &str,
    config: &ClientConfig,
    read: R,
    mut write: W,
) -> Result<(FramedRead<R, Codec>, W), CallError> {
    send_hello(addr, config, &mut write).await?;
    let mut frames = FramedRead::new(read, Codec { max: config.max_frame });
    await_welcome(addr, &mut frames).await?;
    Ok((frames, write))
}

/// The magic bytes and the hello.
pub(crate) async fn send_hello<W: AsyncWrite + Unpin>(
    addr: &str,
    config: &ClientConfig,
    write: &mut W,
) -> Result<(), CallError> {
    let mut hello = BytesMut::from(&frame::MAGIC[..]);
    let h = Hello { version: frame::VERSION, cluster: config.auth.cluster.clone(), secret: config.auth.secret.clone() };
    frame::encode(&mut hello, frame::KIND_HELLO, 0, |b| frame::put_postcard(b, &h));
    write.write_all(&hello).await.map_err(|e| CallError::Unreachable { addr: addr.to_string(), reason: e.to_string() })
}

/// The server's first frame: a welcome, or a goodbye that says why not.
pub(crate) async fn await_welcome<R: AsyncRead + Unpin>(
    addr: &str,
    frames: &mut FramedRead<R, Codec>,
) -> Result<(), CallError> {
    let lost = |reason: String| CallError::Handshake { addr: addr.to_string(), reason };
    match frames.next().await {
        Some(Ok(f)) if f.kind == frame::KIND_WELCOME => Ok(()),
        Some(Ok(f)) if f.kind == frame::KIND_GOODBYE => Err(lost(String::from_utf8_lossy(&f.body).into_owned())),
        Some(Ok(f)) => Err(lost(format!("unexpected first frame of kind {:#x}", f.kind))),
        // A reset or an abort: the peer stopped or restarted mid-handshake, not a refusal (which
        // says why in a goodbye), so no error line that reads like a wrong secret or cluster.
        Some(Err(e)) if e.kind() != std::io::ErrorKind::InvalidData => Err(CallError::Unreachable {
            addr: addr.to_string(),
            reason: format!("the connection failed during the handshake: {e}"),
        }),
        Some(Err(e)) => Err(lost(e.to_string())),
        None => Err(lost("closed during the handshake (not a dkv node, or it refused us)".into())),
    }
}

/// The connection's writer and reader tasks.
fn start<R, W>(addr: &str, config: &ClientConfig, frames: FramedRead<R, Codec>, write: W) -> Arc<Conn>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(Conn {
        max_frame: config.max_frame,
        outbox: Outbox::default(),
        pending: Mutex::new(Pending::default()),
        next_id: AtomicU64::new(1),
        slots: Semaphore::new(config.max_in_flight),
    });
    tokio::spawn({
        let conn = conn.clone();
        async move {
            if let Err(e) = conn.outbox.write_to(write).await {
                conn.fail(format!("write failed: {e}"));
            }
        }
    });
    tokio::spawn(read_answers(conn.clone(), frames, addr.to_string()));
    conn
}

/// Hand each answer to the call waiting for it; when the stream ends, fail the rest.
async fn read_answers<R: AsyncRead + Unpin>(conn: Arc<Conn>, mut frames: FramedRead<R, Codec>, addr: String) {
    let reason = loop {
        match frames.next().await {
            Some(Ok(f)) => {
                let waiter = conn.pending.lock().expect("pending lock").calls.remove(&f.id);
                // No waiter: the call timed out and left; its answer is dropped.
                if let Some(w) = waiter {
                    let _ = w.send(Ok(f));
                }
            }
            Some(Err(e)) => break format!("bad frame from the peer: {e}"),
            None => break "closed by the peer".to_string(),
        }
    };
    tracing::debug!(%addr, "connection ended: {reason}");
    conn.fail(reason);
}

type Waiter = oneshot::Sender<Result<Frame, String>>;

#[derive(Default)]
struct Pending {
    calls: HashMap<u64, Waiter>,
    closed: Option<String>,
}

/// Why a call on a connection failed.
enum Failed {
    /// The connection dropped (or was closed) with this reason.
    Lost(String),
    /// The request is larger than a frame may be; it was not sent.
    TooLarge(frame::FrameError),
}

pub(crate) struct Conn {
    /// Largest frame sent: what a peer of the same configuration accepts.
    max_frame: usize,
    outbox: Outbox,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    slots: Semaphore,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.pending.lock().expect("pending lock").closed.is_some()
    }

    /// Mark the connection dead and fail every call waiting on it.
    fn fail(&self, reason: String) {
        let calls = {
            let mut p = self.pending.lock().expect("pending lock");
            if p.closed.is_none() {
                p.closed = Some(reason.clone());
            }
            std::mem::take(&mut p.calls)
        };
        for (_, w) in calls {
            let _ = w.send(Err(reason.clone()));
        }
        self.outbox.close();
    }

    /// One request and its answer; `None` past the deadline.
    async fn call(
        &self,
        kind: u8,
        body: impl FnOnce(&mut BytesMut),
        deadline: Instant,
    ) -> Option<Result<Frame, Failed>> {
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire()).await.ok()?.ok()?;
        // A peer that stopped reading (paused, its host gone with the connection still up) fills
        // its socket and then the outbox: a call waits for room rather than queue without bound,
        // and fails at its deadline with nothing left behind to send.
        let max_queued = self.max_frame.max(MAX_QUEUED_REQUESTS);
        tokio::time::timeout_at(deadline, self.outbox.room_below(max_queued)).await.ok()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().expect("pending lock");
            if let Some(reason) = &p.closed {
                return Some(Err(Failed::Lost(reason.clone())));
            }
            p.calls.insert(id, tx);
        }
        // Until an answer or an error comes: a call whose caller drops it (the loser of a
        // "first answer wins") takes its id out of the waiting calls.
        let mut waiting = Waiting { conn: self, id: Some(id) };
        let queued = self.outbox.push(|b| frame::encode_within(b, self.max_frame, kind, id, body));
        if !matches!(queued, Some(Ok(()))) {
            return Some(Err(match queued {
                Some(Err(e)) => Failed::TooLarge(e),
                _ => Failed::Lost("connection closed".into()),
            }));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => {
                waiting.id = None; // taken out by the reader that delivered it
                Some(answer.map_err(Failed::Lost))
            }
            Ok(Err(_)) => Some(Err(Failed::Lost("connection closed".into()))),
            Err(_) => None,
        }
    }
}

/// Bytes of requests queued on one connection from which a call waits (or one largest frame,
/// if that is more).
const MAX_QUEUED_REQUESTS: usize = 8 << 20;

/// A call's id among the connection's waiting calls, taken out when the call ends without its
/// answer (a deadline, an error, its caller gone).
struct Waiting<'a> {
    conn: &'a Conn,
    id: Option<u64>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.conn.pending.lock().expect("pending lock").calls.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket bound to a port and connected to that same port opens to itself (TCP's
    /// simultaneous open), as a dial to a free port inside the ephemeral range can.
    #[tokio::test]
    async fn a_self_connection_is_told_from_a_connection_to_a_listener() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let own = socket.local_addr().unwrap();
        let looped = socket.connect(own).await.expect("a socket connects to its own port");
        assert!(connected_to_itself(&looped));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        assert!(!connected_to_itself(&other));
    }
}
