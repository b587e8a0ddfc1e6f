//! Expiry: values with a deadline, and the sweep that reclaims them once it has passed.
//!
//! A deadline is an absolute time, milliseconds since the Unix epoch, fixed when the write is
//! made (`SET … EX 10` becomes "now + 10 s" on the clock of the node the client asked) and
//! stored in the versioned entry (`dkv_storage::Entry::expires`). So it is part of the write:
//! every replica, hint, repair, anti-entropy exchange and range move carries the same deadline
//! with the same version, and `EXPIRE` or `PERSIST` is a new write, with a new version, of the
//! same value and another deadline.
//!
//! **Reads never return an expired value**, whatever the sweep has done: the coordinator judges
//! the newest version it received by its own wall clock (`coordinator.rs`), and a node that
//! passed a read on to a replica judges the answer again by its own (`front/service.rs`).
//! **The sweep** then reclaims the space: a background pass over the local store, a bounded page per tick, that
//! turns each value past its deadline into a tombstone of the *same* version that keeps the
//! deadline ([`dkv_storage::Engine::expire`]). Same version, because a plain removal would let a replica
//! that missed the write that set the deadline (it still holds an older value without one) hand
//! that older value back through anti-entropy or a hint; the tombstone beats it as the value
//! did. Its grace period counts from the deadline, as a delete's counts from the delete, and
//! then it is purged like one.
//!
//! **Anti-entropy** digests versions, not values, so a replica holding the expired value and one
//! holding its tombstone agree: nothing flaps between them, and each side's sweep makes the same
//! tombstone. An exchange between them for other reasons applies "newer version wins", and equal
//! versions change nothing.
//!
//! **Clocks.** Each node judges deadlines by its wall clock, and the cluster keeps clocks
//! within `--max-clock-offset` of each other (500 ms by default, `life/clock.rs`): through
//! different nodes, a key can read as expired up to that much earlier or later, and `TTL`
//! differs by as much. A node whose clock is beyond the bound (it coordinates no writes then)
//! judges deadlines by the cluster's clock instead, its own less the offset it measured
//! (`Node::cluster_wall_ms`): a node whose clock jumped a day ahead neither destroys its copies
//! of every value with a TTL with its sweep nor reads them as expired.

use std::time::Duration;

use dkv_storage::Cursor;
use tokio::sync::watch;

use crate::life::state::Node;
use crate::life::stats::add;

/// Time between two pages of the sweep.
const TICK: Duration = Duration::from_millis(100);
/// Time between two passes. A store that fits in one page is looked at once a second rather
/// than ten times: an idle node's wake-ups are what a large cluster of them spends its CPU on.
const PASS_PAUSE: Duration = Duration::from_secs(1);
/// How long a store that holds nothing with a deadline waits for one before it looks again. A
/// value with a deadline stored through `apply_local` wakes it at once; this bounds the wait
/// should one arrive another way.
const IDLE_PAUSE: Duration = Duration::from_secs(60);
/// Entries looked at per page: at most 20 480 a second, so a pass over a million keys takes
/// under a minute at a small, steady cost (the page copies no values).
const PER_TICK: usize = 2048;

/// The latest deadline a write may carry: deadlines and TTLs stay within a signed 64-bit count of
/// milliseconds, as Redis's do (its `PEXPIRETIME` and `PTTL` are signed).
pub const MAX_DEADLINE_MS: u64 = i64::MAX as u64;

/// The deadline `ttl_ms` after `now_ms`, or `None` past [`MAX_DEADLINE_MS`].
pub fn deadline_after(now_ms: u64, ttl_ms: u64) -> Option<u64> {
    now_ms.checked_add(ttl_ms).filter(|&t| t <= MAX_DEADLINE_MS)
}

/// Milliseconds left until `deadline` at `now_ms` (0 once it has passed).
pub fn ms_left(deadline: u64, now_ms: u64) -> u64 {
    deadline.saturating_sub(now_ms)
}

/// Run one page of the sweep after `cursor` at `now_ms` (blocking: a scan); returns where the
/// next page starts, `None` after the last one (the next pass starts over).
pub fn sweep_page(node: &Node, cursor: Option<&Cursor>, now_ms: u64) -> Option<Cursor> {
    match node.engine.expire(cursor, PER_TICK, now_ms) {
        Ok(page) => {
            add(&node.stats.expired, page.expired);
            page.next
        }
        Err(e) => {
            tracing::error!("expiry sweep failed: {e}");
            None
        }
    }
}

/// Sweep the store page by page until `stop`.
pub async fn expiry_loop(node: Node, mut stop: watch::Receiver<bool>) {
    let mut cursor = None;
    loop {
        if cursor.is_none() && node.engine.stats().expiring == 0 {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = node.expiring_stored.notified() => {}
                _ = tokio::time::sleep(IDLE_PAUSE) => {}
            }
        }
        let pause = if cursor.is_some() { TICK } else { PASS_PAUSE };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(pause) => {}
        }
        if cursor.is_none() && node.engine.stats().expiring == 0 {
            continue; // no value has a deadline: no pass
        }
        // By the cluster's clock: a node whose own is a year ahead would expire every value.
        let now = node.cluster_wall_ms();
        cursor = tokio::task::block_in_place(|| sweep_page(&node, cursor.as_ref(), now));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use dkv_membership::NodeState;
    use dkv_storage::{Entry, Version};

    use super::*;
    use crate::testing;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_turns_expired_values_into_tombstones_of_their_version() {
        let nodes = testing::cluster(&[NodeState::Normal], testing::config()).await;
        let a = &nodes[0];
        let v = Version { ts: 5, node: 1 };
        for i in 0..5000u64 {
            let deadline = if i % 2 == 0 { 1_000 } else { 9_000 };
            let e = Entry::expiring(v, Bytes::from_static(b"x"), Some(deadline));
            testing::put_local(a, format!("k{i}").as_bytes(), e);
        }
        testing::put_local(a, b"forever", Entry::value(v, Bytes::from_static(b"y")));
        let mut cursor = sweep_page(a, None, 5_000);
        let mut pages = 1;
        while cursor.is_some() {
            cursor = sweep_page(a, cursor.as_ref(), 5_000);
            pages += 1;
        }
        assert_eq!(pages, 5001usize.div_ceil(PER_TICK), "bounded pages");
        assert_eq!(a.stats.snapshot().expired, 2500);
        assert_eq!(testing::local(a, b"k0"), Some(Entry { version: v, value: None, expires: Some(1_000) }));
        assert_eq!(testing::local(a, b"k1").and_then(|e| e.value), Some(Bytes::from_static(b"x")));
        assert!(testing::local(a, b"forever").is_some_and(|e| e.value.is_some()));
        let s = a.engine.stats();
        assert_eq!((s.keys, s.tombstones, s.expiring), (2501, 2500, 2500));
    }

    /// Three replicas of a key that expired: one still holds the value (not swept yet), one its
    /// tombstone, one an older value without a deadline (it missed the write that set it). Reads
    /// find nothing; anti-entropy gives the third the tombstone, never the old value back to the
    /// others, and the first two, which agree on the version, exchange nothing and stay as they are
    /// until the sweep makes them identical.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_of_an_expired_key_converge_without_flapping_or_resurrection() {
        let normal = [NodeState::Normal; 3];
        let nodes = testing::cluster(&normal, testing::config()).await;
        let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
        let now = a.hlc.wall_ms();
        let set = Version { ts: dkv_storage::Hlc::ts_at_ms(now - 2_000), node: 1 };
        let older = Version { ts: set.ts - 1, node: 2 };
        let expired = Entry::expiring(set, Bytes::from_static(b"v"), Some(now - 1_000));
        testing::put_local(a, b"k", expired.clone());
        testing::put_local(b, b"k", expired.clone().expired());
        testing::put_local(c, b"k", Entry::value(older, Bytes::from_static(b"old")));
        for n in [a, b, c] {
            assert_eq!(
                n.coordinate_read::<dkv_storage::Entry>(
                    Bytes::from_static(b"k"),
                    Some(crate::replication::consistency::Level::All)
                )
                .await
                .unwrap(),
                None
            );
        }
        for _ in 0..2 {
            let r = crate::replication::antientropy::round(a, true).await;
            assert_eq!(r.failed, 0, "{r:?}");
            let r = crate::replication::antientropy::round(b, true).await;
            assert_eq!(r.failed, 0, "{r:?}");
        }
        assert_eq!(testing::local(a, b"k"), Some(expired.clone()), "equal versions: nothing exchanged");
        assert_eq!(testing::local(b, b"k"), Some(expired.clone().expired()));
        assert_eq!(testing::local(c, b"k"), Some(expired.clone().expired()), "the tombstone beat the old value");
        let again = crate::replication::antientropy::round(a, true).await;
        assert_eq!((again.failed, again.buckets), (0, 0), "in agreement: {again:?}");
        sweep_page(a, None, a.hlc.wall_ms());
        assert_eq!(testing::local(a, b"k"), Some(expired.expired()));
    }
}
