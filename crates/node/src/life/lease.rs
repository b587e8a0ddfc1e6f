//! The membership lease: a node the seed may have removed serves no client request.
//!
//! Why: the seed expires a member it has not heard from for its TTL, and the others then take
//! over its ranges. A member cut off from the seed, but not dead, does not learn of its removal:
//! it keeps its last view and goes on coordinating with it. Two such members (a partition that
//! leaves them together, away from the seed and the rest) acknowledged writes to each other at
//! `w=2` that the new owners never saw, and answered reads with values older than writes the
//! others had acknowledged. Fault injection found both (`scripts/nemesis.py`, the `partition` and
//! `seed_cut` faults: 18 stale or "not found" reads in 120 s before this lease).
//!
//! The rule mirrors the seed's own (`dkv_membership::Expiry`): it expires a member unseen for its
//! TTL, unless two or more members are quiet at once, unseen for half the TTL. So a node that has
//! not had an answer from the seed for half the TTL, and one heartbeat interval more, coordinates
//! only while it knows that another member cannot reach the seed either: then the seed, if it
//! runs at all, expires neither. It learns that from its peers, whom it asks while its own
//! contact is old ([`wire::Kind::Lease`](crate::transport::wire::Kind::Lease)). A seed that is
//! down is the common case of that: every node lost it at once, and they all go on serving with
//! the view they have, as before. A node cut off alone stops coordinating half a TTL before the
//! seed could expire it, and serves again once it reaches the seed: it is either still a member,
//! or told it is not and comes back `joining`. When the others reach the seed again, a node still
//! cut off learns it within two rounds of asking, well within the half TTL the seed then gives it.
//!
//! Whether a peer counts as cut off too is the peer's own word: how long it has gone without an
//! answer from the seed. Until the seed could have expired this node, a report is aged by the
//! time since it came; after, it counts only if it said enough on its own ([`Judge::surely_quiet`]),
//! since the peer may have heard the seed a moment after it answered.
//!
//! It still serves as a replica: its peers coordinate, and they hold the current view.
//!
//! The lease needs the seed's TTL, which the seed reports in its `GET /health`; with a seed that
//! does not, or a cluster of one member, the node serves as before. [`Judge`] is pure: the caller
//! passes the time, the view and what the peers said.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dkv_membership::{NodeId, NodeState, View};
use tokio::sync::watch;

use crate::life::state::Node;
use crate::transport::wire::{Kind, LeaseReply, LeaseRequest};

/// What a peer said of its own contact with the seed.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// How long it had gone without an answer from the seed (`None`: it never had one).
    pub unheard: Option<Duration>,
    /// The epoch of its view.
    pub epoch: u64,
    /// When its answer arrived.
    pub at: Instant,
}

/// The verdict on whether this node may coordinate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It may; judge again at `recheck`, if given (sooner if anything changes).
    Holds { recheck: Option<Instant> },
    /// It may not, for this reason.
    Lost(String),
}

/// The lease's inputs, and the rule.
#[derive(Debug)]
pub struct Judge {
    /// The seed's TTL, once known.
    ttl: Option<Duration>,
    /// The heartbeat interval: how often peers are asked, and the slack of every deadline.
    interval: Duration,
    /// When the heartbeat that the seed last answered was sent.
    heard: Option<Instant>,
    reports: HashMap<NodeId, Report>,
}

impl Judge {
    pub fn new(interval: Duration) -> Judge {
        Judge { ttl: None, interval, heard: None, reports: HashMap::new() }
    }

    /// The seed's TTL is `ttl`; returns the one known before.
    pub fn set_ttl(&mut self, ttl: Duration) -> Option<Duration> {
        self.ttl.replace(ttl)
    }

    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The seed answered a heartbeat (or a registration) sent at `sent`.
    pub fn heard(&mut self, sent: Instant) {
        if self.heard.is_none_or(|h| sent > h) {
            self.heard = Some(sent);
        }
    }

    /// How long this node has gone without an answer from the seed, at `now`.
    pub fn unheard(&self, now: Instant) -> Option<Duration> {
        self.heard.map(|h| now.saturating_duration_since(h))
    }

    pub fn report(&mut self, peer: NodeId, report: Report) {
        self.reports.insert(peer, report);
    }

    /// After how long without the seed a member is quiet to it: half its TTL, as the seed counts.
    fn quiet_after(&self) -> Option<Duration> {
        self.ttl.map(|t| t / 2)
    }

    /// How often to ask the peers while the seed is silent: every heartbeat interval, and at
    /// least eight times a TTL. When the seed stops holding back, a member still quiet has half
    /// a TTL before it expires ([`dkv_membership::Expiry`]); this node learns within two rounds
    /// that the others are heard again, and stops.
    pub fn ask_every(&self) -> Duration {
        self.ttl.map_or(self.interval, |ttl| self.interval.min(ttl / 8))
    }

    /// How long a peer's report counts: two rounds of asking.
    fn report_lasts(&self) -> Duration {
        self.ask_every() * 2
    }

    /// When this node stops coordinating unless other members are cut off too: half the TTL
    /// after the seed's last answer, and an interval more, since peers that lost the seed at the
    /// same moment had their last answer up to an interval before this one.
    fn own_deadline(&self) -> Option<Instant> {
        Some(self.heard? + self.quiet_after()? + self.interval)
    }

    /// From when to ask the peers: two rounds before this node's own deadline, so their answers
    /// are in when it needs them (`None`: the TTL is not known).
    pub fn reports_due(&self) -> Option<Instant> {
        Some(self.own_deadline()? - self.ask_every() * 2)
    }

    /// From when the seed may have expired this node, less a round of asking: a TTL after the
    /// heartbeat it last answered was sent (the seed heard it no earlier). Before, the seed
    /// cannot have removed this node whatever its peers say, and a peer's report may be aged by
    /// the time since it came; from then on, only what a peer said counts ([`Judge::surely_quiet`]).
    fn expiry_possible(&self) -> Option<Instant> {
        Some(self.heard? + self.ttl?.saturating_sub(self.ask_every()))
    }

    /// How long a peer must have gone without the seed, by its own report, for this node to count
    /// on the seed holding back: half the TTL, and a sixteenth more for the seed's expiry pass
    /// (every sixteenth of the TTL: `expire_loop` in the seed) to have seen it quiet, and a
    /// sixteenth for its last heartbeat's way to the seed. Once the seed held back, it gives
    /// every member still quiet half a TTL after it stops (`dkv_membership::Expiry`), more than
    /// a report lasts ([`Judge::report_lasts`]: two rounds, at most a quarter of the TTL).
    ///
    /// A report is not aged on from here: a peer that had gone a while without an answer when
    /// it reported may have had one a moment later, and never been quiet to the seed (with
    /// heartbeats every third of the TTL, the defaults, a healthy peer's report taken just
    /// before its next heartbeat passes for a cut-off one once aged by two rounds).
    fn surely_quiet(&self) -> Option<Duration> {
        Some(self.quiet_after()? + self.ttl? / 8)
    }

    /// Whether a peer whose last answer from the seed came for a heartbeat sent at `theirs` lost
    /// the seed close enough to when this node did (its last answer's heartbeat sent at `heard`)
    /// for the seed to have seen both quiet at once before it could expire either: within half
    /// the TTL less an eighth (the seed's pass and a heartbeat's way, as in
    /// [`Judge::surely_quiet`]). A peer cut off half a TTL after this node was not quiet when the
    /// seed expired this node; one cut off half a TTL before may have been expired before this
    /// node was quiet; and neither learns it, cut off, so their views still list each other.
    /// Nodes cut off together are within a heartbeat interval of each other, under half the TTL.
    fn lost_together(&self, heard: Instant, theirs: Option<Instant>) -> bool {
        let (Some(ttl), Some(theirs)) = (self.ttl, theirs) else { return false };
        let apart = if theirs > heard { theirs - heard } else { heard - theirs };
        apart <= ttl / 2 - ttl / 8
    }

    /// How long past a verdict's recheck requests still take it, should the loop that judges
    /// again be late: an interval, or an eighth of the TTL if longer, but at most half the room
    /// between this node's own deadline and the seed's earliest expiry of it.
    fn slack(&self) -> Duration {
        let Some(ttl) = self.ttl else { return self.interval };
        self.interval.max(ttl / 8).min((ttl / 2).saturating_sub(self.interval) / 2)
    }

    /// May this node, `me` in `view`, coordinate at `now`?
    pub fn verdict(&self, now: Instant, me: NodeId, view: &View) -> Verdict {
        let (Some(quiet_after), Some(heard), Some(own_deadline)) =
            (self.quiet_after(), self.heard, self.own_deadline())
        else {
            return Verdict::Holds { recheck: None };
        };
        if now < own_deadline {
            return Verdict::Holds { recheck: Some(own_deadline) };
        }
        if view.nodes.iter().all(|m| m.id == me) {
            // Alone, nobody else could take its ranges from a view with it in.
            return Verdict::Holds { recheck: Some(now + self.ask_every()) };
        }
        // The members the seed holds back for, as it counts them (`Registry::expire`): normal
        // ones. A joining or leaving member quiet too does not stop the seed from expiring this
        // node, nor does this node's own silence count if it is not normal itself. Counting a
        // joining peer, a normal node cut off with it kept coordinating after the seed had
        // expired it, and with `--replication 1` answered 404 for keys its successor had taken
        // (found by a code-reading hunt, 2026-12-07).
        let staying: Vec<NodeId> = view.nodes.iter().filter(|m| m.state == NodeState::Normal).map(|m| m.id).collect();
        let mut quiet = usize::from(staying.contains(&me));
        let mut recheck = now + self.ask_every();
        let expiry_possible = self.expiry_possible().unwrap_or(now);
        let said_enough = self.surely_quiet().unwrap_or(quiet_after);
        for id in staying.iter().filter(|id| **id != me) {
            let Some(r) = self.reports.get(id) else { continue };
            let age = now.saturating_duration_since(r.at);
            if age > self.report_lasts() || r.epoch > view.epoch {
                continue;
            }
            let counts = if now < expiry_possible {
                // The seed cannot have expired this node yet: aged, the report guesses well
                // enough whether to go on.
                r.unheard.is_none_or(|u| u + age >= quiet_after)
            } else {
                r.unheard.is_some_and(|u| u >= said_enough && self.lost_together(heard, r.at.checked_sub(u)))
            };
            if counts {
                quiet += 1;
                recheck = recheck.min(r.at + self.report_lasts());
                if now < expiry_possible {
                    recheck = recheck.min(expiry_possible);
                }
            }
        }
        let members = staying.len();
        if quiet >= 2 {
            return Verdict::Holds { recheck: Some(recheck) };
        }
        let unheard = now.saturating_duration_since(heard);
        Verdict::Lost(format!(
            "no answer from the seed for {} ms, while the {} other members still reach it: the seed may have removed \
             this node, so it coordinates no request until the seed answers it again; send requests to another node",
            unheard.as_millis(),
            members - quiet,
        ))
    }
}

/// The lease as the node holds it: the judge, and the verdict read on every request.
pub struct Lease {
    judge: Mutex<Judge>,
    lost: AtomicBool,
    /// Until when the verdict that holds was given for, in µs from `base`, with some slack for
    /// the loop's own delays ([`Judge::slack`]) (`u64::MAX`: no deadline). A node resumed after a pause
    /// past it (SIGSTOP, a frozen VM) refuses until [`lease_loop`] has judged again: a request
    /// its socket held could otherwise be polled before the loop, and answered from a view the
    /// seed may have replaced meanwhile.
    holds_until: AtomicU64,
    base: Instant,
    why: std::sync::RwLock<Option<String>>,
    /// Wakes [`lease_loop`] when an input changed that may change the verdict soon.
    changed: tokio::sync::Notify,
    /// Asks the heartbeat loop for a heartbeat now, not at its next tick ([`lease_loop`]).
    beat_now: tokio::sync::Notify,
}

impl Lease {
    pub fn new(interval: Duration) -> Lease {
        Lease {
            judge: Mutex::new(Judge::new(interval)),
            lost: AtomicBool::new(false),
            holds_until: AtomicU64::new(u64::MAX),
            base: Instant::now(),
            why: std::sync::RwLock::new(None),
            changed: tokio::sync::Notify::new(),
            beat_now: tokio::sync::Notify::new(),
        }
    }

    /// Why this node may not coordinate now, if it may not. On the request path: two loads and
    /// a read of the monotonic clock.
    #[inline]
    pub fn refusal(&self) -> Option<String> {
        if !self.lost.load(Ordering::Acquire) {
            let until = self.holds_until.load(Ordering::Acquire);
            if until == u64::MAX || self.micros(Instant::now()) <= until {
                return None;
            }
            return Some(
                "this node's lease ran out before it could judge it again (it was paused, or is overloaded): \
                 it coordinates no request until it has; retry, or send requests to another node"
                    .to_string(),
            );
        }
        self.why.read().expect("lease lock").clone()
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX - 1)
    }

    /// How long this node has gone without an answer from the seed (`None`: never had one).
    pub fn unheard(&self, now: Instant) -> Option<Duration> {
        self.judge().unheard(now)
    }

    /// The seed answered a heartbeat or a registration sent at `sent`. While the lease holds,
    /// that only moves the next deadline, and the loop need not wake for it (an idle node's
    /// heartbeats wake nothing more).
    pub fn heard(&self, sent: Instant) {
        self.judge().heard(sent);
        if self.lost.load(Ordering::Acquire) {
            self.changed.notify_one();
        }
    }

    /// Resolves when [`lease_loop`] wants a heartbeat sooner than the next tick.
    pub async fn beat_wanted(&self) {
        self.beat_now.notified().await
    }

    /// The seed's TTL, once known.
    pub fn ttl(&self) -> Option<Duration> {
        self.judge().ttl()
    }

    /// [`Lease::heard`], unless an answer is already known.
    fn heard_if_unknown(&self, sent: Instant) {
        let mut judge = self.judge();
        if judge.heard.is_none() {
            judge.heard(sent);
        }
    }

    /// The seed said its TTL: the first time, or again (said when it changed, and when the
    /// heartbeat interval is too long for it).
    fn learned_ttl(&self, ttl: Duration) {
        let (before, interval) = {
            let mut judge = self.judge();
            (judge.set_ttl(ttl), judge.interval)
        };
        if before == Some(ttl) {
            return;
        }
        if let Some(before) = before {
            tracing::info!(?before, now = ?ttl, "the seed's TTL changed");
        }
        if let Some(why) = interval_too_long(interval, ttl) {
            tracing::error!("{why}");
        } else if let Some(why) = interval_too_long_for_pairs(interval, ttl) {
            tracing::warn!("{why}");
        }
        self.changed.notify_one();
    }

    /// Forget the reports of peers `member` says are no longer members.
    pub fn retain(&self, member: impl Fn(NodeId) -> bool) {
        self.judge().reports.retain(|id, _| member(*id));
    }

    fn report(&self, peer: NodeId, report: Report) {
        self.judge().report(peer, report);
        self.changed.notify_one();
    }

    fn judge(&self) -> std::sync::MutexGuard<'_, Judge> {
        self.judge.lock().expect("lease lock")
    }

    /// Judge again, and let requests see the verdict.
    fn rejudge(&self, now: Instant, me: NodeId, view: &View) -> Verdict {
        let verdict = self.judge().verdict(now, me, view);
        let why = match &verdict {
            Verdict::Holds { .. } => None,
            Verdict::Lost(why) => Some(why.clone()),
        };
        // The reason first: a request that sees `lost` set reads it.
        let lost = why.is_some();
        *self.why.write().expect("lease lock") = why;
        let until = match &verdict {
            Verdict::Holds { recheck: Some(at) } => self.micros(*at + self.judge().slack()),
            _ => u64::MAX,
        };
        self.holds_until.store(until, Ordering::Release);
        self.lost.store(lost, Ordering::Release);
        verdict
    }
}

/// Log a change of verdict. `since`: since when the lease is lost, and whether that was logged
/// as an error, which it is only once it lasts an interval (a node resumed after a pause is
/// lost for the few milliseconds until its heartbeat's answer). Returns the new `since`.
fn log_change(
    since: Option<(Instant, bool)>,
    verdict: &Verdict,
    now: Instant,
    interval: Duration,
) -> Option<(Instant, bool)> {
    match (verdict, since) {
        (Verdict::Lost(why), None) => {
            tracing::debug!("{why}");
            Some((now, false))
        }
        (Verdict::Lost(why), Some((at, false))) if now.saturating_duration_since(at) >= interval => {
            tracing::error!("{why}");
            Some((at, true))
        }
        (Verdict::Lost(_), since) => since,
        (Verdict::Holds { .. }, Some((at, logged))) => {
            let after = now.saturating_duration_since(at);
            match logged {
                true => tracing::warn!(
                    ?after,
                    "coordinating again: the seed answers, or another member cannot reach it either"
                ),
                false => tracing::debug!(?after, "coordinating again"),
            }
            None
        }
        (Verdict::Holds { .. }, None) => None,
    }
}

/// Keep the verdict, until `stop`: learn the seed's TTL, ask the peers while the seed is silent
/// (every [`Judge::ask_every`], each round in a task of its own and given up after that long, so
/// a peer across a partition holds up neither the verdict nor the next round), and judge again
/// whenever an input changed, the view moved or a deadline passed. While the seed answers, it
/// wakes once in a while to find its deadlines moved: one task, not a timer per heartbeat.
pub async fn lease_loop(node: Node, mut stop: watch::Receiver<bool>) {
    let interval = node.config.heartbeat_interval;
    // It registered a moment ago: when exactly, its start said (`Lease::heard`); a node started
    // otherwise (tests) counts from now.
    node.lease.heard_if_unknown(Instant::now());
    let mut views = node.topo.subscribe();
    node.tasks.spawn(ttl_loop(node.clone(), stop.clone()));
    let mut lost_since = None;
    let mut next_round = Instant::now();
    loop {
        let now = Instant::now();
        let verdict = node.lease.rejudge(now, node.me, &node.topology().view);
        if matches!(verdict, Verdict::Lost(_)) && lost_since.is_none() {
            // Lost just now: ask the seed at once, not at the next heartbeat. A seed restarted
            // after the nodes' deadlines answers the others first, and a node that heard from
            // them that they reach it refused requests until its own next tick: 45–65 ms and a
            // few requests per restart, most of an interval for a node whose heartbeats are
            // rarer than its peers' (found by a hunt, 2026-12-06). Its answer wakes this loop.
            node.lease.beat_now.notify_one();
        }
        lost_since = log_change(lost_since, &verdict, now, interval);
        let recheck = match verdict {
            Verdict::Holds { recheck } => recheck,
            Verdict::Lost(_) => None,
        };
        let (due, every) = {
            let judge = node.lease.judge();
            (judge.reports_due(), judge.ask_every())
        };
        if due.is_some_and(|due| due <= now) && next_round <= now {
            next_round = now + every;
            let node = node.clone();
            node.tasks.clone().spawn(async move { ask_peers(&node, every).await });
        }
        // Without a deadline (no TTL yet, or lost), look again within an interval.
        let mut wake = recheck.unwrap_or(now + interval);
        if let Some(due) = due {
            wake = wake.min(due.max(next_round));
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = node.lease.changed.notified() => {}
            _ = views.changed() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// How often the seed's TTL is read again once known: a seed restarted with another
/// `--node-ttl` changes it.
const TTL_REREAD: Duration = Duration::from_secs(60);

/// Keep the seed's TTL known, until `stop`: read every interval until the seed answers, then
/// every [`TTL_REREAD`]. A task of its own, so a seed that does not answer holds up these reads,
/// never the verdict.
async fn ttl_loop(node: Node, mut stop: watch::Receiver<bool>) {
    let interval = node.config.heartbeat_interval;
    let mut old_seed_said = false;
    loop {
        let wait = match node.peers.seed_ttl(&node.config.seed).await {
            Ok(Some(ttl)) => {
                node.lease.learned_ttl(ttl);
                TTL_REREAD.max(interval)
            }
            Ok(None) => {
                if !std::mem::replace(&mut old_seed_said, true) {
                    tracing::info!("the seed does not report its TTL (an earlier release): no membership lease");
                }
                TTL_REREAD.max(interval)
            }
            Err(e) => {
                tracing::debug!("reading the seed's TTL: {e}");
                interval
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// What is wrong with a heartbeat `interval` under the seed's `ttl`, if anything: a node stops
/// coordinating half a TTL and an interval after the seed's last answer, which must come before
/// the seed can expire it, a TTL after.
pub fn interval_too_long(interval: Duration, ttl: Duration) -> Option<String> {
    (interval >= ttl / 2).then(|| {
        format!(
            "--heartbeat-interval {interval:?} is not under half the seed's --node-ttl ({ttl:?}): the seed could expire this node before it stops coordinating, cut off from the seed (see the README's Membership); use an interval under {:?}",
            ttl / 2
        )
    })
}

/// What is wrong with a heartbeat `interval` over three eighths of the seed's `ttl`: nodes cut
/// off from the seed together lost it within an interval of each other, and each counts the
/// other only within half a TTL less an eighth ([`Judge::lost_together`]), so two such nodes may
/// both stop coordinating a TTL after their last answers, where the seed keeps them both.
pub fn interval_too_long_for_pairs(interval: Duration, ttl: Duration) -> Option<String> {
    (interval > ttl / 2 - ttl / 8).then(|| {
        format!(
            "--heartbeat-interval {interval:?} is over three eighths of the seed's --node-ttl ({ttl:?}): nodes cut off \
             from the seed together may not count on each other, and may stop coordinating a TTL after their last \
             answer (see the README's Membership); an interval up to {:?} keeps them going",
            ttl / 2 - ttl / 8
        )
    })
}

async fn ask_peers(node: &Node, within: Duration) {
    let topo = node.topology();
    let asks =
        topo.view.nodes.iter().filter(|m| m.id != node.me && m.state != NodeState::Leaving).map(|m| async move {
            match node.peers.call_within::<_, LeaseReply>(&m.addr, Kind::Lease, &LeaseRequest {}, within).await {
                Ok(r) => {
                    // A report from a newer view does not count (this node may have been removed
                    // in it): learn that view, from the seed or, while it is down, from the peers
                    // (`peer_views.rs`). A node left behind by the seed's last change counted
                    // every peer as reaching the seed, and stopped coordinating for the outage.
                    if r.epoch > node.epoch() {
                        let refreshing = node.clone();
                        node.tasks.spawn(async move { refreshing.refresh_noticed(r.epoch).await });
                    }
                    node.lease.report(
                        m.id,
                        Report { unheard: r.unheard_ms.map(Duration::from_millis), epoch: r.epoch, at: Instant::now() },
                    )
                }
                Err(e) => tracing::debug!("asking {} whether it hears the seed: {e}", m.addr),
            }
        });
    futures_util::future::join_all(asks).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkv_membership::{Member, View};

    fn view(states: &[NodeState]) -> View {
        let nodes = states
            .iter()
            .enumerate()
            .map(|(i, s)| Member {
                id: NodeId(i as u64 + 1),
                addr: format!("h:{}", i + 1),
                tokens: vec![i as u64].into(),
                state: *s,
                last_seen_ms: 0,
            })
            .collect();
        View { epoch: 7, nodes }
    }

    const MS: Duration = Duration::from_millis(1);

    /// TTL 2 s (quiet after 1 s), heartbeats every 100 ms, last heard at `t0`.
    fn judge(t0: Instant) -> Judge {
        let mut j = Judge::new(100 * MS);
        j.set_ttl(2000 * MS);
        j.heard(t0);
        j
    }

    fn quiet_report(at: Instant) -> Report {
        Report { unheard: Some(1500 * MS), epoch: 7, at }
    }

    #[test]
    fn without_the_seeds_ttl_or_a_first_answer_it_holds() {
        let t0 = Instant::now();
        let v = view(&[NodeState::Normal; 3]);
        let mut j = Judge::new(100 * MS);
        j.heard(t0);
        assert_eq!(j.verdict(t0 + 60_000 * MS, NodeId(1), &v), Verdict::Holds { recheck: None });
        let mut j = Judge::new(100 * MS);
        j.set_ttl(2000 * MS);
        assert_eq!(j.verdict(t0 + 60_000 * MS, NodeId(1), &v), Verdict::Holds { recheck: None });
    }

    #[test]
    fn a_heartbeat_interval_of_half_the_ttl_or_more_is_said_to_be_too_long() {
        assert_eq!(interval_too_long(100 * MS, 2000 * MS), None);
        assert_eq!(interval_too_long(999 * MS, 2000 * MS), None);
        let why = interval_too_long(1000 * MS, 2000 * MS).expect("half the TTL");
        assert!(why.contains("--heartbeat-interval 1s is not under half the seed's --node-ttl (2s)"), "{why}");
        assert!(why.contains("use an interval under 1s"), "{why}");
        assert!(interval_too_long(5000 * MS, 2000 * MS).is_some());
    }

    #[test]
    fn an_interval_over_three_eighths_of_the_ttl_is_said_to_risk_pairs_cut_off_together() {
        assert_eq!(interval_too_long_for_pairs(5000 * MS, 15_000 * MS), None, "the defaults");
        assert_eq!(interval_too_long_for_pairs(750 * MS, 2000 * MS), None);
        let why = interval_too_long_for_pairs(751 * MS, 2000 * MS).expect("over 750 ms");
        assert!(why.contains("an interval up to 750ms keeps them going"), "{why}");
    }

    #[test]
    fn a_new_ttl_from_a_restarted_seed_moves_the_deadline() {
        let t0 = Instant::now();
        let mut j = judge(t0);
        assert_eq!(j.set_ttl(4000 * MS), Some(2000 * MS), "the TTL known before");
        let v = view(&[NodeState::Normal; 5]);
        assert_eq!(j.verdict(t0 + 1100 * MS, NodeId(1), &v), Verdict::Holds { recheck: Some(t0 + 2100 * MS) });
    }

    #[test]
    fn it_holds_until_half_the_ttl_and_an_interval_without_the_seed() {
        let t0 = Instant::now();
        let j = judge(t0);
        let v = view(&[NodeState::Normal; 5]);
        assert_eq!(j.verdict(t0 + 1099 * MS, NodeId(1), &v), Verdict::Holds { recheck: Some(t0 + 1100 * MS) });
        let Verdict::Lost(why) = j.verdict(t0 + 1100 * MS, NodeId(1), &v) else { panic!("lost") };
        assert!(why.contains("no answer from the seed for 1100 ms, while the 4 other members still reach it"), "{why}");
        assert_eq!(j.reports_due(), Some(t0 + 900 * MS), "asks peers two rounds before its deadline");
        assert_eq!(j.ask_every(), 100 * MS, "every interval, at most an eighth of the TTL");
    }

    #[test]
    fn it_holds_while_another_member_reports_the_seed_silent_as_the_seed_then_expires_neither() {
        let t0 = Instant::now();
        let now = t0 + 1500 * MS;
        let v = view(&[NodeState::Normal; 5]);
        let mut j = judge(t0);
        j.report(NodeId(2), quiet_report(now - 150 * MS));
        assert_eq!(j.verdict(now, NodeId(1), &v), Verdict::Holds { recheck: Some(now + 50 * MS) });
        // A report older than two rounds of asking no longer counts.
        assert!(matches!(j.verdict(now + 51 * MS, NodeId(1), &v), Verdict::Lost(_)));
        // Nor one of a peer at a newer epoch (the seed moved on), nor one whose contact is fresh.
        j.report(NodeId(2), Report { epoch: 8, ..quiet_report(now) });
        assert!(matches!(j.verdict(now, NodeId(1), &v), Verdict::Lost(_)));
        j.report(NodeId(2), Report { unheard: Some(100 * MS), ..quiet_report(now) });
        assert!(matches!(j.verdict(now, NodeId(1), &v), Verdict::Lost(_)));
        // Silent for 800 ms when it answered 150 ms ago: not yet half the TTL. For 850: it is.
        j.report(NodeId(2), Report { unheard: Some(800 * MS), ..quiet_report(now - 150 * MS) });
        assert!(matches!(j.verdict(now, NodeId(1), &v), Verdict::Lost(_)));
        j.report(NodeId(2), Report { unheard: Some(850 * MS), ..quiet_report(now - 150 * MS) });
        assert!(matches!(j.verdict(now, NodeId(1), &v), Verdict::Holds { .. }));
        // It never heard the seed: silent.
        j.report(NodeId(2), Report { unheard: None, ..quiet_report(now) });
        assert!(matches!(j.verdict(now, NodeId(1), &v), Verdict::Holds { .. }));
    }

    /// Only normal members count, as the seed counts them: a joining or leaving peer quiet too
    /// does not hold the seed back from expiring this node, nor does this node's own silence
    /// when it is not normal itself; a view of this node and members on their way in or out is
    /// not "alone" (found by a code-reading hunt, 2026-12-07).
    #[test]
    fn only_normal_members_count_as_quiet_together() {
        let t0 = Instant::now();
        let now = t0 + 1500 * MS;
        let mut j = judge(t0);
        j.report(NodeId(2), quiet_report(now - 150 * MS));
        let joining_peer = view(&[NodeState::Normal, NodeState::Joining, NodeState::Normal]);
        assert!(matches!(j.verdict(now, NodeId(1), &joining_peer), Verdict::Lost(_)), "a joining peer");
        let normal_peer = view(&[NodeState::Normal, NodeState::Normal, NodeState::Normal]);
        assert!(matches!(j.verdict(now, NodeId(1), &normal_peer), Verdict::Holds { .. }), "a normal one");
        let joining_me = view(&[NodeState::Joining, NodeState::Normal, NodeState::Normal]);
        assert!(matches!(j.verdict(now, NodeId(1), &joining_me), Verdict::Lost(_)), "this node joining");
        let leaving_peer = view(&[NodeState::Normal, NodeState::Leaving]);
        assert!(matches!(j.verdict(now, NodeId(1), &leaving_peer), Verdict::Lost(_)), "not alone beside a leaver");
        let alone = view(&[NodeState::Normal]);
        assert!(matches!(j.verdict(now, NodeId(1), &alone), Verdict::Holds { .. }), "alone");
    }

    /// The default heartbeats (every third of the TTL) and a healthy peer: its report, taken
    /// just before its next heartbeat was answered and aged by two rounds of asking, passed for
    /// a cut-off peer's, and a node cut off alone went on coordinating after the seed could have
    /// expired it (found by reading, 2026-12-06).
    #[test]
    fn once_the_seed_may_have_expired_it_a_peer_counts_only_on_what_it_said() {
        let t0 = Instant::now();
        let v = view(&[NodeState::Normal; 3]);
        let j = |r: Report| {
            let mut j = judge(t0);
            j.report(NodeId(2), r);
            j
        };
        // Until a TTL after the last answer, less a round: aged as before, and judged again then.
        let now = t0 + 1850 * MS;
        let healthy = Report { unheard: Some(900 * MS), epoch: 7, at: now - 150 * MS };
        assert_eq!(j(healthy).verdict(now, NodeId(1), &v), Verdict::Holds { recheck: Some(t0 + 1900 * MS) });
        // From then on, only a peer that said it had gone half a TTL and an eighth without the seed.
        let now = t0 + 1900 * MS;
        let healthy = Report { at: now - 150 * MS, ..healthy };
        assert!(matches!(j(healthy).verdict(now, NodeId(1), &v), Verdict::Lost(_)), "aged, it would count");
        let short = Report { unheard: Some(1249 * MS), ..healthy };
        assert!(matches!(j(short).verdict(now, NodeId(1), &v), Verdict::Lost(_)));
        let never = Report { unheard: None, ..healthy };
        assert!(matches!(j(never).verdict(now, NodeId(1), &v), Verdict::Lost(_)), "what it did is unknown");
        let quiet = Report { unheard: Some(1250 * MS), ..healthy };
        assert_eq!(j(quiet).verdict(now, NodeId(1), &v), Verdict::Holds { recheck: Some(now + 50 * MS) });
    }

    /// Two nodes cut off from the seed at different times (found by review, 2026-12-06): the
    /// seed expires the first while the second still reaches it, or the second before the first
    /// is quiet, and neither learns it. Each one's report of the other, however quiet, does not
    /// count: their last answers are more than half the TTL less an eighth apart.
    #[test]
    fn a_peer_that_lost_the_seed_much_later_or_much_earlier_does_not_count() {
        let t0 = Instant::now();
        let v = view(&[NodeState::Normal; 3]);
        let verdict = |theirs: Instant, now: Instant| {
            let mut j = judge(t0);
            let unheard = now.saturating_duration_since(theirs);
            j.report(NodeId(2), Report { unheard: Some(unheard), epoch: 7, at: now });
            j.verdict(now, NodeId(1), &v)
        };
        // Cut off 1.5 s later: quiet by its own word from 2.75 s, when the seed (its pass at
        // 2.125 s seeing only this node quiet) may have expired this one.
        assert!(matches!(verdict(t0 + 1500 * MS, t0 + 2750 * MS), Verdict::Lost(_)));
        // Cut off 2 s before, and expired alone before this node's last answer.
        assert!(matches!(verdict(t0 - 2000 * MS, t0 + 1950 * MS), Verdict::Lost(_)));
        // Within 750 ms either way: cut off together, as far as the seed can tell.
        assert!(matches!(verdict(t0 + 750 * MS, t0 + 2000 * MS), Verdict::Holds { .. }));
        assert!(matches!(verdict(t0 - 750 * MS, t0 + 1950 * MS), Verdict::Holds { .. }));
        assert!(matches!(verdict(t0 + 751 * MS, t0 + 2001 * MS), Verdict::Lost(_)));
    }

    #[test]
    fn a_node_resumed_past_its_verdicts_deadline_refuses_until_judged_again() {
        let lease = Lease::new(100 * MS);
        let t0 = Instant::now();
        lease.judge().set_ttl(2000 * MS);
        lease.heard(t0);
        let v = view(&[NodeState::Normal; 3]);
        assert_eq!(lease.rejudge(t0, NodeId(1), &v), Verdict::Holds { recheck: Some(t0 + 1100 * MS) });
        assert_eq!(lease.judge().slack(), 250 * MS, "an eighth of the TTL, at most (1000 - 100) / 2 ms");
        assert_eq!(lease.refusal(), None);
        assert_eq!(lease.holds_until.load(Ordering::Acquire), lease.micros(t0 + 1350 * MS));
        // Paused past the deadline and its slack (here: the deadline moved to the start):
        // refused until the loop judges again.
        lease.holds_until.store(0, Ordering::Release);
        let why = lease.refusal().expect("refused");
        assert!(why.contains("lease ran out before it could judge it again"), "{why}");
        lease.heard(Instant::now());
        assert!(matches!(lease.rejudge(Instant::now(), NodeId(1), &v), Verdict::Holds { .. }));
        assert_eq!(lease.refusal(), None);
    }

    #[test]
    fn leaving_members_do_not_count_and_a_lone_member_holds() {
        let t0 = Instant::now();
        let now = t0 + 1500 * MS;
        let v = view(&[NodeState::Normal, NodeState::Normal, NodeState::Normal, NodeState::Leaving]);
        let mut j = judge(t0);
        j.report(NodeId(4), quiet_report(now));
        assert!(matches!(j.verdict(now, NodeId(1), &v), Verdict::Lost(_)), "a leaving peer's silence does not count");
        j.report(NodeId(2), quiet_report(now));
        assert!(matches!(j.verdict(now, NodeId(1), &v), Verdict::Holds { .. }));
        let one = view(&[NodeState::Normal]);
        assert!(matches!(judge(t0).verdict(now, NodeId(1), &one), Verdict::Holds { .. }));
    }

    #[test]
    fn an_answer_from_the_seed_renews_it_and_an_older_one_does_not_undo_that() {
        let t0 = Instant::now();
        let v = view(&[NodeState::Normal; 3]);
        let mut j = judge(t0);
        assert!(matches!(j.verdict(t0 + 2000 * MS, NodeId(1), &v), Verdict::Lost(_)));
        j.heard(t0 + 1900 * MS);
        j.heard(t0 + 100 * MS);
        assert_eq!(j.verdict(t0 + 2000 * MS, NodeId(1), &v), Verdict::Holds { recheck: Some(t0 + 3000 * MS) });
    }
}
