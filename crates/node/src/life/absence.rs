//! A durable member the seed expired, back after an absence longer than `--tombstone-grace`,
//! drops its old store before it copies its ranges again.
//!
//! Why: a delete leaves a tombstone that beats the older value on every replica, and tombstones
//! are purged once past the grace (`replication/antientropy/mod.rs`). The purge waits for every
//! member that shares keys with the node, so a replica that is down but still a member gets the
//! tombstones first. A replica the seed *expired* does not hold the purge back: its ranges went
//! to the others, which copied them from the remaining replicas. Back after the grace with its
//! data directory, it held the old values of keys deleted meanwhile, and no tombstone was left
//! anywhere to beat them: its join kept them beside what it copied, and anti-entropy and read
//! repair gave them back to the others (200 of 200 deleted keys in the hunt of 2026-12-07).
//!
//! The seed registers such a member as `joining` (it missed every write since it was expired),
//! and its join copies every key of its ranges from their holders. What its old store adds to
//! that copy is only what the holders no longer have: deletes they let go of. So a node that its
//! saved view lists as a member, that the seed registers as `joining` (or, leaving when it
//! stopped, no longer lists: it then hands its keys off), and that was last in service longer
//! ago than the grace less two anti-entropy intervals (a delete it missed in its last interval
//! reached it by a round only) drops its store first ([`stale`]; `life/server.rs`, emptied at
//! once by `Local::empty_store`). "A member by its saved view", not "`normal`": the view it
//! saved names it `joining` from the moment it registered, and a stop in the middle of the drop
//! must not keep the rest. Its acknowledged writes are on the other replicas (W ≥ 2; a joining
//! node's copy never counts towards W); its own hints, kept apart from the store, are
//! delivered as before. With one copy of each key (`--replication 1`), or writes acknowledged
//! by one replica (`--write-quorum 1`), the store may be the only copy of a write, and is kept.
//!
//! A running node the seed expired while it was paused for longer than that, and sends back to
//! `joining` when it heartbeats again, empties its store the same way ([`empty_if_stale`]),
//! durable or not.
//!
//! When it was last in service is recorded, in memory and in the data directory ([`Service`],
//! `service.json`), as soon as the node is a settled member (serving, and through an
//! anti-entropy round with every peer under the current view) that heard from the seed within
//! two heartbeats, and every [`period`] after: the time, by the cluster's clock, at which the
//! last heartbeat that the seed answered as to a member was sent (not the time of recording: a
//! VM suspended past the grace does not advance the monotonic clock, and on waking it has
//! "heard" the seed a moment ago until its next heartbeat learns that it was expired). A
//! node with no record (it never settled, or its directory comes from a release before the
//! record) counts from its newest write ([`newest_write_ms`]). An absence shorter than that
//! keeps the store: no tombstone of a delete made after it left can have been purged yet.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dkv_storage::{Cursor, Engine, KeyVersion};
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::life::state::Node;

/// What a durable node records of its service (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Service {
    /// When this node was last a settled member, by the cluster's clock (ms since the Unix epoch;
    /// 0: never recorded).
    pub in_service_ms: u64,
}

/// Whether a returning member's old store may hold values whose deletes were purged while it
/// was away, pure: out of service since `record` for longer than the grace less two
/// anti-entropy intervals, counted from `now_ms` by this node's clock, which may be
/// `max_clock_offset` behind the cluster's.
pub fn stale(
    record: &Service,
    now_ms: u64,
    grace: Duration,
    anti_entropy: Duration,
    max_clock_offset: Duration,
) -> bool {
    let ms = |d: Duration| d.as_millis() as u64;
    let away = (now_ms + ms(max_clock_offset)).saturating_sub(record.in_service_ms);
    // Never under half the grace: intervals as long as the grace would make every absence one.
    away > ms(grace).saturating_sub(2 * ms(anti_entropy)).max(ms(grace) / 2)
}

/// How often a settled node records that it is in service: often enough that an absence
/// counted from the record is not much longer than the real one.
pub fn period(grace: Duration) -> Duration {
    (grace / 8).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// When this node was last a settled member (by the cluster's clock, ms), and whether it is
/// emptying a stale store now (its anti-entropy answers are refused meanwhile,
/// `transport/internal.rs`, so its old values reach no one).
#[derive(Debug, Default)]
pub struct Absence {
    in_service_ms: AtomicU64,
    /// When the last heartbeat that the seed answered as to a member was sent, by the cluster's
    /// clock (ms).
    seed_heard_ms: AtomicU64,
    emptying: AtomicBool,
}

impl Absence {
    pub fn in_service(&self, ms: u64) {
        self.in_service_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The seed answered, as to a member, a heartbeat sent at `ms` (the cluster's clock).
    pub fn heard_from_seed(&self, ms: u64) {
        self.seed_heard_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn emptying(&self) -> bool {
        self.emptying.load(Ordering::Acquire)
    }
}

/// Record, as soon as this node is a settled member that hears from the seed, and every
/// [`period`] after, when it last was: in memory (for [`empty_if_stale`]), and in a data directory's `service.json`. Looked at
/// every heartbeat interval.
pub async fn service_loop(node: Node, mut stop: watch::Receiver<bool>) {
    let every = period(node.config.tombstone_grace);
    let look = every.min(node.config.heartbeat_interval);
    let mut recorded: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(look) => {}
        }
        // Settled, and heard from the seed within two heartbeats: a node that wakes from a
        // pause still thinks itself settled until its next heartbeat says it was expired.
        let heard =
            node.lease.unheard(std::time::Instant::now()).is_some_and(|d| d <= 2 * node.config.heartbeat_interval);
        if !node.settled() || !heard {
            continue;
        }
        // In service until the last heartbeat the seed answered as to a member was sent, not
        // until now: a suspended VM's monotonic clock stands still, so on waking it has "heard"
        // the seed a moment ago, and would record itself in service across the suspension
        // before its next heartbeat learns that it was expired.
        let heard_ms = node.absence.seed_heard_ms.load(Ordering::Relaxed);
        if heard_ms == 0 {
            continue;
        }
        let record = Service { in_service_ms: node.cluster_wall_ms().min(heard_ms) };
        node.absence.in_service(record.in_service_ms);
        if node.local.is_none() || recorded.is_some_and(|at| at.elapsed() < every) {
            continue;
        }
        recorded = Some(tokio::time::Instant::now());
        let node = node.clone();
        let _ = tokio::task::spawn_blocking(move || node.local.as_ref().map(|l| l.save_service(&record))).await;
    }
}

/// What to do with the store of a member back after an absence (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not away long enough for a delete it missed to be purged, or nothing to drop.
    Keep,
    /// Away too long, but with `--replication 1` or `--write-quorum 1` the store may hold the
    /// only copy of writes it acknowledged.
    KeepOnlyCopy { away: Duration },
    /// Away too long: empty it; its join copies its ranges from their holders.
    Empty { away: Duration },
}

/// The verdict on a store of `keys` keys, last in service at `record`, at `now_ms` by this
/// node's clock, pure.
pub fn verdict(config: &NodeConfig, record: &Service, now_ms: u64, keys: u64) -> Verdict {
    let (grace, interval) = (config.tombstone_grace, config.anti_entropy_interval);
    if keys == 0 || !stale(record, now_ms, grace, interval, config.max_clock_offset) {
        return Verdict::Keep;
    }
    let away = Duration::from_millis(now_ms.saturating_sub(record.in_service_ms));
    match config.replicas < 2 || config.write_quorum < 2 {
        true => Verdict::KeepOnlyCopy { away },
        false => Verdict::Empty { away },
    }
}

/// What a [`judge`]ment logs: why the node is judged, what its record counts from, and what it
/// does once its store is emptied.
pub struct Context {
    /// "the seed expired it".
    pub cause: &'static str,
    /// "was last in service", or "took its last write" (no record).
    pub since: &'static str,
    /// "it copies its ranges from the other replicas".
    pub then: &'static str,
}

/// [`verdict`], logged: true when the store is to be emptied.
pub fn judge(config: &NodeConfig, record: &Service, now_ms: u64, keys: u64, context: &Context) -> bool {
    let Context { cause, since, then } = context;
    let why = |away: Duration| {
        format!(
            "{cause}: this node {since} {}s ago, more than --tombstone-grace less two --anti-entropy-interval, and \
             its store may hold values of keys deleted meanwhile, whose tombstones are purged",
            away.as_secs()
        )
    };
    match verdict(config, record, now_ms, keys) {
        Verdict::Keep => false,
        Verdict::KeepOnlyCopy { away } => {
            tracing::warn!(
                keys,
                "{}, and they may come back; kept, as with --replication 1 or --write-quorum 1 it may hold the only \
                 copy of writes it acknowledged",
                why(away)
            );
            false
        }
        Verdict::Empty { away } => {
            tracing::warn!(keys, "{}. Emptying it; {then}", why(away));
            true
        }
    }
}

/// A running node the seed sent back to `joining`: when it was last in service longer ago than
/// the grace allows (paused past it, say), empty its store before its join copies its ranges,
/// as a durable one does at its start (`life/server.rs`), in memory or not. One a restarted seed
/// made `normal` alone, and sent back when members that hold data returned, was in service
/// until then, and keeps what it took meanwhile. Key by key (the store is in use): its
/// anti-entropy and range answers are refused until it is done, and its rebalance waits
/// (`movement.rs`). A write that lands meanwhile stays if it lands after the scan passed its
/// key, and is removed with the rest if before: its complete replicas hold it, and the join
/// copies it back.
pub async fn empty_if_stale(node: &Node) {
    let record = Service { in_service_ms: node.absence.in_service_ms.load(Ordering::Relaxed) };
    let keys = node.engine.stats().keys;
    let context = Context {
        cause: "the seed sent this node back to joining",
        since: "was last in service",
        then: "it copies its ranges from the other replicas",
    };
    if !judge(&node.config, &record, node.hlc.wall_ms(), keys, &context) {
        return;
    }
    node.absence.emptying.store(true, Ordering::Release);
    let engine = node.engine.clone();
    match tokio::task::spawn_blocking(move || drop_store(&*engine)).await {
        Ok(Ok(dropped)) => tracing::info!(dropped, "emptied the stale store"),
        Ok(Err(e)) => tracing::error!("emptying the stale store: {e}"),
        Err(e) => tracing::error!("emptying the stale store: {e}"),
    }
    node.absence.emptying.store(false, Ordering::Release);
}

/// When `engine`'s newest entry was written (ms since the Unix epoch; 0 for an empty store): for
/// a node with no record of its service.
pub fn newest_write_ms(engine: &dyn Engine) -> dkv_storage::StorageResult<u64> {
    let mut newest = 0;
    let mut cursor: Option<Cursor> = None;
    loop {
        let mut page = Vec::new();
        let next = engine.scan_versions(cursor.as_ref(), u64::MAX, 4096, &mut page)?;
        newest = page.iter().map(|(_, v)| v.ts).fold(newest, u64::max);
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(dkv_storage::Hlc::ms_of(newest)),
        }
    }
}

/// Remove every entry of `engine`, page by page; how many. About 7 µs an entry on the durable
/// engine (300 000 in 2.2 s on this VM): only where the store cannot be emptied at once.
pub fn drop_store(engine: &dyn Engine) -> dkv_storage::StorageResult<u64> {
    let mut dropped = 0;
    let mut cursor: Option<Cursor> = None;
    loop {
        let mut page: Vec<KeyVersion> = Vec::new();
        let next = engine.scan_keys(cursor.as_ref(), u64::MAX, 4096, usize::MAX, &mut |_| true, &mut page)?;
        for kv in page {
            dropped += u64::from(engine.remove_if(kv.hash, &kv.key, kv.version)?);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    engine.sync()?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);
    const MINUTE: Duration = Duration::from_secs(60);
    const T: u64 = 1_000_000_000_000;

    #[test]
    fn a_store_is_stale_after_an_absence_of_the_grace_less_two_intervals_and_the_clock_offset() {
        let record = Service { in_service_ms: T };
        let edge = T + 86_400_000 - 120_000 - 500;
        let offset = Duration::from_millis(500);
        assert!(!stale(&record, edge, DAY, MINUTE, offset));
        assert!(stale(&record, edge + 1, DAY, MINUTE, offset));
        assert!(!stale(&record, T + 1000, DAY, MINUTE, offset), "a restart");
        assert!(stale(&Service::default(), T, DAY, MINUTE, offset), "never recorded: away since ever");
        let second = Duration::from_secs(1);
        assert!(!stale(&record, T, second, MINUTE, offset), "intervals longer than the grace: half of it");
        assert!(stale(&record, T + 1, second, MINUTE, offset));
    }

    #[test]
    fn a_stale_store_is_emptied_only_where_other_replicas_hold_its_acknowledged_writes() {
        let config = |replicas, write_quorum| NodeConfig {
            replicas,
            write_quorum,
            tombstone_grace: DAY,
            anti_entropy_interval: MINUTE,
            max_clock_offset: Duration::from_millis(500),
            ..NodeConfig::default()
        };
        let record = Service { in_service_ms: T };
        let later = T + 2 * 86_400_000;
        let away = Duration::from_millis(later - T);
        assert_eq!(verdict(&config(3, 2), &record, later, 5), Verdict::Empty { away });
        assert_eq!(verdict(&config(3, 2), &record, later, 0), Verdict::Keep, "nothing to drop");
        assert_eq!(verdict(&config(3, 2), &record, T + 60_000, 5), Verdict::Keep, "a restart");
        assert_eq!(verdict(&config(1, 1), &record, later, 5), Verdict::KeepOnlyCopy { away });
        assert_eq!(verdict(&config(3, 1), &record, later, 5), Verdict::KeepOnlyCopy { away });
        let context = Context { cause: "expired", since: "was last in service", then: "it copies its ranges" };
        assert!(judge(&config(3, 2), &record, later, 5, &context));
        assert!(!judge(&config(3, 1), &record, later, 5, &context));
    }

    #[test]
    fn the_newest_write_of_a_store() {
        let engine = dkv_storage::MemoryEngine::new();
        assert_eq!(newest_write_ms(&engine).unwrap(), 0);
        for (i, ms) in [T - 5, T, T - 9].into_iter().enumerate() {
            let version = dkv_storage::Version { ts: dkv_storage::Hlc::ts_at_ms(ms), node: 1 };
            let key = format!("k{i}");
            let entry = dkv_storage::Entry::value(version, bytes::Bytes::from("v"));
            engine.apply(dkv_placement::key_hash(key.as_bytes()), key.as_bytes(), entry).unwrap();
        }
        assert_eq!(newest_write_ms(&engine).unwrap(), T);
    }

    #[test]
    fn dropping_a_store_leaves_nothing() {
        let engine = dkv_storage::MemoryEngine::new();
        for i in 0..10_000u64 {
            let key = format!("k{i}");
            let entry = dkv_storage::Entry::value(dkv_storage::Version { ts: i + 1, node: 1 }, bytes::Bytes::from("v"));
            engine.apply(dkv_placement::key_hash(key.as_bytes()), key.as_bytes(), entry).unwrap();
        }
        assert_eq!(drop_store(&engine).unwrap(), 10_000);
        assert_eq!(engine.stats().keys, 0);
    }
}
