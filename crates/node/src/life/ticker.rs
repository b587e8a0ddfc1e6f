//! A periodic tick that wakes the process once per period.
//!
//! An idle node's CPU is its wake-ups (`bench/membership.sh`), and Tokio's timer wakes a 1 s
//! sleep twice: its timer wheel files a far deadline in a coarse slot (64 ms wide for deadlines
//! 64 ms to 4 s away), wakes at the slot's start to move it to the finest level, and wakes again
//! when it is due. On Linux a tick is a kernel timer instead (`timerfd`), which the runtime's
//! epoll waits on with everything else: one wake-up a period. 100 bare Tokio processes ticking
//! once a second cost 0.48% of a core this way against 0.92% sleeping (`bench/idle-floor.sh`).
//! Elsewhere, and should the kernel refuse a timer, it is Tokio's interval.
//!
//! Ticks missed while the caller was busy are skipped, not made up in a burst.

use std::time::Duration;

pub struct Ticker(Inner);

enum Inner {
    #[cfg(target_os = "linux")]
    Kernel(linux::TimerFd),
    Tokio(tokio::time::Interval),
}

impl Ticker {
    /// Ticks every `period`, the first one `period` from now. Must be called within a runtime.
    pub fn every(period: Duration) -> Self {
        #[cfg(target_os = "linux")]
        match linux::TimerFd::every(period) {
            Ok(t) => return Ticker(Inner::Kernel(t)),
            Err(e) => tracing::debug!("no kernel timer ({e}); ticking with Tokio's"),
        }
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Ticker(Inner::Tokio(interval))
    }

    /// Wait for the next tick.
    pub async fn tick(&mut self) {
        match &mut self.0 {
            #[cfg(target_os = "linux")]
            Inner::Kernel(t) => t.tick().await,
            Inner::Tokio(i) => {
                i.tick().await;
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// A monotonic kernel timer that expires every period, registered with the runtime.
    pub struct TimerFd(AsyncFd<OwnedFd>);

    impl TimerFd {
        pub fn every(period: Duration) -> io::Result<Self> {
            // A zero `it_value` would disarm the timer: at least a nanosecond.
            let period = period.max(Duration::from_nanos(1));
            let spec = libc::timespec {
                tv_sec: period.as_secs().try_into().unwrap_or(libc::time_t::MAX),
                tv_nsec: period.subsec_nanos().into(),
            };
            let spec = libc::itimerspec { it_interval: spec, it_value: spec };
            // SAFETY: a system call with no pointer arguments.
            let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just created and nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: `fd` is a timerfd, `spec` outlives the call, and the old value is not asked for.
            if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is open and owned by the `OwnedFd` that the `AsyncFd` keeps until it
            // is dropped, so it stays the same descriptor for as long as it is registered.
            let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
            Ok(TimerFd(registered?))
        }

        pub async fn tick(&mut self) {
            loop {
                let Ok(mut ready) = self.0.readable().await else {
                    // Only when the runtime is shutting down, which ends the caller too.
                    return std::future::pending().await;
                };
                // The number of expirations since the last read: one tick however many there
                // were (missed ticks are skipped).
                let mut expirations = 0u64;
                // SAFETY: reads at most 8 bytes into a u64 that lives across the call.
                let n = unsafe { libc::read(self.0.as_raw_fd(), (&raw mut expirations).cast(), 8) };
                // A read empties the timer, so it is not readable again until it expires again,
                // which the runtime's epoll reports: no read that would block at the next tick.
                ready.clear_ready();
                if n == 8 {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_come_a_period_apart_and_missed_ones_are_skipped() {
        let period = Duration::from_millis(20);
        let mut ticker = Ticker::every(period);
        #[cfg(target_os = "linux")]
        assert!(matches!(ticker.0, Inner::Kernel(_)), "a kernel timer on Linux");
        let start = std::time::Instant::now();
        for _ in 0..3 {
            ticker.tick().await;
        }
        assert!(start.elapsed() >= period * 3, "{:?} for three ticks", start.elapsed());
        // Busy for five periods: one tick at once for all of them, not five in a burst. Of the
        // next three ticks the first may come at any point of the period; the others a period
        // apart.
        std::thread::sleep(period * 5);
        let busy_done = std::time::Instant::now();
        ticker.tick().await;
        assert!(busy_done.elapsed() < period, "the missed ticks count as one, at once");
        let after = std::time::Instant::now();
        for _ in 0..3 {
            ticker.tick().await;
        }
        assert!(after.elapsed() >= period * 2, "no burst of missed ticks: {:?} for three", after.elapsed());
    }
}
