//! `GET /metrics`: Prometheus text format (prometheus-client).
//!
//! Two kinds of figures. Request counts and latencies are recorded as requests finish, in plain
//! atomics indexed by API, operation and status (and latency bucket): recording a request is a
//! few relaxed additions, with no lock and no hashing. (prometheus-client's `Family` takes a lock
//! and hashes the labels on every request: 3% of the CPU of a pipelined RESP SET.) They become
//! Prometheus families at scrape time. Everything that is already counted elsewhere — keys and
//! bytes stored, hints, data moved, repairs, the membership epoch — is read at scrape time from
//! the engine, the hint store and `stats.rs`, so there is one source for each number and nothing
//! to keep in step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::front::limits::{Guard, Listener};
use crate::life::state::Node;
use crate::transport::wire::Op;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Api {
    Http,
    Resp,
}

/// Label values in lower case, as Prometheus users write them.
macro_rules! lower_label {
    ($t:ty, $($v:ident => $s:literal),*) => {
        impl EncodeLabelValue for $t {
            fn encode(&self, e: &mut LabelValueEncoder) -> std::fmt::Result {
                use std::fmt::Write;
                e.write_str(match self { $(Self::$v => $s),* })
            }
        }
    };
}
lower_label!(Api, Http => "http", Resp => "resp");
lower_label!(Op, Get => "get", Put => "put", Delete => "delete");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: Api,
    op: Op,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    api: Api,
    op: Op,
}

const APIS: [Api; 2] = [Api::Http, Api::Resp];
const OPS: [Op; 3] = [Op::Get, Op::Put, Op::Delete];
/// Statuses are counted from 100 to 599; anything else (none is answered) counts as 599.
const STATUSES: std::ops::RangeInclusive<u16> = 100..=599;
/// Upper bounds of the latency buckets: 50 µs doubling 17 times (to about 3.3 s), then +Inf.
const LATENCY_BUCKETS: usize = 18;

fn bucket_bound(i: usize) -> f64 {
    if i + 1 == LATENCY_BUCKETS {
        f64::INFINITY
    } else {
        0.000_05 * f64::from(1u32 << i)
    }
}

/// The latency bucket of `took`: the first whose bound it does not exceed.
fn latency_bucket(took: Duration) -> usize {
    let units = took.as_nanos().div_ceil(50_000); // in 50 µs
    match units {
        0 | 1 => 0,
        n => ((128 - (n - 1).leading_zeros()) as usize).min(LATENCY_BUCKETS - 1),
    }
}

fn index(api: Api, op: Op) -> usize {
    let a = APIS.iter().position(|&x| x == api).expect("every API is listed");
    let o = OPS.iter().position(|&x| x == op).expect("every operation is listed");
    a * OPS.len() + o
}

/// One (API, operation)'s latencies.
#[derive(Debug, Default)]
struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

#[derive(Debug)]
struct Recorded {
    /// By `index(api, op)`, then status from 100.
    requests: Vec<[AtomicU64; 500]>,
    latency: Vec<Latency>,
}

#[derive(Clone)]
pub struct Metrics {
    recorded: Arc<Recorded>,
    /// The same requests since the last heartbeat, for its report (see `load.rs`).
    pub(crate) window: std::sync::Arc<crate::life::load::Window>,
}

impl Default for Metrics {
    fn default() -> Self {
        let pairs = APIS.len() * OPS.len();
        let recorded = Recorded {
            requests: (0..pairs).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect(),
            latency: (0..pairs).map(|_| Latency::default()).collect(),
        };
        Metrics { recorded: Arc::new(recorded), window: Default::default() }
    }
}

/// When a key request began, for its latency: the monotonic clock in nanoseconds, read
/// directly. Each request reads it twice; with `Instant::now` and `elapsed`, std's checked
/// conversions and its `Duration` subtraction cost about 150 instructions a request besides
/// the clock reads themselves. A one-node RESP `GET` went from 4 715 to 4 661 instructions in
/// all (`bench/resp-instructions.sh get`).
#[derive(Clone, Copy, Debug)]
pub struct Started(u64);

impl Started {
    pub fn now() -> Started {
        Started(monotonic_ns())
    }

    pub fn elapsed(self) -> Duration {
        Duration::from_nanos(monotonic_ns().saturating_sub(self.0))
    }
}

fn monotonic_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a timespec the call may write; CLOCK_MONOTONIC exists on every Linux, and
    // the call cannot fail with a valid clock and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

impl Metrics {
    /// One finished key request: its outcome (an HTTP status; RESP maps onto the same ones) and
    /// how long it took.
    pub fn observe(&self, api: Api, op: Op, status: u16, took: Duration) {
        let i = index(api, op);
        let status = status.clamp(*STATUSES.start(), *STATUSES.end()) - STATUSES.start();
        self.recorded.requests[i][status as usize].fetch_add(1, Ordering::Relaxed);
        let l = &self.recorded.latency[i];
        l.buckets[latency_bucket(took)].fetch_add(1, Ordering::Relaxed);
        l.count.fetch_add(1, Ordering::Relaxed);
        l.sum_ns.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.window.observe(took);
    }

    /// The request counts, as a family by API, operation and status.
    fn requests(&self) -> Family<RequestLabels, Counter> {
        let family: Family<RequestLabels, Counter> = Family::default();
        for (api, op) in APIS.iter().flat_map(|&a| OPS.iter().map(move |&o| (a, o))) {
            for (status, n) in STATUSES.zip(&self.recorded.requests[index(api, op)]) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    family.get_or_create(&RequestLabels { api, op, status }).inc_by(n);
                }
            }
        }
        family
    }
}

/// The latency histograms at scrape time, by API and operation.
#[derive(Debug)]
struct Latencies(Arc<Recorded>);

impl EncodeMetric for Latencies {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        for (api, op) in APIS.iter().flat_map(|&a| OPS.iter().map(move |&o| (a, o))) {
            let l = &self.0.latency[index(api, op)];
            let count = l.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let buckets: Vec<(f64, u64)> =
                l.buckets.iter().enumerate().map(|(i, b)| (bucket_bound(i), b.load(Ordering::Relaxed))).collect();
            let sum = l.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            encoder.encode_family(&OpLabels { api, op })?.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

/// Clients refused or disconnected by a limit, connections open, client bytes held.
fn client_limits(r: &mut Registry, guard: &Guard) {
    let refusals: Family<ReasonLabel, Counter> = Family::default();
    for (why, n) in guard.refusals() {
        refusals.get_or_create(&ReasonLabel { reason: why.name() }).inc_by(n);
    }
    r.register("client_refusals", "Clients refused or disconnected by a limit, by reason", refusals);
    let connected: Family<ListenerLabel, Gauge> = Family::default();
    for (listener, name) in [(Listener::Http, "http"), (Listener::Resp, "resp"), (Listener::Peer, "peer")] {
        connected.get_or_create(&ListenerLabel { listener: name }).set(guard.connected(listener) as i64);
    }
    r.register("client_connections", "Client connections open, by listener", connected);
    r.register(
        "client_buffered_bytes",
        "Client data held before it is stored (RESP input buffers, HTTP bodies being read)",
        ConstGauge::new(guard.charged() as i64),
    );
    r.register(
        "resp_pipelined_operations",
        "Key operations of RESP pipelines holding a share of --max-pipelined now, over every connection",
        ConstGauge::new(guard.pipelined_now() as i64),
    );
    r.register(
        "resp_pipelined_operations_peak",
        "The most key operations of RESP pipelines that held a share of --max-pipelined at once since the node started",
        ConstGauge::new(guard.pipelined_peak() as i64),
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    api: Api,
    reason: &'static str,
}

/// Clients refused for their password (see `front/auth.rs`), by API and reason.
fn auth_failures(r: &mut Registry, auth: &crate::front::auth::Auth) {
    let failures: Family<AuthLabels, Counter> = Family::default();
    for (api, why, n) in auth.failures() {
        failures.get_or_create(&AuthLabels { api, reason: why.name() }).inc_by(n);
    }
    r.register("auth_failures", "Client requests refused for a missing, wrong or read-only password", failures);
}

/// The whole exposition, as `GET /metrics` answers it.
pub fn render(node: &Node) -> String {
    let mut r = Registry::with_prefix("dkv");
    r.register("requests", "Key requests served, by API, operation and status", node.metrics.requests());
    r.register("request_duration_seconds", "Time to answer a key request", Latencies(node.metrics.recorded.clone()));
    let s = node.stats.snapshot();
    let hints = node.hints.stats();
    let counters = [
        ("forwarded", "Reads passed on to a replica of the key (writes are never forwarded)", s.forwarded),
        ("restamped_writes", "Client writes stamped again above a newer version a replica held", s.restamped),
        (
            "incomplete_acks",
            "Client writes acknowledged though fewer than W of the replicas that applied them were complete for the key",
            s.incomplete_acks,
        ),
        (
            "incomplete_reads",
            "Reads decided with fewer than R answers from replicas complete for the key",
            s.incomplete_reads,
        ),
        (
            "clock_refusals",
            "Client writes refused: their version was too far ahead of this node's clock",
            s.clock_refusals,
        ),
        ("hedged_requests", "Reads and forwards that also asked another replica because the first was slow", s.hedged),
        ("moved_in", "Key copies received through hand-offs and range pulls (join, leave, rebalance) that this node did not hold yet", s.moved_in),
        ("moved_out", "Keys handed to their new owners", s.moved_out),
        ("move_failures", "Hand-off or pull batches that failed and were retried", s.move_failures),
        ("read_repairs", "Stale replicas repaired by reads", s.read_repairs),
        ("hints_delivered", "Hinted writes delivered to the replica that missed them", s.hints_delivered),
        (
            "hints_evicted",
            "Oldest hints dropped to keep pending hints under their bounds (count, bytes); anti-entropy repairs them",
            hints.evicted,
        ),
        ("anti_entropy_entries", "Entries exchanged by anti-entropy rounds this node started", s.repaired_by_sync),
        ("anti_entropy_pairs_compared", "Peers anti-entropy rounds of this node compared with", s.pairs_compared),
        (
            "anti_entropy_pairs_skipped",
            "Peers anti-entropy rounds left out: found equal with this store unchanged since, or left to the lower id of the pair",
            s.pairs_skipped,
        ),
        ("expired", "Values past their deadline turned into tombstones by the expiry sweep", s.expired),
        ("replica_write_batches", "Calls that carried client writes to a replica", s.write_batches),
        ("replica_batched_writes", "Client writes those calls carried (several per call under load)", s.batched_writes),
    ];
    for (name, help, v) in counters {
        r.register(name, help, ConstCounter::new(v));
    }
    let e = node.engine.stats();
    let topo = node.topology();
    let gauges = [
        ("keys", "Live key copies stored on this node", e.keys as i64),
        ("stored_bytes", "Bytes of live keys and values stored on this node", e.bytes as i64),
        ("tombstones", "Deletes remembered until their grace period ends", e.tombstones as i64),
        ("expiring_keys", "Live key copies on this node that have a deadline", e.expiring as i64),
        ("hints_pending", "Writes kept for replicas that missed them", hints.pending as i64),
        ("hints_pending_bytes", "Key and value bytes of the writes kept for replicas", hints.bytes as i64),
        (
            "hints_dropped",
            "Hints dropped: too old, or one alone over the byte bound; anti-entropy repairs them",
            hints.dropped as i64,
        ),
        ("membership_epoch", "Epoch of the membership view this node uses", topo.epoch() as i64),
        ("members", "Members in this node's view", topo.view.nodes.len() as i64),
    ];
    for (name, help, v) in gauges {
        r.register(name, help, ConstGauge::new(v));
    }
    let clock = node.offsets.estimate(std::time::Instant::now());
    r.register(
        "clock_offset_seconds",
        "This node's clock minus the median member's, measured every heartbeat interval",
        ConstGauge::<f64>::new(clock.offset_ms as f64 / 1000.0),
    );
    client_limits(&mut r, &node.guard);
    auth_failures(&mut r, &node.auth);
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &r).expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        for micros in [0, 1, 50, 51, 100, 101, 199, 200, 201, 1_000, 3_276_800, 3_276_801, 60_000_000] {
            let took = Duration::from_micros(micros);
            let b = latency_bucket(took);
            assert!(took.as_secs_f64() <= bucket_bound(b) + 1e-12, "{micros} µs in bucket {b}");
            assert!(b == 0 || took.as_secs_f64() > bucket_bound(b - 1) + 1e-12, "{micros} µs: not an earlier bucket");
        }
    }

    #[test]
    fn a_request_is_timed_on_the_monotonic_clock() {
        let (started, from_std) = (Started::now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(5));
        let (took, std_took) = (started.elapsed(), from_std.elapsed());
        assert!(took >= Duration::from_millis(5), "{took:?}");
        assert!(took <= std_took + Duration::from_millis(1), "{took:?} against std's {std_took:?}");
    }

    #[test]
    fn recorded_requests_render_as_prometheus_families() {
        let m = Metrics::default();
        m.observe(Api::Resp, Op::Put, 204, Duration::from_micros(70));
        m.observe(Api::Resp, Op::Put, 204, Duration::from_millis(2));
        m.observe(Api::Http, Op::Get, 404, Duration::from_micros(10));
        let mut r = Registry::with_prefix("dkv");
        r.register("requests", "help", m.requests());
        r.register("request_duration_seconds", "help", Latencies(m.recorded.clone()));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        for line in [
            r#"dkv_requests_total{api="resp",op="put",status="204"} 2"#,
            r#"dkv_requests_total{api="http",op="get",status="404"} 1"#,
            r#"dkv_request_duration_seconds_count{api="resp",op="put"} 2"#,
            r#"dkv_request_duration_seconds_bucket{api="resp",op="put",le="0.0001"} 1"#,
            r#"dkv_request_duration_seconds_bucket{api="resp",op="put",le="+Inf"} 2"#,
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
    }
}
