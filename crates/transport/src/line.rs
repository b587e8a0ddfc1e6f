//! A line: one connection whose calls go one at a time, written and read by the calling task.
//!
//! [`Client`](crate::Client) is built for many calls at once: a writer task gathers the frames of
//! many callers into one write, and a reader task hands each answer to its caller. For a call
//! made once a second by one task (a node's heartbeat to the seed), those two tasks cost more than
//! the call: each call wakes both of them and then the caller. On a line the caller writes its
//! frame and reads its answer itself, so an idle heartbeat wakes the process once, for the answer,
//! which is as little as a TCP round trip can cost. A call made while another is in flight waits
//! for it (within its own deadline).
//!
//! The frames, the handshake and the errors are the client's. A call that fails on the
//! connection (lost, timed out, a malformed answer), or that its caller abandons, closes it, and
//! the next call connects again: nothing can be left half-read. A connection that the server
//! closed while it sat idle (a seed that restarted) is noticed before it is used, so the next
//! call does not fail on it.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

use crate::client::{self, ClientConfig, Dialed, STATUS_TOO_LARGE};
use crate::error::CallError;
use crate::frame::{self, Codec};
use crate::io::Wrapped;

/// A connection to one address at a time, for calls made one after the other. Of its
/// [`ClientConfig`], `max_in_flight` does not apply: one call is in flight at a time.
pub struct Line {
    config: ClientConfig,
    open: tokio::sync::Mutex<Option<Open>>,
}

/// A connection that passed the handshake.
struct Open {
    addr: String,
    frames: FramedRead<Wrapped, Codec>,
    next_id: u64,
    /// The frame being sent, kept for the next one.
    out: BytesMut,
}

impl Line {
    pub fn new(config: ClientConfig) -> Self {
        Line { config, open: tokio::sync::Mutex::new(None) }
    }

    /// Send a request of `kind` whose body `body` writes to `addr`, and read its answer's body,
    /// all within `timeout` (connecting first if need be).
    pub async fn call(
        &self,
        addr: &str,
        kind: u8,
        body: impl FnOnce(&mut BytesMut),
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        self.call_until(addr, kind, body, tokio::time::sleep(timeout), timeout).await
    }

    /// [`Line::call`], given up when `until` resolves rather than at a timer of its own; a
    /// connection attempt is still bounded by the config's `connect_timeout`. A caller that
    /// already waits on a timer (a heartbeat's next tick) passes it, and the call then arms no
    /// timer: arming one wakes the runtime's driver to take the earlier deadline, a system call
    /// and a pass of the event loop each time, about a tenth of an idle node's CPU.
    /// `after` is how long `until` waits, for the timeout's message.
    pub async fn call_until(
        &self,
        addr: &str,
        kind: u8,
        body: impl FnOnce(&mut BytesMut),
        until: impl Future<Output = ()>,
        after: Duration,
    ) -> Result<Bytes, CallError> {
        debug_assert!((1..=frame::MAX_REQUEST_KIND).contains(&kind));
        tokio::select! {
            biased;
            answer = self.call_unbounded(addr, kind, body) => answer,
            () = until => Err(CallError::Timeout { addr: addr.to_string(), ms: after.as_millis() }),
        }
    }

    /// The call, bounded only by what its caller gives up at.
    async fn call_unbounded(&self, addr: &str, kind: u8, body: impl FnOnce(&mut BytesMut)) -> Result<Bytes, CallError> {
        let mut slot = self.open.lock().await;
        // Taken out of its slot for the call, and put back only once the call is done with it: a
        // call abandoned halfway (its caller dropped it) takes the connection with it, rather than
        // leave an answer owed on it for the next call to misread.
        let reusable = match slot.take() {
            Some(mut conn) if conn.addr == addr => (!conn.closed()).then_some(conn),
            _ => None,
        };
        let mut conn = match reusable {
            Some(conn) => conn,
            None => connect(addr, &self.config).await?,
        };
        let id = conn.next_id;
        conn.next_id += 1;
        conn.out.clear();
        if let Err(e) = frame::encode_within(&mut conn.out, self.config.max_frame, kind, id, body) {
            *slot = Some(conn);
            let message = format!("request not sent: {e}");
            return Err(CallError::Refused { addr: addr.to_string(), status: STATUS_TOO_LARGE, message });
        }
        // Given up before its answer came, the call drops `conn`: its answer may still come, so
        // the connection cannot be reused.
        let answer = conn.exchange(id).await.map_err(|reason| CallError::Lost { addr: addr.to_string(), reason })?;
        *slot = Some(conn);
        client::answer_body(addr, answer)
    }
}

impl Open {
    /// Write the frame in `out` and read the answer with `id`.
    async fn exchange(&mut self, id: u64) -> Result<frame::Frame, String> {
        self.frames.get_mut().write_all(&self.out).await.map_err(|e| format!("write failed: {e}"))?;
        match self.frames.next().await {
            Some(Ok(f)) if f.id == id => Ok(f),
            Some(Ok(f)) => Err(format!("an answer to call {} where call {id} was waiting", f.id)),
            Some(Err(e)) => Err(format!("bad frame from the peer: {e}")),
            None => Err("closed by the peer".into()),
        }
    }

    /// Whether the server closed the connection (or sent something unasked) while it was idle.
    /// Looks only at what already arrived: it never waits.
    fn closed(&mut self) -> bool {
        self.frames.next().now_or_never().is_some()
    }
}

/// Connect, present the hello and wait for the welcome.
async fn connect(addr: &str, config: &ClientConfig) -> Result<Open, CallError> {
    let attempt = async {
        let mut stream: Wrapped = match client::dial(addr, config).await? {
            Dialed::Plain(tcp) => Box::new(tcp),
            Dialed::Wrapped(stream) => stream,
        };
        client::send_hello(addr, config, &mut stream).await?;
        let mut frames = FramedRead::new(stream, Codec { max: config.max_frame });
        client::await_welcome(addr, &mut frames).await?;
        Ok(Open { addr: addr.to_string(), frames, next_id: 1, out: BytesMut::new() })
    };
    client::within_connect_timeout(addr, config, attempt).await
}
