//! Start-up, background tasks and shutdown of a node.
//!
//! Start: bind (done by the caller), register with the seed (retrying until it answers), start
//! serving, then — if the seed says `joining` — pull the ranges this node will own and declare
//! itself ready. Heartbeats and the mover run as owned tasks that stop on shutdown.
//!
//! Stop comes in two kinds ([`Stop`]): a *leave* (SIGTERM, Ctrl-C, `POST /admin/leave`) hands
//! every key to the nodes that stay, bounded by the leave timeout, and only then exits; a plain
//! *stop* (`POST /admin/stop`, used when a whole cluster is shut down) exits at once, because
//! handing data to nodes that are stopping too would only delay the shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dkv_membership::{NodeId, NodeState, Topology};
use dkv_storage::{Engine, Hlc};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex, RwLock};

use crate::config::NodeConfig;
use crate::durability::Durability;
use crate::error::NodeError;
use crate::hints::Hints;
use crate::local::{self, Local};
use crate::membership;
use crate::peer::Peers;
use crate::stats::Counters;

/// How a node is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Hand all data to the remaining members, then exit.
    Leave,
    /// Exit without handing data off (the whole cluster is going down).
    Now,
}

/// This node's own view of where it is in its life; set locally *before* the seed hears of it,
/// so e.g. a node that decided to leave refuses hand-offs from that instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Life {
    Joining = 0,
    Normal = 1,
    Leaving = 2,
    Left = 3,
}

impl Life {
    pub fn name(self) -> &'static str {
        match self {
            Life::Joining => "joining",
            Life::Normal => "normal",
            Life::Leaving => "leaving",
            Life::Left => "left",
        }
    }
}

pub struct Inner {
    pub config: NodeConfig,
    pub me: NodeId,
    pub addr: String,
    pub engine: Arc<dyn Engine>,
    /// When a write counts as stored (`--fsync`).
    pub durability: Arc<Durability>,
    /// The data directory, for a node that has one.
    pub local: Option<Local>,
    pub hlc: Hlc,
    pub peers: Peers,
    pub stats: Counters,
    pub metrics: crate::metrics::Metrics,
    pub hints: Hints,
    pub(crate) topo: watch::Sender<Arc<Topology>>,
    /// Serialises refreshes from the seed so a burst of stale-epoch answers causes one fetch.
    pub(crate) refresh_lock: Mutex<()>,
    /// Writes and hand-offs hold it shared; a data move takes it exclusively once, after adopting a
    /// new view, to wait until every write planned under an older view has landed.
    pub(crate) fence: RwLock<()>,
    life: AtomicU8,
    stop: watch::Sender<Option<Stop>>,
}

/// A cheap handle to a node's shared state.
#[derive(Clone)]
pub struct Node(pub Arc<Inner>);

impl std::ops::Deref for Node {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Node {
    pub fn topology(&self) -> Arc<Topology> {
        self.topo.borrow().clone()
    }

    pub fn life(&self) -> Life {
        match self.life.load(Ordering::Acquire) {
            0 => Life::Joining,
            1 => Life::Normal,
            2 => Life::Leaving,
            _ => Life::Left,
        }
    }

    pub fn set_life(&self, life: Life) {
        self.life.store(life as u8, Ordering::Release);
    }

    /// Ask the node to stop (from an admin endpoint).
    pub fn request_stop(&self, how: Stop) {
        self.stop.send_if_modified(|s| {
            // A stop-now overrides a leave in progress; a leave never downgrades a stop-now.
            let next = match (*s, how) {
                (Some(Stop::Now), _) => Stop::Now,
                (_, h) => h,
            };
            let changed = *s != Some(next);
            *s = Some(next);
            changed
        });
    }

    /// Wait until one full fence cycle passed: every write that started before now has finished.
    pub async fn drain_writes(&self) {
        drop(self.fence.write().await);
    }
}

/// Run a node on `listener` until `signal` (SIGTERM / Ctrl-C, mapped by the caller) or an admin
/// request stops it.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    signal: impl Future<Output = Stop> + Send + 'static,
) -> Result<(), NodeError> {
    let opened = local::open(&config)?;
    let resp_listener = match config.resp_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            NodeError::Unavailable(format!("cannot listen for RESP on {addr}: {e}; pick another --resp-listen"))
        })?),
        None => None,
    };
    let bound = listener.local_addr().map_err(|e| NodeError::Internal(format!("listener address: {e}")))?;
    let addr = advertise_addr(&config, bound).await?;
    let peers = Peers::new(config.request_timeout, config.cluster_secret.as_deref());
    let (stop_tx, mut stop_rx) = watch::channel(None);
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            let how = signal.await;
            stop_tx.send_replace(Some(how));
        }
    });

    let registered = tokio::select! {
        r = membership::register_until_accepted(&peers, &config, &addr, opened.identity.as_ref(), opened.view.as_ref()) => r?,
        _ = stop_rx.wait_for(|s| s.is_some()) => {
            tracing::info!("stopped before the seed answered");
            return Ok(());
        }
    };
    let me = registered.id;
    let view = dkv_membership::View { epoch: registered.epoch, nodes: registered.nodes };
    let topo = Arc::new(Topology::new(view, me, config.replicas));
    let state = topo.my_state().unwrap_or(NodeState::Joining);
    tracing::info!(id = %me, %addr, ?state, epoch = topo.epoch(), members = topo.view.nodes.len(), "registered with the seed");
    if let (Some(local), Some(m)) = (&opened.local, topo.member(me)) {
        local.save_identity(me, &m.tokens)?;
        local.save_view(&topo.view);
    }
    let hints = Hints::new(config.max_hints, config.hint_max_age);
    local::restore_hints(&hints, opened.hints);
    let node = Node(Arc::new(Inner {
        me,
        addr,
        durability: Durability::start(opened.engine.clone(), config.fsync),
        engine: opened.engine,
        local: opened.local,
        hlc: Hlc::default(),
        peers,
        stats: Counters::default(),
        metrics: crate::metrics::Metrics::default(),
        hints,
        topo: watch::channel(topo).0,
        refresh_lock: Mutex::new(()),
        fence: RwLock::new(()),
        life: AtomicU8::new(if state == NodeState::Normal { Life::Normal } else { Life::Joining } as u8),
        stop: stop_tx,
        config,
    }));

    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let server = tokio::spawn(crate::api::serve(node.clone(), listener, server_stop_rx.clone()));
    if let Some(l) = resp_listener {
        tracing::info!(addr = ?l.local_addr().ok(), "RESP listening");
        tokio::spawn(crate::resp::serve(node.clone(), l, server_stop_rx));
    }
    let (tasks_stop_tx, tasks_stop_rx) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(membership::heartbeat_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::mover::rebalance_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::mover::join(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::mover::deliver_hints_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::antientropy::anti_entropy_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::antientropy::purge_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(save_hints_loop(node.clone(), tasks_stop_rx.clone())),
    ];

    let how =
        *stop_rx.wait_for(|s| s.is_some()).await.expect("stop sender lives in the node").as_ref().expect("checked");
    let mut left = false;
    if how == Stop::Leave {
        let deadline = node.config.leave_timeout;
        tokio::select! {
            all_handed_off = crate::mover::leave(&node) => left = all_handed_off,
            _ = tokio::time::sleep(deadline) => tracing::warn!(?deadline, "leave timed out; exiting with data not handed off"),
            _ = stop_rx.wait_for(|s| *s == Some(Stop::Now)) => tracing::warn!("stop requested during leave; exiting now"),
        }
    } else {
        tracing::info!("stopping without handing data off");
    }
    node.set_life(Life::Left);
    tasks_stop_tx.send_replace(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    server_stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Some(local) = &node.local {
        if left {
            local.mark_left();
        } else {
            local.save_hints(&node.hints.snapshot());
        }
    }
    node.durability.shutdown();
    tracing::info!("node stopped");
    Ok(())
}

/// Save pending hints to the data directory whenever they changed, once per heartbeat interval.
async fn save_hints_loop(node: Node, mut stop: watch::Receiver<bool>) {
    let Some(local) = &node.local else { return };
    let mut saved = node.hints.generation();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(node.config.heartbeat_interval) => {}
        }
        let now = node.hints.generation();
        if now != saved {
            let snapshot = node.hints.snapshot();
            tokio::task::block_in_place(|| local.save_hints(&snapshot));
            saved = now;
        }
    }
}

/// The address peers must use: `--advertise` if given; the listen address if it is specific;
/// otherwise this host's own address on the route to the seed (in a container, its address on
/// the cluster network) with the listen port.
async fn advertise_addr(config: &NodeConfig, local: SocketAddr) -> Result<String, NodeError> {
    if let Some(a) = &config.advertise {
        return Ok(a.clone());
    }
    if !local.ip().is_unspecified() {
        return Ok(local.to_string());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match route_ip_toward(&config.seed).await {
            Ok(ip) => return Ok(SocketAddr::new(ip, local.port()).to_string()),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(NodeError::Unavailable(format!(
                    "cannot find this host's address toward the seed {}: {e}; pass --advertise HOST:PORT",
                    config.seed
                )))
            }
            Err(e) => {
                tracing::warn!(seed = %config.seed, "resolving the seed to pick an advertise address: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn route_ip_toward(seed: &str) -> std::io::Result<std::net::IpAddr> {
    let target = tokio::net::lookup_host(seed)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let bind: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { "[::]:0".parse().expect("literal") };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(target).await?;
    Ok(sock.local_addr()?.ip())
}
