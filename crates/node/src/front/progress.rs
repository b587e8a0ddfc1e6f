//! When a client connection last moved bytes, to let go of one that has stopped.
//!
//! A client that asks for a large value and never reads the answer holds the answer in the
//! node (hyper keeps the body until it is written) for as long as the connection stays open.
//! [`Progress`] counts every read and write that moves bytes and notes whether a write waits for
//! the client, and [`stalled`] ends once an answer has waited a whole idle timeout with no byte
//! moved (so between one and two of them after the last): the HTTP server then closes the
//! connection, as the RESP server closes one that neither sends nor reads while its replies
//! wait. A client that reads slowly keeps moving bytes and stays; one that is slow to send its
//! request is the read timeout's (a `408`), not this. A count rather than a time: a request's
//! reads and writes then cost no reading of the clock.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many times a connection moved bytes, and whether a write waits for the client, shared
/// between its stream and its watchdog.
#[derive(Clone, Default)]
pub struct Stamp(Arc<(AtomicU64, AtomicBool)>);

impl Stamp {
    pub fn new() -> Stamp {
        Stamp::default()
    }

    fn touch(&self) {
        // One task drives the stream: no read-modify-write needed.
        self.0 .0.store(self.count().wrapping_add(1), Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0 .0.load(Ordering::Relaxed)
    }

    fn writing(&self, waits: bool) {
        self.0 .1.store(waits, Ordering::Relaxed);
    }

    fn write_waits(&self) -> bool {
        self.0 .1.load(Ordering::Relaxed)
    }
}

/// Ends once a write of the connection stamped by `stamp` has waited for the client, with no
/// byte moved either way, for a whole `idle`.
pub async fn stalled(stamp: &Stamp, idle: Duration) {
    loop {
        let before = stamp.count();
        tokio::time::sleep(idle).await;
        if stamp.count() == before && stamp.write_waits() {
            return;
        }
    }
}

/// A stream that stamps every read and write that moves bytes.
pub struct Progress<T> {
    inner: T,
    stamp: Stamp,
}

impl<T> Progress<T> {
    pub fn new(inner: T, stamp: Stamp) -> Self {
        Progress { inner, stamp }
    }

    /// A write's result, stamped if it moved bytes, and noted if it waits for the client.
    fn counted(&self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        self.stamp.writing(written.is_pending());
        let n = ready!(written)?;
        if n > 0 {
            self.stamp.touch();
        }
        Poll::Ready(Ok(n))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Progress<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.stamp.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Progress<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.counted(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.counted(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes moved either way put the watchdog off; a quiet connection with nothing to write is
    /// not its business (a slow request is the read timeout's); a write that waits for the
    /// client, with no byte moved for the idle time, ends it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_waits_with_no_byte_moved_is_stalled_after_the_idle_time() {
        let (a, mut b) = tokio::io::duplex(64);
        let stamp = Stamp::new();
        let mut a = Progress::new(a, stamp.clone());
        let idle = Duration::from_millis(300);
        let watching = tokio::spawn({
            let stamp = stamp.clone();
            async move { stalled(&stamp, idle).await }
        });
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            a.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            b.read_exact(&mut one).await.unwrap();
            b.write_all(b"y").await.unwrap();
            a.read_exact(&mut one).await.unwrap();
        }
        tokio::time::sleep(3 * idle).await;
        assert!(!watching.is_finished(), "stalled while it moved bytes, or was quiet with nothing to write");
        // An answer the client does not read: the write waits once the pipe's 64 bytes are full.
        let started = std::time::Instant::now();
        let writer = tokio::spawn(async move {
            let _ = a.write_all(&[0u8; 1024]).await;
        });
        watching.await.unwrap();
        let took = started.elapsed();
        assert!(took >= idle && took < 3 * idle, "stalled {took:?} after the write began to wait");
        writer.abort();
        drop(b);
    }
}
