//! What may end a connection's wait for input other than the input itself: the node's stop
//! signal and the connection's timer. They are polled only after one of them has woken the task.
//!
//! A connection without pipelining waits for input once per command, and the wait is a select
//! of the read, the stop signal and the timer. Almost every wait ends with the read. But a
//! select polls every branch each time it runs, and a stop signal or a timer that is already
//! registered still costs its poll: a lock on the watch channel's waiter list, a look at the
//! timer wheel. That was about 370 instructions of a GET's 5 500 (callgrind).
//!
//! Here the two are polled with a waker of their own. It notes that it was called, then wakes
//! the task. A poll that finds no note returns at once: nothing but the read can have happened.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

pub struct Interrupts {
    note: Arc<Note>,
    waker: Waker,
}

/// The waker the stop signal and the timer are polled with.
struct Note {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Note {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Interrupts {
    /// Polled at the first wait, which registers them.
    pub fn new() -> Interrupts {
        let note = Arc::new(Note { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        Interrupts { waker: Waker::from(note.clone()), note }
    }

    /// Poll them at the next wait whether or not they woke the task: one of them changed (a
    /// timer moved to a new deadline must be polled to take its waker).
    pub fn rearm(&self) {
        self.note.woken.store(true, Ordering::Relaxed);
    }

    /// `poll` (which polls the stop signal and the timer with the context it is given), if one
    /// of them woke the task since it last ran; `Pending` otherwise.
    pub fn poll<T>(&self, cx: &mut Context<'_>, poll: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        // Registered before the note is taken: a wake in between finds this task's waker.
        self.note.task.register(cx.waker());
        if !self.note.woken.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        poll(&mut Context::from_waker(&self.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn polls_only_after_a_wake_or_a_rearm() {
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let interrupts = Interrupts::new();
        let mut polled: Vec<Waker> = Vec::new();
        let mut wait = |interrupts: &Interrupts, polled: &mut Vec<Waker>| {
            interrupts.poll(&mut cx, |inner| {
                polled.push(inner.waker().clone());
                Poll::<()>::Pending
            })
        };
        assert!(wait(&interrupts, &mut polled).is_pending());
        assert_eq!(polled.len(), 1, "the first wait polls");
        assert!(wait(&interrupts, &mut polled).is_pending());
        assert_eq!(polled.len(), 1, "nothing woke the task: not polled");
        interrupts.rearm();
        assert!(wait(&interrupts, &mut polled).is_pending());
        assert_eq!(polled.len(), 2, "polled after a rearm");
        polled[1].wake_by_ref();
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "their wake wakes the task");
        assert!(wait(&interrupts, &mut polled).is_pending());
        assert!(wait(&interrupts, &mut polled).is_pending());
        assert_eq!(polled.len(), 3, "polled once after their wake");
        assert!(interrupts.poll(&mut cx, |_| Poll::Ready(())).is_pending());
        interrupts.rearm();
        assert!(interrupts.poll(&mut cx, |_| Poll::Ready(())).is_ready());
    }
}
