//! What the transport runs on: a TCP connection, or anything that wraps one (TLS).
//!
//! Both sides read and write a connection from two tasks at once. A `TcpStream` splits into
//! owned halves for free; another stream (a TLS session, which has one state for both
//! directions) is split with `tokio::io::split`, which takes a lock on every read and write.
//! [`Connection`] lets the plain case stay as cheap as it was.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// A connection the transport can split into a read half and a write half.
pub trait Connection: Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    /// The other end, for logs.
    fn peer(&self) -> String;
    fn into_halves(self) -> (Self::Read, Self::Write);
}

impl Connection for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;

    fn peer(&self) -> String {
        self.peer_addr().map_or_else(|_| "unknown peer".to_string(), |a| a.to_string())
    }

    fn into_halves(self) -> (Self::Read, Self::Write) {
        let _ = self.set_nodelay(true);
        self.into_split()
    }
}

/// Any other stream, with the address of its other end.
pub struct Split<S> {
    pub stream: S,
    pub peer: String,
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Connection for Split<S> {
    type Read = ReadHalf<S>;
    type Write = WriteHalf<S>;

    fn peer(&self) -> String {
        self.peer.clone()
    }

    fn into_halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self.stream)
    }
}

/// A stream a [`Wrap`] made.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

pub type Wrapped = Box<dyn Io>;

/// Turns a new outgoing TCP connection into the stream the handshake runs on (TLS, for one).
/// Called for every connection, so it may use certificates that changed since the last.
pub trait Wrap: Send + Sync + 'static {
    fn wrap(&self, addr: &str, tcp: TcpStream) -> Pin<Box<dyn Future<Output = std::io::Result<Wrapped>> + Send>>;
}

/// A [`Wrap`] in a client's configuration.
#[derive(Clone)]
pub struct Wrapper(pub Arc<dyn Wrap>);

impl std::fmt::Debug for Wrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wrapper")
    }
}

/// A stream whose first byte was read to tell the protocol, then handed back before the rest.
pub struct Prefixed<S> {
    first: Option<u8>,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(first: Option<u8>, inner: S) -> Self {
        Prefixed { first, inner }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Some(b) = self.first {
            if buf.remaining() > 0 {
                buf.put_slice(&[b]);
                self.first = None;
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
