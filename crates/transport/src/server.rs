//! The answering side of a connection.
//!
//! A connection first proves it belongs: the magic bytes, then a hello with the format version,
//! the cluster name and the secret, all within the handshake timeout. A mismatch is answered with
//! a goodbye that says what was wrong, logged, and the connection closed. After that the requests
//! of a connection run concurrently inside the connection's own task (at most `max_concurrent`:
//! past that the reader stops reading, and TCP pushes back on the peer), and answers are queued
//! in the connection's [`Outbox`] as they finish, in any order, to leave together in the next
//! write. Polling them in place rather than spawning a task per request saves a task allocation,
//! a scheduling round and a cross-task wake-up on every call; most requests (an apply, a read)
//! finish in their first poll.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::codec::FramedRead;

use crate::frame::{self, Codec, Hello, Refusal};
use crate::io::Connection;
use crate::outbox::Outbox;
use crate::{Auth, Throttle};

/// Answers requests. `kind` is the application's request kind; the answer is the response body.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, kind: u8, body: Bytes) -> impl Future<Output = Result<Vec<u8>, Refusal>> + Send;
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub auth: Auth,
    /// Largest request frame accepted; a larger one closes the connection.
    pub max_frame: usize,
    /// Largest answer frame sent; a larger answer is refused instead (`413`), so it does not
    /// cost the caller its connection. The same as `max_frame` between nodes; the seed, whose
    /// requests are small and whose answers can carry a large membership, sets it higher.
    pub max_answer: usize,
    /// Requests of one connection running at once.
    pub max_concurrent: usize,
    /// Longest a request may run: past it, it is answered with a `503` and dropped (its caller,
    /// whose own deadline is shorter, has given up long since), so that what it holds (its body,
    /// its place among `max_concurrent`) goes back.
    pub max_request_time: Duration,
    /// Longest the magic and hello may take to arrive.
    pub handshake_timeout: Duration,
}

/// Bytes of answers queued on one connection from which its reader waits, and its running
/// requests wait to finish. What the connection holds is at most about twice this and two
/// answers: a write of up to this and one answer, and as much queued behind it.
const MAX_QUEUED_ANSWERS: usize = 8 << 20;

/// Bytes of request bodies running on one connection from which its reader waits: a body is held
/// until its request ends, and 1 024 requests of 16 MiB each, at a seed that did not answer, held
/// 1.3 GB (found by a hunt, 2026-12-08). At most this and one frame.
const MAX_RUNNING_BYTES: usize = 64 << 20;

/// Serve one accepted connection until the peer closes it, it breaks the protocol, or `stop`.
pub async fn serve<C: Connection, H: Handler>(
    stream: C,
    handler: Arc<H>,
    config: Arc<ServerConfig>,
    stop: watch::Receiver<bool>,
) {
    serve_admitted(stream, handler, config, stop, || Ok(())).await
}

/// [`serve`], where a connection whose hello passed is served only if `admit` lets it: what
/// `admit` returns is held while it is served, and its refusal is the goodbye's reason. A node
/// gives a connection a peer's place only once its hello carried the cluster's name and secret:
/// one byte of the magic took such a place before, for as long as the hello was awaited, and
/// enough of them shut members out (found by trying, 2026-12-06).
pub async fn serve_admitted<C: Connection, H: Handler, A>(
    stream: C,
    handler: Arc<H>,
    config: Arc<ServerConfig>,
    mut stop: watch::Receiver<bool>,
    admit: impl FnOnce() -> Result<A, String>,
) {
    let peer = stream.peer();
    let (read, mut write) = stream.into_halves();
    // The hello is read through the same buffer as the requests that follow it: bytes that arrive
    // with it (a request sent right behind the hello) stay buffered instead of being lost. Until
    // the hello has been checked, frames are held to a smaller limit.
    let mut frames = FramedRead::new(read, Codec { max: config.max_frame.min(64 * 1024) });
    let hello = tokio::time::timeout(config.handshake_timeout, read_hello(&mut frames)).await;
    let refusal = match hello {
        Err(_) => Some(format!("no hello within {} ms", config.handshake_timeout.as_millis())),
        Ok(Err(e)) => Some(e),
        Ok(Ok(h)) => check(&h, &config.auth),
    };
    let mut answer = BytesMut::new();
    let admitted = match refusal {
        Some(reason) => Err(reason),
        None => admit(),
    };
    let _admitted = match admitted {
        Ok(held) => held,
        Err(reason) => {
            goodbye(&mut write, &peer, &reason).await;
            return;
        }
    };
    frame::encode(&mut answer, frame::KIND_WELCOME, 0, |_| {});
    if write.write_all(&answer).await.is_err() {
        return;
    }
    frames.decoder_mut().max = config.max_frame;

    let outbox = Arc::new(Outbox::default());
    let mut writer = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.write_to(write).await }
    });
    let max_answer = config.max_answer;
    // Answers queued and not yet written, from which the reader stops reading (a single larger
    // answer passes alone). It was the largest answer, 16 MiB between nodes, if that was more:
    // 46 MB held per connection of a peer that read nothing (found by a hunt, 2026-12-07).
    let max_queued = MAX_QUEUED_ANSWERS;
    let mut running = FuturesUnordered::new();
    // Body bytes of the requests in `running`.
    let mut running_bytes = 0;
    // Whether the writer ended while the connection was served: it failed, and no answer can go.
    let mut writer_ended = false;
    let reason = loop {
        // At `max_concurrent` requests running (or `MAX_RUNNING_BYTES` of their bodies), or with
        // answers piling up unread, the reader stops reading, and TCP pushes back. With answers
        // piling up, the running requests are not driven on either: each one's answer would join
        // the pile (only the reader waited before, and forwards, which wait on other replicas,
        // took one connection to 918 MB of answers: found by a hunt, 2026-12-08).
        let room = running.len() < config.max_concurrent && running_bytes < MAX_RUNNING_BYTES;
        let backlog = outbox.queued() >= max_queued;
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => break "node stopping".to_string(),
            // The writer failed (the peer reset the connection, or took nothing for a long
            // while): no answer can go, and requests must not run for nobody. Over TLS the
            // peer did not see the connection end until this side stopped reading too.
            ended = &mut writer => {
                writer_ended = true;
                break match ended {
                    Ok(Err(e)) => format!("its answers could not be written: {e}"),
                    _ => "its answers could not be written".to_string(),
                };
            }
            Some(len) = running.next(), if !running.is_empty() && !backlog => {
                running_bytes -= len;
                continue;
            }
            // A writer that failed closes the outbox and drops what was queued, and there is room
            // at once. Before it dropped them, this loop spun at full speed without yielding, the
            // answers still counted as queued, and the node served nobody again (found by a hunt,
            // 2026-12-07).
            _ = outbox.room_below(max_queued), if backlog => continue,
            f = frames.next(), if room && !backlog => f,
        };
        let f = match next {
            Some(Ok(f)) => f,
            Some(Err(e)) => break format!("bad frame: {e}"),
            None => break "closed by the peer".to_string(),
        };
        if !(1..=frame::MAX_REQUEST_KIND).contains(&f.kind) {
            break format!("a frame of kind {:#x} where a request was expected", f.kind);
        }
        let (handler, outbox) = (&handler, &outbox);
        let (len, limit) = (f.body.len(), config.max_request_time);
        running_bytes += len;
        running.push(async move {
            let result = within(limit, handler.handle(f.kind, f.body)).await;
            outbox.push(|b| {
                let refuse = |b: &mut BytesMut, r: &Refusal| {
                    frame::encode(b, frame::KIND_REFUSED, f.id, |b| frame::put_postcard(b, r))
                };
                match result {
                    Ok(body) => {
                        let sent =
                            frame::encode_within(b, max_answer, frame::KIND_OK, f.id, |b| b.extend_from_slice(&body));
                        if let Err(e) = sent {
                            // Sent as it is, the answer would cost the peer its connection.
                            refuse(b, &Refusal::new(crate::client::STATUS_TOO_LARGE, format!("answer not sent: {e}")));
                        }
                    }
                    Err(r) => refuse(b, &r),
                }
            });
            len
        });
    };
    // Requests still running when the connection ends are dropped with it: their answers could no
    // longer be sent, and the caller's call fails at once on the closed connection.
    drop(running);
    tracing::debug!(%peer, "internal connection ended: {reason}");
    outbox.close();
    // The writer owns the socket's write half: one stuck on a peer that stopped reading would keep
    // the connection open after we are done with it.
    if !writer_ended && tokio::time::timeout(Duration::from_secs(1), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// `request`'s answer, or a `503` once it has run for `limit`. Most requests finish in their first
/// poll (an apply, a read), and get no timer: only one that waits is given one.
///
/// The timer is boxed, made only on that slow path: this future is part of every request's, and
/// a timer inline (a `tokio::time::Timeout`) made each request's allocation a hundred bytes
/// larger, and the 3-node GET measurably dearer.
async fn within<T>(limit: Duration, request: impl Future<Output = Result<T, Refusal>>) -> Result<T, Refusal> {
    let mut request = std::pin::pin!(request);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(answer) = request.as_mut().poll(cx) {
            return std::task::Poll::Ready(answer);
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(Refusal::new(
                503,
                format!("not answered within {} ms; dropped", limit.as_millis()),
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
    .await
}

/// Refuse a connection that the node turned away before the handshake (a TLS connection without
/// a member's certificate): its hello is read (bounded), so the goodbye is not lost to a reset,
/// and answered with `reason`, which the caller logs as it logs any refused handshake.
pub async fn refuse<C: Connection>(stream: C, config: &ServerConfig, reason: &str) {
    let peer = stream.peer();
    let (read, mut write) = stream.into_halves();
    let mut frames = FramedRead::new(read, Codec { max: config.max_frame.min(64 * 1024) });
    let _ = tokio::time::timeout(config.handshake_timeout, read_hello(&mut frames)).await;
    goodbye(&mut write, &peer, reason).await;
}

/// Log a refused connection and tell the peer why.
async fn goodbye<W: AsyncWrite + Unpin>(write: &mut W, peer: &str, reason: &str) {
    static REFUSED: Throttle = Throttle::new();
    if let Some(more) = REFUSED.allow(reason) {
        tracing::warn!(%peer, "refused an internal connection: {reason}{more}");
    }
    let mut answer = BytesMut::new();
    frame::encode(&mut answer, frame::KIND_GOODBYE, 0, |b| b.extend_from_slice(reason.as_bytes()));
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        write.write_all(&answer).await?;
        write.shutdown().await
    })
    .await;
}

async fn read_hello<R: AsyncRead + Unpin>(frames: &mut FramedRead<R, Codec>) -> Result<Hello, String> {
    let mut magic = [0u8; 4];
    // Straight from the socket: nothing has been buffered yet.
    frames.get_mut().read_exact(&mut magic).await.map_err(|e| format!("reading the magic: {e}"))?;
    if magic != frame::MAGIC {
        return Err("not a dkv transport connection (wrong magic bytes)".into());
    }
    match frames.next().await {
        Some(Ok(f)) if f.kind == frame::KIND_HELLO => {
            postcard::from_bytes(&f.body).map_err(|e| format!("undecodable hello: {e}"))
        }
        Some(Ok(f)) => Err(format!("first frame of kind {:#x}, expected a hello", f.kind)),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("closed before the hello".into()),
    }
}

/// `None` if the hello may proceed, else why not (said to the peer and logged here).
fn check(hello: &Hello, auth: &Auth) -> Option<String> {
    if hello.version != frame::VERSION {
        return Some(format!(
            "transport format {} but this node speaks {}: run one dkv release across the cluster",
            hello.version,
            frame::VERSION
        ));
    }
    if hello.cluster != auth.cluster {
        return Some(format!(
            "cluster name {} but this node belongs to {:?}: check --cluster-name",
            shown(&hello.cluster),
            auth.cluster
        ));
    }
    if !secret_matches(auth.secret.as_deref(), hello.secret.as_deref().map(str::as_bytes)) {
        return Some("missing or wrong cluster secret: check --cluster-secret".into());
    }
    None
}

/// A name a caller sent, as a refusal shows it (logged here, and sent back): quoted, and cut
/// after 64 bytes. A caller with no secret sent hellos naming a different cluster of 60 KB each,
/// and every refusal logged it whole: 78 KB of log a second from one client (found by trying,
/// 2026-12-06).
fn shown(name: &str) -> String {
    const SHOWN: usize = 64;
    if name.len() <= SHOWN {
        return format!("{name:?}");
    }
    let cut = (0..=SHOWN).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0);
    format!("{:?}… ({} bytes)", &name[..cut], name.len())
}

/// Whether a caller may go on: always when no secret is configured, else only with the same
/// secret ([`same_secret`]). The transport's handshake, and the node's and the seed's HTTP
/// endpoints for members (the secret in a header), check with this.
pub fn secret_matches(expected: Option<&str>, given: Option<&[u8]>) -> bool {
    let Some(expected) = expected else { return true };
    given.is_some_and(|given| same_secret(expected.as_bytes(), given))
}

/// Whether `given` is `expected`, in time that depends only on `expected`'s length: every byte of
/// it is compared whatever `given` holds, and a length difference is folded in, not returned
/// early (which told a prober the secret's length; the cluster secret's check did until
/// 2026-12-06). For the cluster secret here and the clients' passwords in the node.
pub fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= std::hint::black_box(e ^ g);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_required_only_when_configured() {
        assert!(secret_matches(None, None));
        assert!(secret_matches(None, Some(b"anything")));
        assert!(secret_matches(Some("s3cret"), Some(b"s3cret")));
        assert!(!secret_matches(Some("s3cret"), Some(b"s3creT")));
        assert!(!secret_matches(Some("s3cret"), Some(b"s3cre")));
        assert!(!secret_matches(Some("s3cret"), None));
        assert!(!same_secret(b"", b"a") && same_secret(b"", b""));
    }

    /// A refusal shows at most 64 bytes of the cluster name a caller sent, however long.
    #[test]
    fn a_refusal_shows_a_long_cluster_name_cut() {
        let auth = Auth { cluster: "dkv".into(), secret: None };
        let hello = |cluster: String| Hello { version: frame::VERSION, cluster, secret: None };
        let why = check(&hello("é".repeat(30_000)), &auth).expect("refused");
        assert!(why.len() < 200 && why.contains("(60000 bytes)"), "{why}");
        assert!(check(&hello("other".into()), &auth).expect("refused").contains("\"other\" but"));
    }
}
