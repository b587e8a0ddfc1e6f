//! Start-up, background tasks and shutdown of a node.
//!
//! Start: bind (done by the caller), register with the seed (retrying until it answers), start
//! serving, then — if the seed says `joining` — pull the ranges this node will own and declare
//! itself ready. Heartbeats, the mover, anti-entropy, the tombstone purge, the expiry sweep and
//! hint delivery run as owned tasks that stop on shutdown.
//!
//! Stop comes in two kinds ([`Stop`]): a *leave* (SIGTERM, Ctrl-C, `POST /admin/leave`) hands
//! every key to the nodes that stay, bounded by the leave timeout, and only then exits; a plain
//! *stop* (`POST /admin/stop`, used when a whole cluster is shut down) exits at once, because
//! handing data to nodes that are stopping too would only delay the shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dkv_membership::{NodeId, NodeState, Topology};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::life::local::{self, SettledAt};
use crate::life::membership;
use crate::life::state::{Life, Node, Stop};
use crate::replication::hints::{Hints, Save};
use crate::replication::movement::LeaveEnd;
use crate::transport::peer::Peers;

/// Run a node on `listener` until `signal` (SIGTERM / Ctrl-C, mapped by the caller) or an admin
/// request stops it.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    signal: impl Future<Output = Stop> + Send + 'static,
) -> Result<(), NodeError> {
    let mut opened = local::open(&config)?;
    let resp_listener = match config.resp_listen {
        Some(addr) => Some(crate::transport::listener::bind(addr).map_err(|e| {
            NodeError::Unavailable(format!("cannot listen for RESP on {addr}: {e}; pick another --resp-listen"))
        })?),
        None => None,
    };
    let bound = listener.local_addr().map_err(|e| NodeError::Internal(format!("listener address: {e}")))?;
    let addr = crate::life::advertise::address(&config, bound, &listener).await?;
    let peers = Peers::new(
        config.request_timeout,
        &config.cluster_name,
        config.cluster_secret.as_deref(),
        crate::transport::wire::frame_limit(config.max_key_bytes, config.max_value_bytes),
        config.tls.clone(),
        config.seed_tls,
    );
    let (stop_tx, mut stop_rx) = watch::channel(None);
    // Set under the stop's lock when the signal came, so that a leave taken back serves again
    // only if no signal asked the process to stop meanwhile.
    let signalled = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let (stop_tx, signalled) = (stop_tx.clone(), signalled.clone());
        async move {
            let how = signal.await;
            // A signal during a leave (an orchestrator stopping a node that `dkv leave` already
            // asked to go) lets the leave finish, bounded by --leave-timeout: cutting it short
            // would exit with keys not handed off. `POST /admin/stop` still ends it at once.
            stop_tx.send_if_modified(|s| {
                signalled.store(true, Ordering::SeqCst);
                if *s == Some(Stop::Leave) {
                    tracing::warn!("signal received during a leave: the leave finishes first (up to --leave-timeout)");
                }
                // A stop already under way (a leave, a stop-now, a join given up) is not replaced.
                if s.is_some() {
                    return false;
                }
                *s = Some(how);
                true
            });
        }
    });

    // Stopped during its leave, by what it saved: it registers as leaving. Also when the view it
    // saved no longer lists it: the leave ended at the seed, and the node was stopped before it
    // recorded that (it then came back as a new member, and its next restart, with the mark of
    // the leave still there, left the cluster again unasked; found by the nemesis on 2026-12-06).
    if let (true, Some(me), Some(view)) = (opened.leaving, &opened.identity, &mut opened.view) {
        for m in view.nodes.iter_mut().filter(|m| m.id == NodeId(me.id)) {
            m.state = NodeState::Leaving;
        }
    }
    let was_leaving = opened.identity.as_ref().is_some_and(|me| {
        opened.leaving
            || opened.view.as_ref().and_then(|v| v.member(NodeId(me.id))).is_some_and(|m| m.state == NodeState::Leaving)
    });
    // Answered while it checks its settings with the seed and registers, which may take long.
    let answering = crate::life::starting::answer_until_registered(
        &listener,
        resp_listener.as_ref(),
        &config.seed,
        config.tls.is_some(),
    );
    let registering = async {
        membership::check_settings(&peers, &config, &addr, opened.identity.as_ref().map(|i| NodeId(i.id))).await?;
        membership::register_until_accepted(
            &peers,
            &config,
            &addr,
            opened.identity.as_ref(),
            opened.view.as_ref(),
            was_leaving,
        )
        .await
    };
    let (registered, registered_at) = tokio::select! {
        r = registering => r?,
        _ = answering => unreachable!("answers until the node registers"),
        _ = stop_rx.wait_for(|s| s.is_some()) => {
            tracing::info!("stopped before the seed answered");
            return Ok(());
        }
    };
    let me = registered.id;
    let view = dkv_membership::View { epoch: registered.epoch, nodes: registered.nodes };
    let topo = Arc::new(Topology::new(view, me, config.replicas));
    // A returning member keeps its tokens: `--vnodes` counts only for a new one. It changed
    // nothing without a word (found by trying, 2026-12-06).
    if let Some(m) = topo.view.member(me).filter(|m| m.tokens.len() != config.vnodes) {
        tracing::warn!(
            tokens = m.tokens.len(),
            vnodes = config.vnodes,
            "--vnodes does not apply: this member keeps the tokens it registered with; a node with a new data \
             directory (a new member) takes --vnodes"
        );
    }
    // Absent from the answer: the seed expired this leaving node while it was down, and does not
    // take it back (see `dkv_membership::registry`); it finishes its leave by this view.
    let forgotten_leaver = was_leaving && topo.my_state().is_none();
    let state = topo.my_state().unwrap_or(if forgotten_leaver { NodeState::Leaving } else { NodeState::Joining });
    tracing::info!(id = %me, %addr, ?state, epoch = topo.epoch(), members = topo.view.nodes.len(), "registered with the seed");
    if let (Some(local), Some(m)) = (&opened.local, topo.member(me)) {
        local.save_identity(me, &m.tokens)?;
        local.save_view(&topo.view);
    }
    // Expired by the seed and back after longer than the grace: its old store may hold values
    // deleted meanwhile, whose tombstones are gone (`life/absence.rs`). (A member, by the view it
    // saved: also one that joined before, whose drop a stop cut short, as it saved this view.)
    let was_member = opened.view.as_ref().is_some_and(|v| v.member(me).is_some());
    if ((state == NodeState::Joining && was_member) || forgotten_leaver) && opened.local.is_some() {
        drop_stale_store(&mut opened, &config, forgotten_leaver).await?;
    }
    let hints = Hints::new(config.max_hints, config.hint_max_age).with_max_bytes(config.max_hint_bytes);
    crate::replication::hints::restore(&hints, opened.hints);
    let life = match state {
        NodeState::Normal => Life::Normal,
        NodeState::Joining => Life::Joining,
        NodeState::Leaving => Life::Leaving,
    };
    let fresh = opened.identity.is_none();
    let node = Node::new(config, me, addr, opened.engine, opened.local, peers, hints, topo, life, stop_tx);
    // Its store holds what it held when it stopped, or nothing: judged just above.
    node.absence.in_service(node.cluster_wall_ms());
    if fresh && life == Life::Normal {
        // A new node made `normal` at once: the first member of a new cluster, with nothing to
        // copy. (A node restarted on its data directory is complete only after its first round:
        // views may have changed while it was down.)
        node.mark_complete();
    }
    let topo = node.topology();
    let same_view = opened.settled.is_some_and(|at| at.names(&topo)) && !registered.seed_fresh;
    if same_view && life == Life::Normal {
        // Stopped cleanly and settled, and back under the same view: see `life/local.rs`.
        node.mark_settled(&topo);
        tracing::info!(epoch = topo.epoch(), "stopped settled under this same view: settled at once");
    }
    if life == Life::Leaving {
        // Stopped during its leave (killed, say) and restarted before the seed's TTL: the seed
        // still lists it as leaving and would never make it normal again (a ready that crosses a
        // leave stays leaving), so as a join it would hold its ranges beside their new owners
        // for good. The leave was asked for; it is finished now.
        if forgotten_leaver {
            tracing::warn!(
                "this node stopped during its leave, and the seed expired it meanwhile: it is no longer a member; \
                 handing its keys to their replicas by the seed's view, then exiting"
            );
        } else {
            tracing::warn!("the seed lists this node as leaving: it stopped during its leave; finishing the leave");
        }
        node.request_stop(Stop::Leave);
    }

    // Whether this node's clock lets it coordinate writes, known before it serves: within 2 s
    // (its port answers nothing meanwhile: peers' calls wait in the listen queue), or at the
    // first heartbeat as before.
    let within = node.config.request_timeout.min(Duration::from_secs(2));
    tokio::select! {
        _ = tokio::time::timeout(within, crate::life::clock::first_verdict(&node)) => {}
        _ = stop_rx.wait_for(|s| s.is_some()) => {}
    }

    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let max_frame = crate::transport::wire::frame_limit(node.config.max_key_bytes, node.config.max_value_bytes);
    let server_config = dkv_transport::ServerConfig {
        auth: dkv_transport::Auth {
            cluster: node.config.cluster_name.clone(),
            secret: node.config.cluster_secret.clone(),
        },
        max_frame,
        max_answer: max_frame,
        max_concurrent: 1024,
        // Twice the longest deadline of a call between nodes (a forward's): its caller has given
        // up by then.
        max_request_time: node.config.request_timeout * 3,
        handshake_timeout: node.config.request_timeout,
    };
    let (http, transport) = crate::transport::listener::split(
        node.clone(),
        listener,
        server_config,
        node.guard.clone(),
        server_stop_rx.clone(),
    );
    let server = tokio::spawn(crate::front::http::serve(node.clone(), http, server_stop_rx.clone()));
    let resp = resp_listener.map(|l| {
        match l.local_addr() {
            Ok(addr) => tracing::info!(%addr, "RESP listening"),
            Err(e) => tracing::info!("RESP listening (its address unknown: {e})"),
        }
        tokio::spawn(crate::front::resp::serve(node.clone(), l, server_stop_rx))
    });
    node.lease.heard(registered_at.at);
    if life == Life::Normal {
        // When the registration was sent, not now: opening the store, restoring hints and the
        // clock's first verdict took time since.
        node.absence.heard_from_seed(node.cluster_ms_of(registered_at.wall_ms));
    }
    let (tasks_stop_tx, tasks_stop_rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(membership::heartbeat_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::replication::movement::rebalance_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::replication::movement::join(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::replication::hints::delivery::deliver_hints_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::replication::antientropy::anti_entropy_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::replication::antientropy::purge_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::replication::expiry::expiry_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(save_hints_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::life::absence::service_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::life::clock::clock_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::life::lease::lease_loop(node.clone(), tasks_stop_rx.clone())),
        tokio::spawn(crate::life::store_watch::store_watch_loop(node.clone(), tasks_stop_rx.clone())),
    ];
    tasks.extend(crate::life::busy_poll::BusyPoll::start(&node, &tasks_stop_rx));

    let (how, left, unfinished) = loop {
        let mut how =
            *stop_rx.wait_for(|s| s.is_some()).await.expect("stop sender lives in the node").as_ref().expect("checked");
        // A signal that asks for a leave (`--leave-on-stop`, or no data directory) on the last
        // member stops it without one; a leave recorded before a restart is finished as it was.
        if let (Stop::Leave, Life::Normal, Some(why)) = (how, node.life(), node.cannot_leave()) {
            tracing::warn!("stopping without a leave: {why}");
            how = Stop::Now;
        }
        let mut left = false;
        // Why a leave did not end, when it did not and no stop-now cut it short.
        let mut unfinished = None;
        if how == Stop::Leave {
            let deadline = node.config.leave_timeout;
            let stopping = || signalled.load(Ordering::SeqCst);
            tokio::select! {
                end = crate::replication::movement::leave(&node, &stopping) => match end {
                    LeaveEnd::Left => left = true,
                    LeaveEnd::Homeless => unfinished = Some("no member could take some of its keys".to_string()),
                    LeaveEnd::Withdrawn | LeaveEnd::Unrecorded => match node.serve_again(&signalled) {
                        true => continue,
                        false => {
                            tracing::warn!("the leave did not happen; stopping without one, as asked meanwhile");
                            how = Stop::Now;
                        }
                    },
                },
                _ = tokio::time::sleep(deadline) => {
                    tracing::warn!(?deadline, "leave timed out; exiting with data not handed off");
                    unfinished = Some(format!("it did not end within {deadline:?} (--leave-timeout)"));
                }
                _ = stop_rx.wait_for(|s| *s == Some(Stop::Now)) => tracing::warn!("stop requested during leave; exiting now"),
            }
        } else if how == Stop::Now {
            tracing::info!("stopping without handing data off");
        }
        break (how, left, unfinished);
    };
    // Settled now, and staying a member: the next start under this same view is settled at once
    // (see `life/local.rs`). Taken before the node stops serving, which unsettles it.
    let settled_at = (!left && how == Stop::Now && node.settled()).then(|| SettledAt::of(&node.topology()));
    node.set_life(Life::Left);
    tasks_stop_tx.send_replace(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    server_stop_tx.send_replace(true);
    // Requests in flight finish, connections close; bounded, as a peer may hold on.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = server.await;
        if let Some(resp) = resp {
            let _ = resp.await;
        }
        let _ = transport.await;
    })
    .await;
    // What those requests left running: the rest of their replica calls, repairs, refreshes.
    node.tasks.close();
    if tokio::time::timeout(Duration::from_secs(2), node.tasks.wait()).await.is_err() {
        tracing::warn!(left = node.tasks.len(), "stopping with replica calls still in flight");
    }
    // The last files: hints (or the mark that this node left), the last view, an fsync.
    let mut unrecorded = None;
    tokio::task::block_in_place(|| {
        if let Some(local) = &node.local {
            if left {
                unrecorded = local.mark_left().err();
            } else {
                local.save_hints(&node.hints);
                local.flush_views();
            }
        }
        let synced = node.durability.shutdown();
        if let (Some(local), Some(at), true) = (&node.local, settled_at, synced) {
            local.save_settled(at.with_store(&*node.engine));
        }
    });
    tracing::info!("node stopped");
    if let Some(why) = unrecorded {
        return Err(NodeError::Unavailable(why));
    }
    if let (Stop::StoreFailed, Some(why)) = (how, node.engine.failed()) {
        return Err(NodeError::Unavailable(format!(
            "{why}; give the data directory room (or write access) and start the node again: it opens its store \
             from the journal, with every write it acknowledged under --fsync always (under --fsync periodic, a \
             disk that failed its writes may have lost those of the last --fsync-interval), and the other replicas \
             of its keys (with N over 1) bring back the writes it missed or lost"
        )));
    }
    if how == Stop::JoinFailed {
        return Err(NodeError::Unavailable(format!(
            "the join pulled nothing for {:?} (--join-timeout) and was given up; the log above says why",
            node.config.join_timeout
        )));
    }
    if let Some(why) = unfinished {
        // Not a clean exit: an orchestrator that restarts failed tasks starts a durable node
        // again, and it finishes the leave from its directory.
        let after = match &node.local {
            Some(_) => "start it again on its data directory to finish the leave",
            None => "its copies of those keys go with it: only their replicas that stay members keep them",
        };
        return Err(NodeError::Unavailable(format!("the leave did not end: {why}; {after}")));
    }
    Ok(())
}

/// Drop the store of a member the seed expired, when it was out of service for longer than the
/// grace (see `life/absence.rs`).
async fn drop_stale_store(opened: &mut local::Opened, config: &NodeConfig, leaving: bool) -> Result<(), NodeError> {
    use crate::life::absence;
    let keys = opened.engine.stats().keys;
    if keys == 0 {
        return Ok(());
    }
    let mut record = opened.service;
    let since = match record.in_service_ms {
        0 => {
            // No record (it never settled, or its directory is of an earlier release): its
            // newest write says when it last took writes.
            let engine = opened.engine.clone();
            record.in_service_ms = tokio::task::spawn_blocking(move || absence::newest_write_ms(&*engine))
                .await
                .map_err(|e| NodeError::Internal(format!("reading the store: {e}")))?
                .map_err(|e| NodeError::Unavailable(format!("reading the store: {e}")))?;
            "took its last write"
        }
        _ => "was last in service",
    };
    let then = match leaving {
        true => "it finishes its leave with nothing to hand off",
        false => "it copies its ranges from the other replicas",
    };
    let context = absence::Context { cause: "the seed expired this node", since, then };
    if !absence::judge(config, &record, crate::replication::hints::wall_ms(), keys, &context) {
        return Ok(());
    }
    let local = opened.local.as_ref().expect("a durable node");
    let old = std::mem::replace(&mut opened.engine, Arc::new(dkv_storage::MemoryEngine::new()));
    let failed =
        |e: String| NodeError::Unavailable(format!("dropping the old store: {e}; move the data directory away"));
    opened.engine = match tokio::task::block_in_place(|| local.empty_store(old)) {
        Ok(emptied) => emptied.map_err(failed)?,
        Err(old) => {
            // Still held elsewhere: key by key, then.
            let engine = old.clone();
            tokio::task::spawn_blocking(move || absence::drop_store(&*engine))
                .await
                .map_err(|e| NodeError::Internal(format!("dropping the old store: {e}")))?
                .map_err(|e| failed(e.to_string()))?;
            old
        }
    };
    opened.settled = None;
    tracing::info!(keys, "dropped the old store");
    Ok(())
}

/// How long the hints file's saver gathers changes before it saves them: what a crash of the
/// node can lose of its hints (anti-entropy repairs what they would have carried).
const HINT_SAVE_DELAY: Duration = Duration::from_millis(100);

/// Save what is new of the pending hints (see `life/hint_file.rs`) within [`HINT_SAVE_DELAY`] of
/// a hint kept or delivered: what to write is decided here, and written by a blocking thread
/// only when there is something, so a node with no hints moving sleeps, and a large write holds
/// no runtime worker. (Until 2026-12-06 it saved once per heartbeat interval, and woke for it
/// with nothing to save: a crash lost up to an interval's hints, 5 s by default.)
async fn save_hints_loop(node: Node, mut stop: watch::Receiver<bool>) {
    if node.local.is_none() {
        return;
    }
    let delay = HINT_SAVE_DELAY.min(node.config.heartbeat_interval);
    let mut failed = false;
    loop {
        // After a failed write, again in a heartbeat interval whether or not hints changed.
        let wait = match failed {
            true => node.config.heartbeat_interval,
            false => tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = node.hints.changed() => delay,
            },
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(local) = &node.local else { return };
        let save = local.hints_to_save(&node.hints);
        if matches!(save, Save::Nothing) {
            failed = false;
            continue;
        }
        let node = node.clone();
        let written =
            tokio::task::spawn_blocking(move || node.local.as_ref().is_none_or(|l| l.write_hints(&save, &node.hints)));
        failed = !written.await.unwrap_or(false);
    }
}
