//! What one client, or all of them together, may hold of a node: connections, buffered bytes and
//! time.
//!
//! A node serves whoever can reach its ports, so nothing a client sends may make it hold an
//! unbounded amount of anything. Each listener (the public HTTP port, the RESP port) admits at
//! most `--max-connections` clients; a connection over the bound gets one error line and is
//! closed. Bytes a client sent that the node has not yet turned into a stored value (RESP query
//! buffers, HTTP request bodies being read) are charged to one budget, `--max-client-memory`; a
//! client that would go over it is refused (a quarter of it is kept for connections that hold
//! at most 64 KiB, so a few clients sending large values cannot starve the many that send small
//! ones), and one with a RESP query buffer over
//! `--max-query-buffer` is disconnected. Time is bounded by `--read-timeout` (a request that has
//! started must arrive whole) and `--idle-timeout` (a RESP connection that sends nothing).
//!
//! Well-behaved clients never notice: their commands fit in the initial buffer, so they charge
//! nothing beyond it. Each refusal is counted by reason, in `/metrics` as
//! `dkv_client_refusals_total`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// The bounds, from flags (see `config.rs` for their defaults).
#[derive(Clone, Debug)]
pub struct ClientLimits {
    /// Clients served at once on each listener.
    pub max_connections: usize,
    /// How long a request that has begun may take to arrive whole: an HTTP request's headers
    /// (counted from when the node starts waiting for it, so an idle HTTP/1.1 keep-alive
    /// connection is closed after this long too), an HTTP body, a RESP command.
    pub read_timeout: Duration,
    /// How long a RESP connection may send nothing at all; `None`: forever.
    pub idle_timeout: Option<Duration>,
    /// Largest unparsed input one RESP connection may hold (a pipeline, or one large value).
    pub max_query_buffer: usize,
    /// Largest total of client bytes held across all connections before they are stored.
    pub max_client_memory: usize,
    /// Key operations the RESP pipelines of all connections together run at once (see
    /// [`Guard::pipelined`]).
    pub max_pipelined: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_connections: 10_000,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(300)),
            max_query_buffer: 64 << 20,
            max_client_memory: 1 << 30,
            max_pipelined: 8192,
        }
    }
}

/// Which listener a connection came in on (peers' transport connections arrive on the HTTP
/// port, and are counted apart from its clients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Http,
    Resp,
    Peer,
}

/// Connections refused at once with a word (a `503`, Redis's `max number of clients reached`)
/// and still being answered; past it, the rest are closed without one.
const MAX_REFUSING: usize = 256;

/// Why a client was refused or disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The listener already had `--max-connections` clients.
    Connections,
    /// `--max-client-memory` was used up.
    Memory,
    /// A RESP connection's input went over `--max-query-buffer`.
    QueryBuffer,
    /// A request did not arrive whole within `--read-timeout`.
    ReadTimeout,
    /// A RESP connection sent nothing for `--idle-timeout`.
    Idle,
}

impl Refusal {
    pub const ALL: [Refusal; 5] =
        [Refusal::Connections, Refusal::Memory, Refusal::QueryBuffer, Refusal::ReadTimeout, Refusal::Idle];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::Connections => "connections",
            Refusal::Memory => "memory",
            Refusal::QueryBuffer => "query_buffer",
            Refusal::ReadTimeout => "read_timeout",
            Refusal::Idle => "idle",
        }
    }
}

/// The shared state behind the limits: a connection slot pool per listener, the memory budget
/// and the refusal counts.
pub struct Guard {
    pub limits: ClientLimits,
    http_slots: Arc<Semaphore>,
    resp_slots: Arc<Semaphore>,
    /// Transport connections on the HTTP port, from their first byte: as many as clients may
    /// be, counted apart, so that clients do not crowd the members out, nor connections that
    /// claim to be a member's (a leading zero byte) get round `--max-connections`.
    peer_slots: Arc<Semaphore>,
    /// Refusals being answered (see [`MAX_REFUSING`]).
    refusing: Arc<Semaphore>,
    /// Client bytes charged now, out of `limits.max_client_memory`.
    charged: AtomicUsize,
    refusals: [AtomicU64; Refusal::ALL.len()],
    /// RESP connections admitted since the start (`INFO`'s `total_connections_received`).
    resp_admitted: AtomicU64,
    /// Key operations that RESP pipelines have running now, over every connection, out of
    /// `limits.max_pipelined`.
    pipelined: Semaphore,
    pipelined_peak: AtomicUsize,
}

impl Guard {
    pub fn new(limits: ClientLimits) -> Guard {
        Guard {
            http_slots: Arc::new(Semaphore::new(limits.max_connections)),
            resp_slots: Arc::new(Semaphore::new(limits.max_connections)),
            peer_slots: Arc::new(Semaphore::new(limits.max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            charged: AtomicUsize::new(0),
            refusals: Default::default(),
            resp_admitted: AtomicU64::new(0),
            pipelined: Semaphore::new(limits.max_pipelined),
            pipelined_peak: AtomicUsize::new(0),
            limits,
        }
    }

    /// A slot for one more client on `listener`, held as long as the connection lives; `None`
    /// when the listener is full (the caller counts the refusal: a peer's connection on the
    /// shared port is not one).
    pub fn admit(&self, listener: Listener) -> Option<OwnedSemaphorePermit> {
        let slot = self.slots(listener).clone().try_acquire_owned().ok()?;
        if listener == Listener::Resp {
            self.resp_admitted.fetch_add(1, Ordering::Relaxed);
        }
        Some(slot)
    }

    /// RESP connections admitted since the node started.
    pub fn resp_admitted(&self) -> u64 {
        self.resp_admitted.load(Ordering::Relaxed)
    }

    /// Clients connected now on `listener`.
    pub fn connected(&self, listener: Listener) -> usize {
        self.limits.max_connections - self.slots(listener).available_permits()
    }

    fn slots(&self, listener: Listener) -> &Arc<Semaphore> {
        match listener {
            Listener::Http => &self.http_slots,
            Listener::Resp => &self.resp_slots,
            Listener::Peer => &self.peer_slots,
        }
    }

    /// A place to answer one more refused connection with a word, held while it is answered;
    /// `None` when [`MAX_REFUSING`] are (the caller closes the connection without one).
    pub fn refusing(&self) -> Option<OwnedSemaphorePermit> {
        self.refusing.clone().try_acquire_owned().ok()
    }

    pub fn refused(&self, why: Refusal) {
        self.refusals[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refusals(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL.into_iter().map(|r| (r, self.refusals[r as usize].load(Ordering::Relaxed)))
    }

    /// Room for `operations` more key operations of a RESP pipeline, held until they have
    /// answered; `None` when the node's pipelines run `--max-pipelined` already.
    ///
    /// Each connection runs up to 128 of its pipeline's operations at once (`resp/mod.rs`); one
    /// that finds the node at the bound runs one command at a time until it is under it again
    /// (the first command of each of its batches runs even without a share, so every
    /// connection moves on), and starts no more meanwhile: the rest wait in its input
    /// buffer, within `--max-query-buffer`, and in TCP. Shares go back once the batch is
    /// answered, or before a write of its replies that may wait for the client. Why: a running operation holds a
    /// few kilobytes (its future, its peers' answers) not charged to `--max-client-memory`, and
    /// pipelines abandoned by their clients run to the end, as Redis runs a query buffer it has
    /// read: 1 000 connections that each sent 200 commands and closed without reading took a
    /// node from 196 to 712 MB for 5 s (the soak of 2026-12-07). The default, 8192, is far above
    /// what a benchmark's 64 connections with pipelines of 16 run at once (1 024).
    pub fn pipelined(&self, operations: usize) -> Option<SemaphorePermit<'_>> {
        let share = self.pipelined.try_acquire_many(operations as u32).ok()?;
        let now = self.pipelined_now();
        if now > self.pipelined_peak.load(Ordering::Relaxed) {
            self.pipelined_peak.fetch_max(now, Ordering::Relaxed);
        }
        Some(share)
    }

    /// Key operations of RESP pipelines running now.
    pub fn pipelined_now(&self) -> usize {
        self.limits.max_pipelined - self.pipelined.available_permits()
    }

    /// The most [`Guard::pipelined_now`] has been since the node started.
    pub fn pipelined_peak(&self) -> usize {
        self.pipelined_peak.load(Ordering::Relaxed)
    }

    /// Client bytes held now.
    pub fn charged(&self) -> usize {
        self.charged.load(Ordering::Relaxed)
    }

    /// Take `bytes` more from the budget, or refuse (and count) when that would go over it.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Result<Charge, Refused> {
        let mut held = Charge { guard: self.clone(), bytes: 0 };
        held.grow_to(bytes)?;
        Ok(held)
    }

    /// Count `bytes` the node holds already (a reply waiting for a client to read it): never
    /// refused, since they are there, but counted while they are, so new requests are refused.
    pub fn hold(self: &Arc<Self>, bytes: usize) -> Charge {
        self.charged.fetch_add(bytes, Ordering::AcqRel);
        Charge { guard: self.clone(), bytes }
    }

    /// Take `bytes` for a charge that will then hold `total`. A charge holding more than
    /// [`SMALL_CHARGE`] may only use three quarters of the budget: the rest is kept for small
    /// requests, so clients sending large values cannot crowd out the ones sending small ones.
    fn try_take(&self, bytes: usize, total: usize) -> bool {
        let max = self.limits.max_client_memory;
        let max = if total > SMALL_CHARGE { max / 4 * 3 } else { max };
        self.charged
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |now| now.checked_add(bytes).filter(|n| *n <= max))
            .is_ok()
    }
}

/// A connection holding at most this much is a small client (see [`Guard::try_take`]).
pub const SMALL_CHARGE: usize = 64 * 1024;

/// An answer that waits for its client (RESP replies behind a pipeline's earlier ones, HTTP
/// bodies, scan pages) is charged from this size on. It was [`SMALL_CHARGE`], and what a
/// connection may have in flight at once multiplied it past the budget unseen: 80 RESP
/// connections pipelining GETs of 65 000-byte values and never reading held 1.2 GB, 20 HTTP/2
/// connections with 256 unread streams each 550 MB (found by trying, 2026-12-06). Under it, a
/// RESP connection holds at most 128 × 4 KiB uncharged, an HTTP/2 one 256 × 4 KiB.
pub const CHARGE_FROM: usize = 4 * 1024;

/// The budget was used up; the message says which flag to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// Bytes charged to the budget, given back when dropped.
pub struct Charge {
    guard: Arc<Guard>,
    bytes: usize,
}

impl Charge {
    /// Count `bytes` more that the node holds already, never refused (as [`Guard::hold`]).
    pub fn include(&mut self, bytes: usize) {
        self.guard.charged.fetch_add(bytes, Ordering::AcqRel);
        self.bytes += bytes;
    }

    /// Make this charge `bytes` in total (more or less than now); refused, with nothing changed,
    /// when growing would go over the budget.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), Refused> {
        if bytes == self.bytes {
            return Ok(()); // the shared counter untouched
        }
        if bytes < self.bytes {
            self.guard.charged.fetch_sub(self.bytes - bytes, Ordering::AcqRel);
            self.bytes = bytes;
            return Ok(());
        }
        if !self.guard.try_take(bytes - self.bytes, bytes) {
            self.guard.refused(Refusal::Memory);
            // The size asked for too: "holds 1 MB" alone read as if that were past a 1 GiB limit
            // (found by a hunt, 2026-12-07).
            // Large charges may take three quarters of the budget (`try_take`): said so.
            let limit = match bytes > SMALL_CHARGE {
                true => "the three quarters of its limit that a connection holding over 64 KiB may take",
                false => "its limit",
            };
            return Err(Refused(format!(
                "the node holds {} of client data (values being received or sent), and {} more would pass {limit} \
                 (--max-client-memory {}); retry later",
                human(self.guard.charged()),
                human(bytes - self.bytes),
                human(self.guard.limits.max_client_memory)
            )));
        }
        self.bytes = bytes;
        Ok(())
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.guard.charged.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// `1048576` as `1 MiB`, for error messages that name a flag's value.
pub fn human(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut unit = 0;
    let mut n = bytes;
    while n >= 1024 && n.is_multiple_of(1024) && unit < UNITS.len() - 1 {
        n /= 1024;
        unit += 1;
    }
    format!("{n} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_connections: usize, max_client_memory: usize) -> Arc<Guard> {
        Arc::new(Guard::new(ClientLimits { max_connections, max_client_memory, ..ClientLimits::default() }))
    }

    #[test]
    fn a_listener_admits_up_to_its_bound() {
        let g = guard(2, 1024);
        let a = g.admit(Listener::Http).expect("first");
        let _b = g.admit(Listener::Http).expect("second");
        assert!(g.admit(Listener::Http).is_none(), "third is over the bound");
        assert!(g.admit(Listener::Resp).is_some(), "each listener has its own slots");
        assert_eq!(g.connected(Listener::Http), 2);
        drop(a);
        assert!(g.admit(Listener::Http).is_some(), "a closed connection frees its slot");
    }

    #[test]
    fn charges_share_one_budget_and_are_given_back() {
        let g = guard(10, 1000);
        let mut a = g.charge(600).unwrap();
        assert!(g.charge(500).is_err(), "600 + 500 is over 1000");
        let b = g.charge(400).unwrap();
        assert_eq!(g.charged(), 1000);
        assert!(a.grow_to(601).is_err(), "growing over the budget is refused");
        assert_eq!(a.bytes(), 600, "a refused growth changes nothing");
        a.grow_to(100).unwrap();
        assert_eq!(g.charged(), 500);
        drop(b);
        drop(a);
        assert_eq!(g.charged(), 0);
        let refused = g.refusals().find(|(r, _)| *r == Refusal::Memory).map(|(_, n)| n);
        assert_eq!(refused, Some(2));
    }

    #[test]
    fn large_charges_leave_a_quarter_of_the_budget_to_small_ones() {
        let g = guard(10, 1 << 20);
        let large = g.charge(768 << 10).expect("three quarters");
        assert!(g.charge(SMALL_CHARGE + 1).is_err(), "no more room for large charges");
        let small: Vec<Charge> = (0..4).map(|_| g.charge(SMALL_CHARGE).expect("small ones still fit")).collect();
        assert_eq!(g.charged(), 1 << 20);
        assert!(g.charge(1).is_err(), "the whole budget is used");
        drop((large, small));
        assert_eq!(g.charged(), 0);
    }

    #[test]
    fn sizes_in_messages_use_the_flag_units() {
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(1500), "1500 bytes");
    }
}
