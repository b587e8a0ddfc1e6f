//! HTTP routes of the seed (DESIGN §3).

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::Request;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dkv_membership::api::{
    HeartbeatAnswer, IdRequest, LeaveRequest, RegisterRequest, RemoveRequest, SeedHealth, SECRET_HEADER, SEED_HEADER,
};
use dkv_membership::clocks::ClockCensus;
use dkv_membership::compact::Compact;
use dkv_membership::{Registry, RegistryError};
use dkv_transport::secret_matches;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::format::{self, Format};
use crate::record::Record;
use crate::recorder::Recorder;

#[derive(Clone, Debug)]
pub struct SeedConfig {
    /// A member unseen for this long is removed from the membership.
    pub node_ttl: Duration,
    /// When set, register/heartbeat/ready/leave/remove require it in the `x-dkv-secret` header.
    pub cluster_secret: Option<String>,
    /// Name of the cluster; nodes registering with another name are refused (409).
    pub cluster_name: String,
    /// Connections open at once, HTTP and transport together; more are refused (`503` over
    /// HTTP, a goodbye over the transport).
    pub max_connections: usize,
    /// The seed's certificates, when its port speaks only TLS (`tls.rs`).
    pub tls: Option<std::sync::Arc<dyn crate::SeedTls>>,
    /// Where the seed keeps its record of the membership (`record.rs`); none: its state is
    /// soft.
    pub data_dir: Option<std::path::PathBuf>,
    /// How long an HTTP connection's read or write may wait without moving a byte before the
    /// connection is closed (a half-sent request, an idle keep-alive connection, an answer not
    /// read).
    pub read_timeout: Duration,
    /// This seed starts a new cluster (`--new-cluster`): the first new node to register is its
    /// first member at once. Without it, a seed without `--data-dir` may have restarted under a
    /// live cluster, and a new node waits until a member has come back or a TTL has passed (see
    /// the registry). A `--data-dir` without a record in it starts a new cluster too.
    pub new_cluster: bool,
}

impl SeedConfig {
    /// The default of `--max-connections`: two per member (its heartbeat line and an HTTP
    /// connection) of a cluster of 10 000.
    pub const MAX_CONNECTIONS: usize = 20_000;
    /// The default of `--read-timeout`, as on the nodes.
    pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
}

#[derive(Clone)]
pub(crate) struct Seed {
    registry: Arc<Mutex<Registry>>,
    /// Members removed for missing their heartbeats, since start.
    expired: Arc<std::sync::atomic::AtomicU64>,
    /// Members past the TTL that the last expiry pass kept, because two or more members were
    /// quiet at once (see [`dkv_membership::Expiry`]); 0 when it kept none.
    withheld: Arc<std::sync::atomic::AtomicU64>,
    /// What each member reported with its last heartbeat: key copies, clock offset, requests,
    /// hints, data movements (for the dashboard only; bounded, see `Load::bounded`).
    reports: Arc<Mutex<std::collections::HashMap<dkv_membership::NodeId, IdRequest>>>,
    /// The ring as the dashboard draws it, for the view of this epoch and digest.
    drawing: Arc<crate::dashboard::Cache>,
    /// Heartbeats answered, by what they carried and in which encoding (see [`Told`]).
    heartbeats: Arc<[std::sync::atomic::AtomicU64; Told::ALL.len() * Via::ALL.len()]>,
    /// The members' readings of this seed's clock, and the cluster's clock from them.
    clocks: Arc<Mutex<ClockCensus>>,
    /// The writer of the record of the membership, with `--data-dir`.
    record: Option<Arc<Recorder>>,
}

/// What a heartbeat answer carried of the membership.
#[derive(Clone, Copy)]
enum Told {
    Unchanged = 0,
    Changes = 1,
    View = 2,
}

impl Told {
    const ALL: [(Told, &'static str); 3] =
        [(Told::Unchanged, "unchanged"), (Told::Changes, "changes"), (Told::View, "view")];

    fn of(answer: &dkv_membership::api::HeartbeatAnswer) -> Told {
        match (&answer.nodes, &answer.changes) {
            (Some(_), _) => Told::View,
            (None, Some(_)) => Told::Changes,
            (None, None) => Told::Unchanged,
        }
    }

    /// Its counter in [`Seed::heartbeats`].
    fn slot(self, via: Via) -> usize {
        self as usize * Via::ALL.len() + via as usize
    }
}

/// How a heartbeat came: over HTTP in either encoding, or over the transport (`transport.rs`).
#[derive(Clone, Copy)]
pub(crate) enum Via {
    Json = 0,
    Compact = 1,
    Transport = 2,
}

impl Via {
    const ALL: [(Via, &'static str); 3] =
        [(Via::Json, "json"), (Via::Compact, "compact"), (Via::Transport, "transport")];
}

/// How long the seed reuses the cluster's clock before it takes the median again (see
/// [`ClockCensus`]).
const CLOCK_MEDIAN_EVERY_MS: u64 = 250;

/// The seed's clock, in ms since the Unix epoch: the wall clock as read at the first call, moved
/// on by the monotonic clock since, so never stepped. Every time the seed keeps is on it: when
/// members were last heard from, and the clock it gives them to measure theirs against. The
/// wall clock stepped (NTP, an operator, a restored VM) expired every member at once or none for
/// as long as the step, and moved each member's reading of the seed while the median of their
/// earlier ones stayed: every member took itself to be off by the step, refused writes, and
/// counted deadlines by it, so its expiry sweep ended every value due within the step (found by
/// reading, 2026-12-06). How far the seed's clock is from true time matters to nobody: members
/// measure themselves against the median of their clocks, not the seed's
/// (`dkv_membership::clocks`).
fn now_ms() -> u64 {
    static START: OnceLock<(Instant, u64)> = OnceLock::new();
    let (at, wall) = *START.get_or_init(|| {
        (Instant::now(), SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
    });
    wall.saturating_add(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
}

impl Seed {
    fn new(config: &SeedConfig) -> Seed {
        let ttl_ms = config.node_ttl.as_millis() as u64;
        let seed = Seed {
            expired: Arc::default(),
            withheld: Arc::default(),
            reports: Arc::default(),
            drawing: Arc::default(),
            heartbeats: Arc::default(),
            clocks: Arc::new(Mutex::new(ClockCensus::new(ttl_ms, CLOCK_MEDIAN_EVERY_MS))),
            registry: Arc::new(Mutex::new(Registry::new(now_ms(), ttl_ms).for_cluster(&config.cluster_name))),
            record: None,
        };
        if !config.new_cluster {
            seed.locked(Registry::hold_new_nodes_while_fresh);
        }
        seed
    }

    /// A seed with its record of the membership, started from the view recorded there (see
    /// `record.rs`); without `--data-dir`, [`Seed::new`].
    fn open(config: &SeedConfig) -> Result<Seed, String> {
        let mut seed = Seed::new(config);
        let Some(path) = &config.data_dir else { return Ok(seed) };
        let (record, view) = Record::open(path, &config.cluster_name)?;
        if view.is_none() && !record.recorded_before() {
            // A data directory in which no member was ever recorded: this seed starts a new
            // cluster.
            seed.locked(Registry::start_a_new_cluster);
        } else if view.is_none() {
            tracing::warn!(
                "{} is gone, though a membership was recorded in {}: the seed rebuilds it from the members' views \
                 as a seed without --data-dir does, holding new nodes back for its first TTL; to start a new \
                 cluster instead, give it an empty directory",
                record.file().display(),
                path.display()
            );
        }
        if let Some(view) = view {
            seed.locked(|r| r.restore(&view, now_ms()))
                .0
                .map_err(|e| format!("{}: {e}; remove it to start afresh", record.file().display()))?;
            let normal = view.nodes.iter().filter(|m| m.state == dkv_membership::NodeState::Normal).count();
            tracing::info!(
                epoch = view.epoch,
                members = view.nodes.len(),
                normal,
                "membership restored from {}: each member has a TTL from now to come back",
                record.file().display()
            );
        }
        let recorder = Recorder::start(record, &seed.registry)
            .map_err(|e| format!("starting the writer of the membership record: {e}"))?;
        seed.record = Some(Arc::new(recorder));
        Ok(seed)
    }

    /// Run `f` on the registry; with a record, return once the record covers the view `f` saw
    /// or left, so before any answer drawn from it leaves (see `recorder.rs`).
    async fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let (out, changes) = self.locked(f);
        if let Some(record) = &self.record {
            record.covered(changes).await;
        }
        out
    }

    /// Run `f` on the registry, and count what it changed for the record: what `f` returns and
    /// the changes the record must cover before an answer drawn from it may leave. Only
    /// [`Seed::with`] may answer with what this returns.
    fn locked<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> (T, u64) {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut r);
        if let Some((recorded, held)) = r.take_dropped_record() {
            tracing::error!(
                recorded,
                held,
                "a member holds the view of epoch {held}, newer than this seed's record of the membership (epoch \
                 {recorded}): the record is older than the cluster (a backup put back, an old volume), so the seed \
                 dropped it and rebuilds the membership from the members' own views, as a seed without --data-dir does"
            );
        }
        let changes = self.record.as_ref().map_or(0, |record| record.notice(&r));
        (out, changes)
    }
}

pub fn router(config: &SeedConfig) -> (Router, impl Future<Output = ()> + Send + 'static) {
    let seed = Seed::new(config);
    (routes(seed.clone(), config), expire_loop(seed, config.node_ttl))
}

fn routes(seed: Seed, config: &SeedConfig) -> Router {
    let secret: Option<Arc<str>> = config.cluster_secret.as_deref().map(Arc::from);
    Router::new()
        .route("/register", post(register))
        .route("/heartbeat", post(heartbeat))
        .route("/ready", post(ready))
        .route("/leave", post(leave))
        .route("/leave/withdraw", post(withdraw_leave))
        .route("/remove", post(remove))
        .route_layer(middleware::from_fn_with_state(secret, require_secret))
        .route_layer(middleware::from_fn(require_member))
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/nodes", get(nodes))
        .route("/metrics", get(metrics))
        .route("/dashboard.json", get(dashboard_json))
        .route("/openapi.json", get(crate::openapi::serve))
        // On the seed's own paths only: `/get?key=a` got "no query parameters", not the 404 that
        // says keys go through a node (found by a hunt, 2026-12-07).
        .route_layer(middleware::from_fn(no_query))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(declared_too_large))
        .method_not_allowed_fallback(wrong_method)
        .fallback(unknown_path)
        .layer(middleware::map_response(sign))
        .with_state(seed)
}

/// Serve the seed on `listener` until `shutdown` completes: HTTP, and heartbeats over the binary
/// transport on the same port (`transport.rs`).
pub async fn run(
    config: SeedConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let seed = Seed::open(&config).map_err(std::io::Error::other)?;
    let app = routes(seed.clone(), &config);
    let expirer = tokio::spawn(expire_loop(seed.clone(), config.node_ttl));
    tracing::info!(addr = %listener.local_addr()?, ttl = ?config.node_ttl, "seed listening");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let http = crate::transport::split(seed, &config, listener, stop.clone())?;
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    tokio::spawn(shutdown);
    crate::serve::serve(app, http, stop).await;
    expirer.abort();
    Ok(())
}

/// Every answer says it comes from the seed, so a client pointed here instead of at a node can
/// tell the user (`dkv get --node <seed>` would otherwise read the seed's 404 as "key not found").
async fn sign(mut answer: Response) -> Response {
    answer.headers_mut().insert(SEED_HEADER, header::HeaderValue::from_static(env!("CARGO_PKG_VERSION")));
    answer
}

/// No endpoint of the seed takes query parameters: one given is refused, as a node refuses the
/// ones its endpoints do not take, rather than ignored (`GET /nodes?x=1` was answered as
/// `/nodes`, found by trying, 2026-12-06).
async fn no_query(req: Request, next: Next) -> Response {
    match req.uri().query().filter(|q| !q.is_empty()) {
        None => next.run(req).await,
        Some(q) => {
            let q: String = q.chars().take(200).map(|c| if c.is_control() { '?' } else { c }).collect();
            (StatusCode::BAD_REQUEST, format!("the seed's endpoints take no query parameters; got {q:?}\n"))
                .into_response()
        }
    }
}

async fn unknown_path(uri: axum::http::Uri) -> Response {
    let text = format!(
        "no such path {} on the seed: it serves GET /, /health, /nodes, /dashboard.json, /metrics, /openapi.json \
         and POST /register, /heartbeat, /ready, /leave, /leave/withdraw, /remove; keys are read and written through a node (GET /nodes lists them)\n",
        uri.path()
    );
    (StatusCode::NOT_FOUND, text).into_response()
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let right = if ["/register", "/heartbeat", "/ready", "/leave", "/leave/withdraw", "/remove"].contains(&path) {
        "POST"
    } else {
        "GET"
    };
    (StatusCode::METHOD_NOT_ALLOWED, format!("method {method} not allowed on {path} of the seed: use {right}\n"))
        .into_response()
}

/// Membership changes only from holders of the cluster secret, when one is configured.
async fn require_secret(State(secret): State<Option<Arc<str>>>, req: Request, next: Next) -> Response {
    let given = req.headers().get(SECRET_HEADER).map(|v| v.as_bytes());
    if secret_matches(secret.as_deref(), given) {
        return next.run(req).await;
    }
    forbidden(
        req,
        "missing or wrong cluster secret: nodes need the seed's --cluster-secret, and so does `dkv remove` \
         (its --cluster-secret, or DKV_CLUSTER_SECRET)\n",
    )
    .await
}

/// Over TLS, membership changes only from members: connections that presented a certificate the
/// cluster CA signed (`tls.rs`). In the clear there is no certificate to ask for.
async fn require_member(req: Request, next: Next) -> Response {
    let caller = req.extensions().get::<axum::extract::ConnectInfo<crate::transport::Caller>>();
    if caller.is_none_or(|c| c.0.member != Some(false)) {
        return next.run(req).await;
    }
    let text = "over TLS, the seed takes membership changes only from members, which show a certificate the seed's \
                --tls-peer-ca signed: a node its --tls-cert, `dkv remove` its --client-cert and --client-key\n";
    forbidden(req, text).await
}

/// A `403`, sent once the request's body has been read, within the seed's limit and
/// [`REFUSED_BODY_TIMEOUT`]. Over HTTP/2, an answer that leaves the body unread is followed by
/// RST_STREAM(NO_ERROR), as RFC 9113 §8.1 allows, and curl 7.88 then drops the answer and shows
/// a framing error instead of the reason.
///
/// The body is read and dropped piece by piece, not gathered: a refused caller must not make the
/// seed hold what it sends (8 MiB a request, on each of thousands of connections and streams).
async fn forbidden(req: Request, text: &'static str) -> Response {
    use axum::body::HttpBody;
    let mut body = req.into_body();
    let drain = async {
        let mut read = 0;
        while let Some(Ok(frame)) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
            read += frame.data_ref().map_or(0, |piece| piece.len());
            if read > MAX_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REFUSED_BODY_TIMEOUT, drain).await;
    (StatusCode::FORBIDDEN, text).into_response()
}

/// Longest the seed waits for the body of a request it refuses, before it answers anyway.
const REFUSED_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Expire silent members every sixteenth of the TTL: a node that has lost the seed counts on it
/// holding back once a peer has been quiet a sixteenth of the TTL past half of it (the node
/// crate's `life/lease.rs`), so a pass must come within that. A pass costs a walk over the
/// members (a few microseconds for a thousand). A pass that comes more than half a TTL after
/// the one before means the seed itself did not run meanwhile (paused, its machine frozen) and
/// heard no heartbeat: it then counts every member as heard from instead (`Registry::seen_all`).
/// Expiring them all at once, it left the first to register again alone in a view of one,
/// serving every key by itself, until the others came back a few milliseconds later.
async fn expire_loop(seed: Seed, ttl: Duration) {
    let every = (ttl / 16).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = now_ms();
    loop {
        tick.tick().await;
        let now = now_ms();
        let stalled = now.saturating_sub(last);
        last = now;
        if stalled > (ttl / 2).max(every * 2).as_millis() as u64 {
            tracing::warn!(
                stalled_ms = stalled,
                "the seed did not run for {stalled} ms (paused, or its machine frozen): it heard no heartbeat meanwhile, so every member gets a full TTL before any expires"
            );
            seed.with(|r| r.seen_all(now)).await;
            continue;
        }
        seed.expire().await;
    }
}

/// A body whose declared length is over [`MAX_BODY`] is refused at once, from its header. A
/// `Content-Length` of 4 GiB with no body waited out the read timeout (30 s) and was then
/// answered `400 Failed to buffer the request body` (found by a hunt, 2026-12-07).
async fn declared_too_large(req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY as u64 => error_line(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {n} bytes over the limit of {} MiB", MAX_BODY >> 20),
        ),
        _ => next.run(req).await,
    }
}

/// Largest request body the seed reads: the view a returning node presents, for a cluster of a
/// few thousand members, fits.
const MAX_BODY: usize = 8 << 20;

/// An error answer: one line of plain text. The text may quote what the client sent (serde_json
/// quotes an unknown variant as it is), so control characters are escaped to keep it one line.
fn error_line(status: StatusCode, text: impl std::fmt::Display) -> Response {
    let text = text.to_string();
    let mut line = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line.push('\n');
    (status, line).into_response()
}

/// A request body, JSON or compact by its `Content-Type` (see `format.rs`).
// A ready error response is what a handler's `?` needs; its size does not matter here.
#[allow(clippy::result_large_err)]
fn parse<T: DeserializeOwned + Compact>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Response> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            error_line(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over the limit of {} MiB", MAX_BODY >> 20))
        }
        status => error_line(status, e.body_text()),
    })?;
    format::decode(headers, &body).map_err(|(status, line)| error_line(status, line))
}

/// The answer, in the format the request asked for (see `format.rs`).
fn reply<T: serde::Serialize + Compact>(format: Format, result: Result<T, RegistryError>) -> Response {
    match result {
        Ok(v) => format::encode(format, &v),
        Err(e) => error_line(status_of(&e), e),
    }
}

/// The status a registry error is answered with, over HTTP and over the transport.
pub(crate) fn status_of(e: &RegistryError) -> StatusCode {
    match e {
        RegistryError::UnknownNode(_) | RegistryError::NoSuchMember(_) => StatusCode::NOT_FOUND,
        RegistryError::Alive { .. } | RegistryError::Leaving { .. } => StatusCode::CONFLICT,
        RegistryError::BadRequest(_) => StatusCode::BAD_REQUEST,
        RegistryError::ForeignCluster { .. } => StatusCode::CONFLICT,
        RegistryError::NotYet { .. } => StatusCode::SERVICE_UNAVAILABLE,
        // The id is held by a live process: the request conflicts with the membership (not a
        // 5xx: the seed is fine). A node tells it from the other 409s by its words, and retries.
        RegistryError::InUse { .. } => StatusCode::CONFLICT,
    }
}

async fn register(State(seed): State<Seed>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let mut req: RegisterRequest = match parse(&headers, body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // A new node's tokens are chosen without holding the registry: the choice takes half a
    // second at 1 000 members, and heartbeats must not wait for it (see `JoinPlan`).
    if let Some(plan) = seed.locked(|r| r.plan_join(&req)).0 {
        let id = plan.id;
        match tokio::task::spawn_blocking(move || plan.tokens()).await {
            Ok(tokens) => (req.id, req.tokens) = (Some(id), Some(tokens)),
            Err(e) => return error_line(StatusCode::INTERNAL_SERVER_ERROR, format!("choosing tokens: {e}")),
        }
    }
    let result = seed
        .with(|r| {
            let before = r.epoch();
            let res = r.register(req, now_ms());
            (res, before)
        })
        .await;
    if let (Ok(resp), before) = &result {
        if resp.epoch != *before {
            match resp.nodes.iter().find(|m| m.id == resp.id) {
                Some(m) => {
                    tracing::info!(id = %resp.id, addr = %m.addr, state = ?m.state, epoch = resp.epoch, "node registered")
                }
                None => tracing::info!(id = %resp.id, epoch = resp.epoch, "node registered"),
            }
        }
    }
    reply(Format::answer(&headers), result.0)
}

/// A heartbeat that says which view the node holds gets no view when that one is current: the
/// cost does not grow with the cluster (a map lookup, a small answer). See the registry.
async fn heartbeat(State(seed): State<Seed>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match parse::<IdRequest>(&headers, body) {
        Ok(req) => {
            let format = Format::answer(&headers);
            let via = match format {
                Format::Json => Via::Json,
                Format::Compact => Via::Compact,
            };
            reply(format, seed.heartbeat(req, via).await)
        }
        Err(resp) => resp,
    }
}

impl Seed {
    /// Remove the members whose heartbeats stopped for the TTL, unless two or more members are
    /// quiet at once (then say so when it starts and when it ends).
    async fn expire(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let (expiry, epoch) = self.with(|r| (r.expire(now_ms()), r.epoch())).await;
        let dkv_membership::Expiry { removed, withheld, quiet, members } = expiry;
        let was = self.withheld.swap(withheld.len() as u64, Relaxed);
        if was == 0 && !withheld.is_empty() {
            tracing::warn!(
                quiet,
                members,
                withheld = withheld.len(),
                "{quiet} of {members} members sent no heartbeat for half the TTL: two or more silent at once may \
                 hold the only copies of writes they took from each other, or this seed may be cut off from them, \
                 so it expires none of them (they stay in the view, unreachable to their peers) until at most one \
                 is silent; if they are gone for good, remove each with `dkv remove --seed SEED ID|ADDR` (POST /remove)"
            );
        } else if was > 0 && withheld.is_empty() {
            tracing::info!(
                quiet,
                members,
                "the seed hears from all members but one at most again: expiry resumes, half a TTL from now for one still silent"
            );
        }
        self.expired.fetch_add(removed.len() as u64, Relaxed);
        self.forget_reports(removed.iter().map(|m| m.id));
        for m in removed {
            if m.state == dkv_membership::NodeState::Leaving {
                tracing::warn!(
                    id = %m.id,
                    addr = %m.addr,
                    epoch,
                    "node expired while leaving: no heartbeat within the TTL before the leave was done (its \
                     --leave-timeout ran out, it was killed or paused, or its last word to the seed was lost); keys \
                     whose every copy it held, if it had not handed them on, cannot be read until it is started \
                     again on its data directory, which finishes the leave"
                );
            } else {
                tracing::warn!(id = %m.id, addr = %m.addr, epoch, "node expired: no heartbeat within the TTL");
            }
        }
    }

    /// A member leaving, or (`done`) gone.
    async fn leave(&self, id: dkv_membership::NodeId, done: bool) -> Result<dkv_membership::View, RegistryError> {
        let view = self.with(|r| r.leave(id, done, now_ms())).await?;
        if done {
            self.forget_reports([id]);
        }
        Ok(view)
    }

    /// Drop what former members reported: only members' reports are kept, so churn of node ids
    /// does not grow the map whether or not anyone opens the dashboard.
    fn forget_reports(&self, gone: impl IntoIterator<Item = dkv_membership::NodeId>) {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        for id in gone {
            reports.remove(&id);
        }
    }

    /// Answer a heartbeat that came `via` HTTP or the transport.
    pub(crate) async fn heartbeat(&self, mut req: IdRequest, via: Via) -> Result<HeartbeatAnswer, RegistryError> {
        let id = req.id;
        req.load = req.load.map(dkv_membership::load::Load::bounded);
        let now = now_ms();
        let (answer, members) = self.with(|r| (r.heartbeat_since(id, req.known(), now), r.len())).await;
        let answer = answer?;
        // A member that reports its reading of this seed's clock gets the cluster's, once a
        // majority of the members reported theirs.
        let clock = req.seed_clock_offset_ms.and_then(|offset| {
            let mut clocks = self.clocks.lock().unwrap_or_else(|e| e.into_inner());
            clocks.report(id, offset, req.seed_clock_error_ms.unwrap_or(0), now);
            clocks.cluster(now, members)
        });
        self.heartbeats[Told::of(&answer).slot(via)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Only members' reports are kept (and replaced at every heartbeat).
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).insert(id, req);
        Ok(HeartbeatAnswer { now_ms: Some(now_ms()), clock, ..answer })
    }
}

async fn ready(State(seed): State<Seed>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    by_id(&seed, &headers, body, Registry::ready, "node is ready (normal)").await
}

async fn leave(State(seed): State<Seed>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match parse::<LeaveRequest>(&headers, body) {
        Ok(req) => {
            let res = seed.leave(req.id, req.done).await;
            if let Ok(v) = &res {
                let what = if req.done { "node left" } else { "node is leaving" };
                tracing::info!(id = %req.id, epoch = v.epoch, "{what}");
            }
            reply(Format::answer(&headers), res)
        }
        Err(resp) => resp,
    }
}

/// A leaving member takes its leave back (see the registry): `normal` again.
async fn withdraw_leave(State(seed): State<Seed>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let said = "node took its leave back (normal): no member was left to take its keys";
    by_id(&seed, &headers, body, Registry::withdraw_leave, said).await
}

/// A change a member asks for by its id alone (`/ready`, `/leave/withdraw`): `change` made in the
/// registry, `said` logged once it is, and the membership answered.
async fn by_id(
    seed: &Seed,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    change: fn(&mut Registry, dkv_membership::NodeId, u64) -> Result<dkv_membership::View, RegistryError>,
    said: &str,
) -> Response {
    match parse::<IdRequest>(headers, body) {
        Ok(req) => {
            let res = seed.with(|r| change(r, req.id, now_ms())).await;
            if let Ok(v) = &res {
                tracing::info!(id = %req.id, epoch = v.epoch, "{said}");
            }
            reply(Format::answer(headers), res)
        }
        Err(resp) => resp,
    }
}

/// An operator takes out a member that is gone for good (`dkv remove`; see the registry).
async fn remove(State(seed): State<Seed>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let req = match parse::<RemoveRequest>(&headers, body) {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let res = seed.with(|r| r.remove(req.id, req.force, now_ms())).await;
    let res = res.map(|(m, view)| {
        seed.forget_reports([m.id]);
        tracing::warn!(id = %m.id, addr = %m.addr, epoch = view.epoch, force = req.force,
            "member removed by an operator: the others take over its ranges");
        view
    });
    reply(Format::answer(&headers), res)
}

/// The whole view: JSON for people and the dashboard, compact for nodes that ask for it.
async fn nodes(State(seed): State<Seed>, headers: HeaderMap) -> Response {
    format::encode(Format::answer(&headers), &seed.with(|r| r.view()).await)
}

async fn health(State(seed): State<Seed>) -> Response {
    let (epoch, members, ttl_ms, fresh) = seed.with(|r| (r.epoch(), r.len(), r.ttl_ms(), r.fresh(now_ms()))).await;
    Json(SeedHealth { status: "ok".into(), epoch, members, node_ttl_ms: Some(ttl_ms), fresh: Some(fresh) })
        .into_response()
}

/// `GET /`: the live dashboard, one self-contained page (no external assets) that polls
/// `/dashboard.json` and draws the ring and the members.
async fn dashboard() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("dashboard.html")).into_response()
}

/// What the dashboard draws (see `dashboard.rs`): the members with what each reported with its
/// last heartbeat, totals, the ring as a bounded list of arcs, and the seed's clock (so the page
/// shows heartbeat ages without trusting the browser's clock).
async fn dashboard_json(State(seed): State<Seed>) -> Response {
    let (view, digest) = seed.with(|r| (r.view(), r.digest())).await;
    let drawing = seed.drawing.get(&view, digest);
    let reports = {
        let mut reports = seed.reports.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the reports of nodes that are no longer members.
        let ids: std::collections::HashSet<_> = view.nodes.iter().map(|m| m.id).collect();
        reports.retain(|id, _| ids.contains(id));
        reports.clone()
    };
    Json(crate::dashboard::document(&view, &reports, &drawing, now_ms())).into_response()
}

/// `GET /metrics`: the membership in Prometheus text format, read from the registry at scrape time.
async fn metrics(State(seed): State<Seed>) -> Response {
    use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct StateLabel {
        state: String,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct HeartbeatLabels {
        answer: String,
        encoding: String,
    }
    let view = seed.with(|r| r.view()).await;
    let mut registry = prometheus_client::registry::Registry::with_prefix("dkv_seed");
    let members = Family::<StateLabel, Gauge>::default();
    for state in ["joining", "normal", "leaving"] {
        let n = view.nodes.iter().filter(|m| m.state.to_string() == state).count();
        members.get_or_create(&StateLabel { state: state.into() }).set(n as i64);
    }
    registry.register("members", "Members of the cluster, by state", members);
    registry.register("epoch", "Membership epoch", ConstGauge::new(view.epoch as i64));
    let expired = seed.expired.load(std::sync::atomic::Ordering::Relaxed);
    registry.register("expired", "Members removed for missing heartbeats", ConstCounter::new(expired));
    let withheld = seed.withheld.load(std::sync::atomic::Ordering::Relaxed);
    registry.register(
        "expiry_withheld",
        "Members past the TTL kept in the view, because two or more members are quiet at once",
        ConstGauge::new(withheld as i64),
    );
    let heartbeats = Family::<HeartbeatLabels, prometheus_client::metrics::counter::Counter>::default();
    for (told, answer) in Told::ALL {
        for (via, encoding) in Via::ALL {
            let n = seed.heartbeats[told.slot(via)].load(std::sync::atomic::Ordering::Relaxed);
            heartbeats.get_or_create(&HeartbeatLabels { answer: answer.into(), encoding: encoding.into() }).inc_by(n);
        }
    }
    registry.register(
        "heartbeats",
        "Heartbeats answered, by what they carried of the membership (unchanged: nothing) and by encoding \
         (json, compact: over HTTP; transport: over the binary transport)",
        heartbeats,
    );
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).expect("writing to a String");
    ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], out).into_response()
}

#[cfg(test)]
mod tests {
    use dkv_membership::api::RegisterRequest;

    use super::*;

    fn config(data_dir: Option<std::path::PathBuf>) -> SeedConfig {
        SeedConfig {
            node_ttl: Duration::from_millis(100),
            cluster_secret: None,
            cluster_name: "dkv".into(),
            max_connections: 10,
            tls: None,
            data_dir,
            read_timeout: SeedConfig::READ_TIMEOUT,
            new_cluster: true,
        }
    }

    /// What a member reported goes with it, when it leaves and when it expires.
    #[tokio::test]
    async fn reports_of_former_members_are_forgotten() {
        let seed = Seed::new(&config(None));
        let register = |addr: &str| {
            let req = RegisterRequest { addr: addr.into(), ..Default::default() };
            seed.locked(|r| r.register(req, now_ms())).0.unwrap().id
        };
        let (leaving, expiring) = (register("h:1"), register("h:2"));
        for id in [leaving, expiring] {
            seed.heartbeat(IdRequest { keys: Some(7), ..IdRequest::id(id) }, Via::Json).await.unwrap();
        }
        let reported = || {
            let mut ids: Vec<_> = seed.reports.lock().unwrap().keys().copied().collect();
            ids.sort();
            ids
        };
        let mut both = vec![leaving, expiring];
        both.sort();
        assert_eq!(reported(), both);
        seed.leave(leaving, true).await.unwrap();
        assert_eq!(reported(), vec![expiring]);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !reported().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the silent member never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
            seed.expire().await;
        }
        assert_eq!(seed.with(|r| r.len()).await, 0);
    }

    /// With a record, no answer carries a view that the record does not hold yet, although the
    /// record is written off the registry's lock: registrations from many tasks at once, each
    /// checked against the file as soon as it is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_answer_carries_a_view_the_record_does_not_hold() {
        let dir = std::env::temp_dir().join(format!("dkv-seed-answers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let seed = Seed::open(&config(Some(dir.clone()))).unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let (seed, file) = (seed.clone(), dir.join("membership.json"));
                tokio::spawn(async move {
                    let req = RegisterRequest { addr: format!("h:{}", 1 + i), ..Default::default() };
                    let answer = seed.with(|r| r.register(req, now_ms())).await.unwrap();
                    let bytes = std::fs::read(&file).expect("an answer left before the record was written");
                    let recorded: dkv_membership::View = serde_json::from_slice(&bytes).unwrap();
                    assert!(
                        recorded.epoch >= answer.epoch,
                        "an answer of epoch {} left with the record at {}",
                        answer.epoch,
                        recorded.epoch
                    );
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        drop(seed);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
