//! Counters shown in `/stats`; relaxed atomics, read without locks.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Default)]
pub struct Counters {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub deletes: AtomicU64,
    /// Public requests this node passed on to the key's coordinator.
    pub forwarded: AtomicU64,
    /// Reads and forwards that asked one more replica because the ones asked were slow.
    pub hedged: AtomicU64,
    /// Client writes stamped again above a newer version a replica held.
    pub restamped: AtomicU64,
    /// Client writes acknowledged though fewer than W of the replicas that applied them held
    /// every earlier write of the key: every replica had answered or failed, or the request
    /// timeout passed, while one that gained the key had not finished its round (see
    /// `replication/votes.rs`). A second fault on top of a membership change gets a write here.
    pub incomplete_acks: AtomicU64,
    /// Reads decided with fewer than R complete answers: every replica had answered or failed,
    /// or the request timeout passed (see `replication/coordinator.rs`). The reads' side of
    /// `incomplete_acks`.
    pub incomplete_reads: AtomicU64,
    /// Client writes refused because their version was too far ahead of this node's clock.
    pub clock_refusals: AtomicU64,
    /// Keys this node handed to new owners (rebalance and leave).
    pub moved_out: AtomicU64,
    /// Key copies this node received through hand-offs or range pulls and did not hold yet (at
    /// that version or newer): what moved in, each key once.
    pub moved_in: AtomicU64,
    /// Hand-off or pull batches that failed and were retried.
    pub move_failures: AtomicU64,
    /// Replicas a read found stale and repaired.
    pub read_repairs: AtomicU64,
    /// Hints delivered to the replica that missed the write.
    pub hints_delivered: AtomicU64,
    /// Entries exchanged by anti-entropy rounds this node started.
    pub repaired_by_sync: AtomicU64,
    /// Peers this node's anti-entropy rounds compared with, and peers its periodic rounds left
    /// out: found equal with this store unchanged since, or left to the lower id of the pair,
    /// which compared lately (`replication/pairs.rs`).
    pub pairs_compared: AtomicU64,
    pub pairs_skipped: AtomicU64,
    /// Values past their deadline that the expiry sweep turned into tombstones.
    pub expired: AtomicU64,
    /// Calls that carried client writes to a replica, and the writes they carried: under load a
    /// call carries many (see `replication/batch.rs`).
    pub write_batches: AtomicU64,
    pub batched_writes: AtomicU64,
    /// Views taken from a peer while the seed could not be reached, and newer ones a peer sent
    /// that did not list this node, left for the seed to say (`life/peer_views.rs`).
    pub peer_views_taken: AtomicU64,
    pub peer_views_not_listing: AtomicU64,
}

pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[derive(Serialize)]
pub struct CountersSnapshot {
    pub gets: u64,
    pub puts: u64,
    pub deletes: u64,
    pub forwarded: u64,
    pub hedged: u64,
    pub restamped: u64,
    pub incomplete_acks: u64,
    pub incomplete_reads: u64,
    pub clock_refusals: u64,
    pub moved_out: u64,
    pub moved_in: u64,
    pub move_failures: u64,
    pub read_repairs: u64,
    pub hints_delivered: u64,
    pub repaired_by_sync: u64,
    pub pairs_compared: u64,
    pub pairs_skipped: u64,
    pub expired: u64,
    pub write_batches: u64,
    pub batched_writes: u64,
    pub peer_views_taken: u64,
    pub peer_views_not_listing: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CountersSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            gets: r(&self.gets),
            puts: r(&self.puts),
            deletes: r(&self.deletes),
            forwarded: r(&self.forwarded),
            hedged: r(&self.hedged),
            restamped: r(&self.restamped),
            incomplete_acks: r(&self.incomplete_acks),
            incomplete_reads: r(&self.incomplete_reads),
            clock_refusals: r(&self.clock_refusals),
            moved_out: r(&self.moved_out),
            moved_in: r(&self.moved_in),
            move_failures: r(&self.move_failures),
            read_repairs: r(&self.read_repairs),
            hints_delivered: r(&self.hints_delivered),
            repaired_by_sync: r(&self.repaired_by_sync),
            pairs_compared: r(&self.pairs_compared),
            pairs_skipped: r(&self.pairs_skipped),
            expired: r(&self.expired),
            write_batches: r(&self.write_batches),
            batched_writes: r(&self.batched_writes),
            peer_views_taken: r(&self.peer_views_taken),
            peer_views_not_listing: r(&self.peer_views_not_listing),
        }
    }
}
