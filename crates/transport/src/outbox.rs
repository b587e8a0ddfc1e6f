//! Frames queued by many tasks, written by one.
//!
//! Callers append their frame to a shared buffer under a short lock and wake the writer; the
//! writer swaps the buffer out and writes all of it at once. Whatever was queued while the socket
//! was busy therefore leaves in a single write: under load one syscall carries dozens of frames,
//! which is what makes a call over this transport cheaper than an HTTP request. The two buffers
//! are reused, so a frame costs no allocation once they have grown to the working size.

use std::sync::Mutex;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// A spare buffer that grew past this while carrying a burst is dropped rather than kept. Large
/// enough for a range page or a hand-off batch (4 MiB) with room, so a stream of them reuses one
/// buffer instead of faulting in fresh memory for each.
const KEEP_CAPACITY: usize = 8 << 20;

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
                let written = w.write_all(&spare).await;
                if let Err(e) = written {
                    self.close();
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
