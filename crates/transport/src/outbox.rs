//! Frames queued by many tasks, written by one.
//!
//! Callers append their frame to a shared buffer under a short lock and wake the writer; the
//! writer swaps the buffer out and writes all of it at once. Whatever was queued while the socket
//! was busy therefore leaves in a single write: under load one syscall carries dozens of frames,
//! which is what makes a call over this transport cheaper than an HTTP request. The two buffers
//! are reused, so a frame costs no allocation once they have grown to the working size.
//!
//! A peer that takes no byte for [`WRITE_STALL`] is given up on: the writer fails, and what was
//! queued is dropped with it. Without that, a peer that stopped reading held its connection, and
//! the answers queued for it, for as long as it stayed connected (found by a hunt, 2026-12-07).

use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// A spare buffer that grew past this while carrying a burst is dropped rather than kept. Large
/// enough for a range page or a hand-off batch (4 MiB) with room, so a stream of them reuses one
/// buffer instead of faulting in fresh memory for each.
const KEEP_CAPACITY: usize = 8 << 20;

/// Longest a write may wait for the peer to take a byte. Every call between nodes has a deadline
/// of seconds, so by then whatever was queued is of use to nobody; a paused or cut-off peer's
/// connection is made again once it answers.
pub(crate) const WRITE_STALL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    /// Woken each time the writer takes what was queued.
    taken: Notify,
}

#[derive(Default)]
struct State {
    buf: BytesMut,
    closed: bool,
}

impl Outbox {
    /// Queue one frame, written by `encode`; what `encode` returned, or `None` if the connection
    /// is closed.
    pub fn push<R>(&self, encode: impl FnOnce(&mut BytesMut) -> R) -> Option<R> {
        let r = {
            let mut s = self.state.lock().expect("outbox lock");
            if s.closed {
                return None;
            }
            encode(&mut s.buf)
        };
        self.wake.notify_one();
        Some(r)
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.state.lock().expect("outbox lock").buf.len()
    }

    /// Closed: by [`Outbox::close`], or by a write that failed.
    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.state.lock().expect("outbox lock").closed
    }

    /// Wait until fewer than `max` bytes are queued, or the outbox is closed: a reader that
    /// queues answers stops reading meanwhile, so a peer that sends requests and does not read
    /// the answers is held back by TCP rather than by this process's memory.
    pub async fn room_below(&self, max: usize) {
        if self.queued() < max {
            return; // the common case, without a waiter registered
        }
        loop {
            let taken = self.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            {
                let s = self.state.lock().expect("outbox lock");
                if s.buf.len() < max || s.closed {
                    return;
                }
            }
            taken.await;
        }
    }

    /// Refuse further frames; the writer finishes what is queued and stops.
    pub fn close(&self) {
        self.state.lock().expect("outbox lock").closed = true;
        self.wake.notify_one();
        self.taken.notify_waiters();
    }

    /// Close, dropping what is queued: the writer failed, and nothing queued can be sent.
    fn abandon(&self) {
        std::mem::take(&mut self.state.lock().expect("outbox lock").buf);
        self.close();
    }

    /// Write queued frames to `w` until the outbox is closed and empty, or a write fails.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, mut w: W) -> std::io::Result<()> {
        let mut spare = BytesMut::with_capacity(16 * 1024);
        loop {
            self.wake.notified().await;
            // The task that woke us is likely one of many ready to queue a frame (a burst of
            // requests, or the answers to one read of the socket), and tokio runs the task it
            // just woke first. Yielding once lets the others queue theirs, so they share this
            // write instead of each paying for a write of its own.
            tokio::task::yield_now().await;
            loop {
                let finished = {
                    let mut s = self.state.lock().expect("outbox lock");
                    if s.buf.is_empty() {
                        if !s.closed {
                            break;
                        }
                        true
                    } else {
                        std::mem::swap(&mut s.buf, &mut spare);
                        false
                    }
                };
                self.taken.notify_waiters();
                if finished {
                    let _ = w.shutdown().await;
                    return Ok(());
                }
                if let Err(e) = write_all_within(&mut w, &spare, WRITE_STALL).await {
                    self.abandon();
                    return Err(e);
                }
                spare.clear();
                if spare.capacity() > KEEP_CAPACITY {
                    spare = BytesMut::with_capacity(16 * 1024);
                }
            }
        }
    }
}

/// `w.write_all(bytes)`, failing once a write has waited `stall` for the peer to take a byte. A
/// write the socket takes at once, the usual case, sets no timer.
async fn write_all_within<W: AsyncWrite + Unpin>(w: &mut W, mut bytes: &[u8], stall: Duration) -> std::io::Result<()> {
    use futures_util::FutureExt;
    use std::io::{Error, ErrorKind};
    while !bytes.is_empty() {
        let written = match w.write(bytes).now_or_never() {
            Some(written) => written,
            None => tokio::time::timeout(stall, w.write(bytes)).await.map_err(|_| {
                Error::new(ErrorKind::TimedOut, format!("the peer took no byte for {} s: given up on", stall.as_secs()))
            })?,
        };
        match written? {
            0 => return Err(ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that takes nothing fails the writer after the stall, and what was queued for it is
    /// dropped, the outbox closed.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_takes_nothing_is_given_up_on_and_the_queue_dropped() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let outbox = std::sync::Arc::new(Outbox::default());
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.write_to(ours).await }
        });
        outbox.push(|b| b.extend_from_slice(&[7; 64 * 1024]));
        tokio::task::yield_now().await;
        outbox.push(|b| b.extend_from_slice(&[8; 64 * 1024]));
        let started = tokio::time::Instant::now();
        let err = writer.await.unwrap().expect_err("given up on");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() >= WRITE_STALL, "{:?}", started.elapsed());
        assert!(outbox.is_closed() && outbox.queued() == 0);
        assert!(outbox.push(|_| ()).is_none(), "nothing more is queued");
    }
}
