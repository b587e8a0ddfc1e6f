//! `GET /metrics`: Prometheus text format (prometheus-client).
//!
//! Two kinds of figures. Request counts and latencies are recorded as requests finish, in
//! families kept for the life of the node. Everything that is already counted elsewhere — keys and
//! bytes stored, hints, data moved, repairs, the membership epoch — is read at scrape time from
//! the engine, the hint store and `stats.rs`, so there is one source for each number and nothing
//! to keep in step.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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

fn latency_histogram() -> Histogram {
    // 50 µs to ~3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

#[derive(Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    /// The same requests since the last heartbeat, for its report (see `load.rs`).
    pub(crate) window: std::sync::Arc<crate::life::load::Window>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            window: Default::default(),
        }
    }
}

impl Metrics {
    /// One finished key request: its outcome (an HTTP status; RESP maps onto the same ones) and
    /// how long it took.
    pub fn observe(&self, api: Api, op: Op, status: u16, took: Duration) {
        self.requests.get_or_create(&RequestLabels { api, op, status }).inc();
        self.latency.get_or_create(&OpLabels { api, op }).observe(took.as_secs_f64());
        self.window.observe(took);
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
    for (listener, name) in [(Listener::Http, "http"), (Listener::Resp, "resp")] {
        connected.get_or_create(&ListenerLabel { listener: name }).set(guard.connected(listener) as i64);
    }
    r.register("client_connections", "Client connections open, by listener", connected);
    r.register(
        "client_buffered_bytes",
        "Client data held before it is stored (RESP input buffers, HTTP bodies being read)",
        ConstGauge::new(guard.charged() as i64),
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
    r.register("requests", "Key requests served, by API, operation and status", node.metrics.requests.clone());
    r.register("request_duration_seconds", "Time to answer a key request", node.metrics.latency.clone());
    let s = node.stats.snapshot();
    let hints = node.hints.stats();
    let counters = [
        ("forwarded", "Requests passed on to a replica of the key", s.forwarded),
        ("restamped_writes", "Client writes stamped again above a newer version a replica held", s.restamped),
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
            "Oldest hints dropped to keep pending hints under their byte bound; anti-entropy repairs them",
            hints.evicted,
        ),
        ("anti_entropy_entries", "Entries exchanged by anti-entropy rounds this node started", s.repaired_by_sync),
        ("expired", "Values past their deadline turned into tombstones by the expiry sweep", s.expired),
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
        ("hints_dropped", "Hints dropped (store full or too old); anti-entropy repairs them", hints.dropped as i64),
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
