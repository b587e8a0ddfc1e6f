//! A connection's commands that are running, in the order their replies are due, and the
//! replies of those that finished while the connection waited for its client to read.
//!
//! Why the second part: a connection that waits for a client that does not read (its socket
//! full) used to poll nothing else, so the commands it was running stood still. A GET forwarded
//! to another node had its answer arrive anyway, into the transport's channel for the call,
//! where no one decoded it or charged it to `--max-client-memory` until the connection polled
//! the command again. 40 connections that pipelined 100 GETs of a 500 KB value on keys of other
//! nodes and never read held 1.9 GB that way, with 25 MB charged (found by a hunt, 2026-12-07).
//! Now the wait polls them too ([`Replies::poll_finished`]): each reply is charged as its
//! command finishes (`commands::Held::of`), or is the budget's error, and waits here, in order,
//! to be written next.

use std::collections::VecDeque;
use std::future::Future;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesOrdered, StreamExt};

use super::commands::Held;
use super::frame::Reply;

pub struct Replies<F: Future<Output = Option<Held>>> {
    running: FuturesOrdered<F>,
    finished: VecDeque<Held>,
}

impl<F: Future<Output = Option<Held>>> Replies<F> {
    pub fn new() -> Self {
        Replies { running: FuturesOrdered::new(), finished: VecDeque::new() }
    }

    /// No command running, and no reply waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.finished.is_empty()
    }

    pub fn push_back(&mut self, command: F) {
        self.running.push_back(command);
    }

    /// The next reply in order, once its command has finished; `None` when there is none.
    pub async fn next(&mut self) -> Option<Held> {
        if let Some(held) = self.finished.pop_front() {
            return Some(held);
        }
        if self.running.is_empty() {
            return None;
        }
        // (Always `Some`: a command is set in its box before the box runs.)
        self.running.next().await.map(|held| held.unwrap_or_else(|| Held::small(Reply::Nil)))
    }

    /// Poll the running commands, and keep the replies of those that finished, in order: what a
    /// wait for the client does meanwhile. Wakes the task when the next one finishes. True
    /// once none is left running.
    pub fn poll_finished(&mut self, cx: &mut Context<'_>) -> bool {
        while let Poll::Ready(Some(held)) = self.running.poll_next_unpin(cx) {
            self.finished.push_back(held.unwrap_or_else(|| Held::small(Reply::Nil)));
        }
        self.running.is_empty()
    }
}

impl<F: Future<Output = Option<Held>>> Extend<F> for Replies<F> {
    fn extend<I: IntoIterator<Item = F>>(&mut self, commands: I) {
        self.running.extend(commands);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn reply(n: i64) -> Option<Held> {
        Some(Held::small(Reply::Int(n)))
    }

    fn int(held: Option<Held>) -> i64 {
        match held.map(|h| h.reply) {
            Some(Reply::Int(n)) => n,
            _ => panic!("not an integer reply"),
        }
    }

    #[tokio::test]
    async fn replies_finished_during_a_wait_come_first_and_in_order() {
        let (tx1, rx1) = tokio::sync::oneshot::channel::<()>();
        let (tx2, rx2) = tokio::sync::oneshot::channel::<()>();
        let mut replies = Replies::new();
        replies.push_back(async move { rx1.await.ok().and(reply(1)) }.boxed());
        replies.push_back(async move { rx2.await.ok().and(reply(2)) }.boxed());
        replies.push_back(std::future::ready(reply(3)).boxed());
        // The second finishes first: nothing is due until the first has.
        tx2.send(()).unwrap();
        std::future::poll_fn(|cx| {
            replies.poll_finished(cx);
            Poll::Ready(())
        })
        .await;
        assert!(!replies.is_empty());
        tx1.send(()).unwrap();
        std::future::poll_fn(|cx| {
            replies.poll_finished(cx);
            Poll::Ready(())
        })
        .await;
        assert_eq!(replies.running.len(), 0, "all three finished during the wait");
        assert_eq!([int(replies.next().await), int(replies.next().await), int(replies.next().await)], [1, 2, 3]);
        assert!(replies.is_empty() && replies.next().await.is_none());
    }
}
