//! Key scans (`SCAN`, `KEYS`, `GET /scan`): every key of the cluster, page by page, through any
//! node.
//!
//! The store of every node is ordered by `(placement hash, key)`, so the whole cluster is one
//! sequence in hash order, cut into the ring's ranges. A scan walks it from hash 0 to `u64::MAX`.
//! Its **cursor is a hash position**: the next page starts with the keys of that hash. A position
//! means the same thing under every membership, so a node joining or leaving between two pages
//! does not move the cursor; the next page simply asks whoever holds that position now.
//!
//! One page, on the node the client asked (the coordinator):
//! 1. take the *span* that starts at the cursor: the run of ring ranges held by the same read
//!    replicas ([`dkv_membership::Topology::read_span`]);
//! 2. ask those replicas for their keys from the cursor to the span's end, about COUNT entries
//!    looked at (a deleted or expired one counts as a sixteenth: [`DEAD_PER_LIVE`]) and at most
//!    about [`BATCH_BYTES`] read; each answers keys with versions, tombstones included, up to a hash
//!    boundary ([`local_page`]); the same quorum rule as a read decides
//!    how many answers are enough (R settled ones, otherwise all: see `coordinator.rs`);
//! 3. merge them ([`merge`]): only up to the smallest position every replica reached, newest
//!    version of each key wins, deleted and expired keys are left out;
//! 4. go on with the next span until COUNT entries were looked at, the page holds
//!    [`MAX_PAGE_BYTES`] of keys, or [`PAGE_TIME`] passed; answer the keys and the position
//!    reached, `0` once the walk passed `u64::MAX`.
//!
//! Every request carries the coordinator's epoch. A replica with a newer view refuses (its ranges
//! may have moved), and so does one whose view changed while it scanned; the coordinator then
//! refreshes its view and asks the span's holders again. A replica drops a key it handed off only
//! under a view newer than the one it answered under, so no answer misses a key because of a move.
//!
//! **The guarantee**, as Redis's `SCAN`: a key present from the start of a scan to its end is
//! returned at least once, also when nodes join or leave meanwhile. A key written or deleted
//! during the scan may or may not be. Keys come in hash order, not sorted; two keys with the same
//! 64-bit hash always come in one page, so a page never ends inside a hash and never repeats one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dkv_membership::{NodeId, Topology};
use dkv_placement::key_hash;
use dkv_storage::{Cursor, Engine, Entry, KeyVersion, StorageResult, Version};

use crate::error::{NodeError, PeerError};
use crate::life::state::Node;
use crate::replication::coordinator::complete_enough;
use crate::replication::glob::{self, Glob};
use crate::replication::quorum::{quorum, Enough, Weight};
use crate::transport::wire::{KeyFilter, Kind, ScanEntry, ScanReply, ScanRequest, BATCH_BYTES, STATUS_STALE_EPOCH};

/// Most entries one page looks at (`COUNT` above it is taken as this).
pub const MAX_COUNT: usize = 10_000;
/// A page stops taking spans once it holds this many bytes of keys.
pub const MAX_PAGE_BYTES: usize = 4 << 20;
/// A page stops taking spans after this long, so a scan of a sparse or empty keyspace still
/// answers promptly (with few keys and a cursor).
pub const PAGE_TIME: Duration = Duration::from_millis(200);
/// Times a span is asked again, each after refreshing the view, before the page fails.
const ATTEMPTS: usize = 3;

/// What a front end gets: keys in hash order, and where the next page starts (`0`: done).
#[derive(Debug, Default)]
pub struct ScanPage {
    pub keys: Vec<Bytes>,
    pub cursor: u64,
}

/// A [`KeyFilter`], compiled.
pub struct Filter {
    prefix: Bytes,
    glob: Option<Glob>,
}

impl Filter {
    pub fn new(f: &KeyFilter) -> Filter {
        let glob = f.pattern.as_deref().map(Glob::new).filter(|g| !g.is_everything());
        Filter { prefix: f.prefix.clone(), glob }
    }

    pub fn matches(&self, key: &[u8]) -> bool {
        self.matches_counting(key, &mut 0)
    }

    /// [`matches`](Self::matches), adding the pattern's steps to `steps`.
    pub fn matches_counting(&self, key: &[u8], steps: &mut u64) -> bool {
        key.starts_with(&self.prefix) && self.glob.as_ref().is_none_or(|g| g.matches_counting(key, steps))
    }
}

/// Whether a stored entry is a key a client can see: not a tombstone, not past its deadline.
pub fn is_live(entry: &Entry, now_ms: u64) -> bool {
    entry.live_value(now_ms).is_some()
}

/// This node's page of `req` (see [`ScanRequest`]): every entry from hash `req.from` up to a
/// hash boundary, blocking (callers run it off the runtime).
pub fn local_page(engine: &dyn Engine, req: &ScanRequest, now_ms: u64) -> StorageResult<ScanReply> {
    let filter = Filter::new(&req.filter);
    // Keys are never empty, so (from, "") is just before every key of hash `from`.
    let start = (req.from > 0).then(|| Cursor { hash: req.from, key: Bytes::new() });
    let (limit, max_bytes) = ((req.limit as usize).max(1), (req.max_bytes as usize).max(1));
    // Keys and versions alone: no value is copied (the byte bound still counts the values).
    let mut found: Vec<KeyVersion> = Vec::new();
    let mut all = |_| true;
    // Batches of `limit` entries while the page's weight (a live entry DEAD_PER_LIVE, a
    // deleted or expired one 1) is under `limit` live entries' (see DEAD_PER_LIVE), all of them
    // within the one byte bound: keys, values and what each entry takes in the answer. The
    // entry that brings the weight to `limit` live entries' ends the page, within its batch: a
    // second batch read whole after one of 99 live keys and a tombstone held 199 live keys for
    // a COUNT of 100 (found by a hunt, 2026-12-07).
    let (budget, mut weight, mut from, mut bytes_left) = (limit * DEAD_PER_LIVE, 0, start, max_bytes);
    let mut stopped = None;
    for _ in 0..DEAD_PER_LIVE {
        let before = found.len();
        stopped = engine.scan_keys(from.as_ref(), req.end, limit, bytes_left, &mut all, &mut found)?;
        let read = found.len() - before;
        let full = found[before..].iter().position(|kv| {
            weight += weigh(kv, now_ms);
            weight >= budget
        });
        if let Some(last) = full.map(|i| before + i).filter(|last| last + 1 < found.len()) {
            found.truncate(last + 1);
            stopped = Some(Cursor { hash: found[last].hash, key: found[last].key.clone() });
        }
        let took: usize = found[before..].iter().map(|kv| kv.key.len() + kv.value_len + ENTRY_OVERHEAD).sum();
        bytes_left = bytes_left.saturating_sub(took);
        // Ended by the byte bound (fewer than `limit`, more to come), or it is spent.
        let on_bytes = read < limit || bytes_left == 0;
        if stopped.is_none() || full.is_some() || on_bytes {
            break;
        }
        from = stopped.clone();
    }
    let next = match stopped {
        None => None,
        Some(c) => {
            // End on a hash boundary: the rest of the keys that share the last hash (a 64-bit
            // collision, almost never more than the one key).
            engine.scan_keys(Some(&c), c.hash, usize::MAX, usize::MAX, &mut all, &mut found)?;
            (c.hash < req.end).then(|| c.hash + 1)
        }
    };
    // Matching a pattern costs up to the key's length times the pattern's (8 million steps for
    // an 8 KiB key and a pattern of 1 024): a page that has spent its steps ends at the next
    // hash boundary, and the next page starts there.
    let (mut steps, mut next, mut weight) = (0u64, next, 0);
    let mut entries = Vec::new();
    for (i, kv) in found.iter().enumerate() {
        if steps > MATCH_STEPS_PER_PAGE && i > 0 && kv.hash != found[i - 1].hash {
            next = Some(kv.hash);
            break;
        }
        weight += weigh(kv, now_ms);
        if filter.matches_counting(&kv.key, &mut steps) {
            entries.push(ScanEntry { live: kv.is_live_at(now_ms), version: kv.version, key: kv.key.clone() });
        }
    }
    // Entries looked at, a deleted one counted as a fraction of a live one.
    let looked = weight.div_ceil(DEAD_PER_LIVE);
    Ok(ScanReply { entries, next, looked: looked as u32, settled: false })
}

/// How many deleted or expired entries a page looks at in place of one live entry. Tombstones
/// stay for `--tombstone-grace` (a day by default), and each counted as a key towards COUNT:
/// after 50 000 keys were deleted, a `SCAN` of the 10 left took 5 577 calls where Redis took
/// 155, and redis-py's `scan_iter` over 3 nodes 3.6 s (found by a hunt, 2026-12-07). Looking at
/// a tombstone costs a key's bytes and no value, so a page looks at up to this many times
/// COUNT entries when they are all tombstones, in batches of COUNT, stopping once their weight
/// reaches COUNT live ones: a page of live keys costs what it did.
const DEAD_PER_LIVE: usize = 16;

/// About what a [`ScanEntry`] takes in an answer besides its key: its version and flag, and the
/// key's length.
const ENTRY_OVERHEAD: usize = 16;

/// What `kv` weighs towards a page's COUNT, in sixteenths of a live entry.
fn weigh(kv: &KeyVersion, now_ms: u64) -> usize {
    match kv.is_live_at(now_ms) {
        true => DEAD_PER_LIVE,
        false => 1,
    }
}

/// Pattern steps after which a replica's page ends (about a tenth of a second of matching).
const MATCH_STEPS_PER_PAGE: u64 = 100_000_000;

/// The replicas' pages of one span, merged: the live keys in hash order up to the smallest
/// position every replica reached (`None`: all of them reached the span's end), with the most
/// entries any one of them looked at.
pub fn merge(answers: &[ScanReply]) -> (Vec<Bytes>, Option<u64>, usize) {
    let stop = answers.iter().filter_map(|a| a.next).min();
    let mut newest: BTreeMap<(u64, &Bytes), (Version, bool)> = BTreeMap::new();
    for a in answers {
        for e in &a.entries {
            let hash = key_hash(&e.key);
            if stop.is_some_and(|s| hash >= s) {
                break; // pages are in hash order: the rest is past `stop` too
            }
            let seen = newest.entry((hash, &e.key)).or_insert((e.version, e.live));
            if e.version > seen.0 {
                *seen = (e.version, e.live);
            }
        }
    }
    let keys = newest.into_iter().filter(|(_, (_, live))| *live).map(|((_, k), _)| k.clone()).collect();
    let looked = answers.iter().map(|a| a.looked as usize).max().unwrap_or(0);
    (keys, stop, looked)
}

/// A pattern short enough to match with (see [`glob::MAX_PATTERN_CHARS`]).
fn check_pattern(pattern: Option<&[u8]>) -> Result<(), NodeError> {
    match pattern {
        Some(p) if !glob::pattern_fits(p) => Err(NodeError::BadRequest(format!(
            "pattern longer than {} characters: match on a shorter one",
            glob::MAX_PATTERN_CHARS
        ))),
        _ => Ok(()),
    }
}

/// One span's part of a page.
struct Step {
    keys: Vec<Bytes>,
    /// Where the next step starts; `None`: past `u64::MAX`, the scan is done.
    next: Option<u64>,
    looked: usize,
}

/// Local scan pages a node serves at once ([`Inner::scans`](crate::life::state::Inner::scans)).
pub const SCANS_AT_ONCE: usize = 4;

/// Whether a cluster whose members counted `counted` keys (their copies over N, as `DBSIZE`)
/// holds more than `limit` for sure: over half again as many. The count runs high while data
/// moves (old owners keep their copies until their hand-off ends: a fourth more in a join of
/// one node to three), so a count near the limit is walked, and refused by what the walk finds.
fn surely_over(counted: u64, limit: usize) -> bool {
    counted > (limit as u64).saturating_mul(3) / 2
}

impl Node {
    /// One page of a scan from hash position `cursor` (`0`: the start): about `count` entries
    /// looked at, the keys among them that pass `filter`. See the module doc.
    pub async fn scan(&self, cursor: u64, count: usize, filter: &KeyFilter) -> Result<ScanPage, NodeError> {
        check_pattern(filter.pattern.as_deref())?;
        self.lease_held()?;
        let count = count.clamp(1, MAX_COUNT);
        let started = Instant::now();
        let mut page = ScanPage::default();
        let (mut pos, mut looked, mut bytes) = (cursor, 0, 0);
        loop {
            let step = self.scan_span(pos, count - looked, filter).await?;
            looked += step.looked;
            bytes += step.keys.iter().map(Bytes::len).sum::<usize>();
            page.keys.extend(step.keys);
            let Some(next) = step.next else { return Ok(page) };
            pos = next;
            if looked >= count || bytes >= MAX_PAGE_BYTES || started.elapsed() >= PAGE_TIME {
                page.cursor = pos;
                return Ok(page);
            }
        }
    }

    /// Every live key that matches `pattern`, for `KEYS`: refused once the cluster turns out to
    /// hold more than `limit` keys, whatever the pattern, since the whole keyspace is walked.
    /// Refused at once when the members' own counts (`counted`, if they all answered) say the
    /// cluster holds well over `limit`: a refusal used to walk `limit` keys first, and 300 `KEYS`
    /// at once on a cluster of 123 000 keys took a node to 945 MB and 189 threads for 10 s, and
    /// cost it its lease (found by a hunt, 2026-12-07).
    pub async fn all_keys(&self, pattern: &[u8], limit: usize, counted: Option<u64>) -> Result<Vec<Bytes>, NodeError> {
        check_pattern(Some(pattern))?;
        let too_many = || {
            NodeError::TooLarge(format!(
                "KEYS is refused on a cluster of more than {limit} keys (--keys-limit): it walks every key; \
                 use SCAN with MATCH, page by page"
            ))
        };
        if counted.is_some_and(|n| surely_over(n, limit)) {
            return Err(too_many());
        }
        let glob = Glob::new(pattern);
        let (mut cursor, mut seen, mut out) = (0, 0usize, Vec::new());
        // The keys gathered are charged to --max-client-memory as they come, up to 80 MB at
        // `--keys-limit` 10 000 and keys of 8 KiB, held by no budget before (2026-12-07).
        let (mut charge, mut bytes) = (self.guard.charge(0).map_err(|r| NodeError::Unavailable(r.0))?, 0);
        loop {
            let page = self.scan(cursor, MAX_COUNT, &KeyFilter::default()).await?;
            seen += page.keys.len();
            if seen > limit {
                return Err(too_many());
            }
            let first = out.len();
            out.extend(page.keys.into_iter().filter(|k| glob.matches(k)));
            bytes += out[first..].iter().map(|k| k.len()).sum::<usize>();
            charge.grow_to(bytes).map_err(|r| NodeError::Unavailable(r.0))?;
            if page.cursor == 0 {
                return Ok(out);
            }
            cursor = page.cursor;
        }
    }

    /// The keys of the span that starts at `from`, from its read replicas, merged.
    async fn scan_span(&self, from: u64, limit: usize, filter: &KeyFilter) -> Result<Step, NodeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let topo = self.topology();
            let (replicas, end) = topo.read_span(from);
            if replicas.is_empty() {
                return Err(NodeError::Unavailable("no node holds keys: the cluster has no serving members".into()));
            }
            let req = ScanRequest {
                epoch: topo.epoch(),
                from,
                end,
                limit: limit.min(MAX_COUNT) as u32,
                max_bytes: BATCH_BYTES as u32,
                filter: filter.clone(),
            };
            // As a read: R complete answers when R + W > N, else as many complete answers as
            // meet every write quorum (N − W + 1), else every replica's.
            let needed = self.config.read_quorum.clamp(1, replicas.len());
            let enough = Enough {
                decisive: needed,
                complete: complete_enough(needed, self.config.write_quorum, replicas.len()),
            };
            let call = |id| self.tasks.track_future(self.clone().scan_on(topo.clone(), id, req.clone()));
            let decisive = |a: &ScanReply| match a.settled {
                true if enough.complete <= needed => Weight::Decides,
                true => Weight::Complete,
                false => Weight::Weak,
            };
            match quorum(&replicas, enough, self.config.request_timeout, decisive, call).await {
                Ok(answers) => {
                    let answers: Vec<ScanReply> = answers.into_iter().map(|(_, a)| a).collect();
                    let (keys, stop, looked) = merge(&answers);
                    let next = match stop {
                        Some(h) => Some(h),
                        None => end.checked_add(1),
                    };
                    return Ok(Step { keys, next, looked });
                }
                // A replica's view moved on, or one left or died: ask whoever holds the span now.
                // Replicas that only let the time run out are asked again only if the view
                // changed meanwhile: each attempt waits the whole request timeout, and a scan
                // with two of three replicas paused failed after three of them, 15 s, where every
                // other request failed after 5 (found by trying, 2026-12-06).
                Err(error) if attempt < ATTEMPTS => {
                    tracing::debug!("scan of span from {from}: {error}; refreshing the view");
                    self.refresh().await;
                    let timed_out = error.failures.iter().all(|(_, f)| matches!(f, PeerError::Timeout { .. }));
                    if timed_out && self.epoch() == topo.epoch() {
                        return Err(NodeError::Quorum { what: "scan failed".into(), error });
                    }
                }
                Err(error) => return Err(NodeError::Quorum { what: "scan failed".into(), error }),
            }
        }
    }

    /// One replica's page (this node's own, when it is one).
    async fn scan_on(self, topo: Arc<Topology>, id: NodeId, req: ScanRequest) -> Result<ScanReply, PeerError> {
        if id == self.me {
            return self.serve_scan_in_turn(&req).await;
        }
        let addr = self.addr_of(&topo, id)?;
        self.peers.call(addr, Kind::Scan, &req).await
    }

    /// [`Node::serve_scan`], once a turn is free: a page is a blocking walk of the store on a
    /// thread of its own, so at most [`SCANS_AT_ONCE`] run at once, the others waiting up to
    /// `--request-timeout`, the asker's own deadline (the transport does not tell a replica that
    /// its asker gave up: a page past it would be walked for nobody).
    pub async fn serve_scan_in_turn(&self, req: &ScanRequest) -> Result<ScanReply, PeerError> {
        let within = self.config.request_timeout;
        let Ok(turn) = tokio::time::timeout(within, self.scans.acquire()).await else {
            return Err(PeerError::Refused {
                addr: self.addr.clone(),
                status: 503,
                message: format!(
                    "this node is busy with {SCANS_AT_ONCE} scan pages, and this one waited --request-timeout \
                     {within:?} for its turn; retry"
                ),
            });
        };
        let _turn = turn.expect("the scan turns are never closed");
        self.serve_scan(req)
    }

    /// Answer a scan page of `req` from this node's store, if its view is still the one the
    /// request was planned with, before and after the scan (see the module doc).
    pub fn serve_scan(&self, req: &ScanRequest) -> Result<ScanReply, PeerError> {
        let moved = |mine: u64| PeerError::Refused {
            addr: self.addr.clone(),
            status: STATUS_STALE_EPOCH,
            message: format!("the view changed (epoch {} to {mine}) while scanning; refresh and retry", req.epoch),
        };
        let epoch = self.epoch();
        if epoch != req.epoch {
            return Err(moved(epoch));
        }
        if let Err(e) = check_pattern(req.filter.pattern.as_deref()) {
            return Err(PeerError::Refused { addr: self.addr.clone(), status: 400, message: e.to_string() });
        }
        let settled = self.settled();
        let now_ms = self.cluster_wall_ms();
        let page = tokio::task::block_in_place(|| local_page(&*self.engine, req, now_ms));
        let mut page =
            page.map_err(|e| PeerError::Refused { addr: self.addr.clone(), status: 500, message: e.to_string() })?;
        let epoch = self.epoch();
        if epoch != req.epoch {
            return Err(moved(epoch));
        }
        page.settled = settled;
        Ok(page)
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
