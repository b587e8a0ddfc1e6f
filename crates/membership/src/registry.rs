//! The seed's membership state machine, without I/O: every call takes the current time in
//! milliseconds and returns the resulting view or an error, so the seed server only does HTTP
//! and a timer, and every rule here is unit-tested.
//!
//! Rules:
//! * every change that can move a key (a member added or removed, a state, address or token
//!   change) bumps `epoch`; heartbeats do not;
//! * a new node gets a fresh random id and tokens chosen to balance the ring (see
//!   `dkv_placement::choose_tokens`; the seed server chooses them outside its lock with a
//!   [`JoinPlan`]); it starts `joining` if some
//!   member is already `normal` (it must first copy its ranges), else `normal` (nothing to copy);
//! * a node that re-registers with an id keeps that id and its tokens;
//! * a member unseen for `ttl_ms` is removed (it crashed or was cut off; it will re-register),
//!   unless the seed itself did not run meanwhile (the seed server then calls
//!   [`Registry::seen_all`]), or two or more members are silent at once (they may hold the only
//!   copies of writes, or the seed may be cut off from them; see [`Expiry`]);
//! * a member the seed lists as `leaving` stays so when it registers again (its leave stands);
//!   one it expired while leaving is not taken back (after the seed's first TTL): it is
//!   answered the view without it, by which it finishes its leave;
//! * a `normal` member that registers again after the seed expired it (after the seed's first
//!   TTL, while some member is `normal`) comes back `joining`: it copies its ranges before any
//!   read goes to it, since it missed the writes of its absence;
//! * one address belongs to one member: a new registration from an address removes the old
//!   member there (a process that restarted without its data and got a new id);
//! * a seed that has just started adopts the view a returning node presents if it is newer than
//!   its own (see [`RegisterRequest`]); after one TTL it no longer does, since by then every live
//!   node has re-registered and an old view could only resurrect departed members. If what it
//!   ends up with differs from the presented view (it already had members of its own), the epoch
//!   is one past the view's, so an epoch never names two memberships. A newer view adopted over
//!   an older one is the later word on the members the older one brought: those it lacks left or
//!   were expired in between, and go (unless they spoke to this seed themselves: a `normal` one
//!   then comes back `joining`, as after an expiry); those it lists take its state, address and
//!   tokens;
//! * a new node that finds no `normal` member at a fresh seed is made `normal` on arrival, as the
//!   first member of a new cluster, only when the seed knows it starts one (`--new-cluster`, or
//!   a `--data-dir` without a record). Otherwise the seed may have restarted under a live
//!   cluster whose members have not come back yet, and such a node, `normal`, answered "not
//!   found" for their keys and acknowledged writes it alone held (found by trying, 2026-12-06):
//!   it waits ([`RegistryError::NotYet`]) until a member has come back, or one TTL has passed;
//! * a node that a fresh seed made `normal` on arrival, because no member was, owns ranges it has
//!   not copied when the members that held them return. So while the seed is fresh, the first
//!   `normal` member to come back (in a presented view, or registering with its own id) sends
//!   such nodes back to `joining`: they copy their ranges, then report ready, as any joining node
//!   does, and no read goes to them before;
//! * a seed restored from its record of the membership ([`Registry::restore`]) is never fresh:
//!   it knows its members and who left, whenever they come back. If a member holds a newer view
//!   than the record (which a seed that writes before it answers never lets happen, so the record
//!   was put back from an older copy), it drops the record and rebuilds as a seed that just
//!   started without one;
//! * a heartbeat tells the seed which view the node holds (epoch and [`Digest`]); the answer is
//!   "unchanged" when that is the current view, the members touched since when the
//!   [`ChangeLog`] passed through it, else the whole view. The unchanged answer costs one map
//!   lookup, whatever the size of the cluster.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dkv_placement::{choose_tokens, DEFAULT_VNODES, TOKEN_CANDIDATES};

use crate::api::{HeartbeatAnswer, RegisterRequest, RegisterResponse};
use crate::changes::{ChangeLog, Changes, LOG_ENTRIES};
use crate::digest::{member_hash, same_share};
use crate::{Digest, Member, NodeId, NodeState, View};

/// Longest member address: a host name of 253 bytes, a colon and a port.
pub const MAX_ADDR_BYTES: usize = 253 + 6;

/// Most virtual nodes a member may ask for; bounds the ring size a client can impose.
pub const MAX_VNODES: usize = 4096;

/// Largest epoch a presented view may carry: 2^53 - 1, the largest integer a JSON number keeps
/// exactly in JavaScript (the dashboard reads it). Real epochs grow by one per membership change
/// and never come near; a view past it is garbage, and adopting one near `u64::MAX` would make
/// the next change overflow.
pub const MAX_EPOCH: u64 = (1 << 53) - 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("unknown node {0}; register again with your id and tokens")]
    UnknownNode(NodeId),
    #[error("bad registration: {0}")]
    BadRequest(String),
    #[error("no member {0}: GET /nodes on the seed lists the members and their ids")]
    NoSuchMember(NodeId),
    #[error(
        "member {id} at {addr} sent a heartbeat {unseen_ms} ms ago: it is alive, so make it leave instead \
         (dkv leave --node http://{addr}, or https:// with --cacert where nodes speak TLS), which hands its keys \
         over first; remove only a member that is gone for \
         good (--force removes it anyway)"
    )]
    Alive { id: NodeId, addr: String, unseen_ms: u64 },
    #[error(
        "member {id} at {addr} is leaving and sent a heartbeat {unseen_ms} ms ago: its leave is under way, and it \
         goes once it has handed its keys over; wait for that (--force removes it now, and with it the keys it has \
         not handed over yet)"
    )]
    Leaving { id: NodeId, addr: String, unseen_ms: u64 },
    #[error("this seed serves cluster {seed:?}, the node belongs to cluster {node:?}; point the node at its own cluster's seed, or give both the same --cluster-name")]
    ForeignCluster { seed: String, node: String },
    #[error(
        "this seed started {since_ms} ms ago without a record of its members, and none has come back yet: a new \
         node waits until one has, or until one TTL ({ttl_ms} ms) has passed, lest it serve alone keys the members \
         hold; retry (a seed with --data-dir, or one started with --new-cluster, does not wait)"
    )]
    NotYet { since_ms: u64, ttl_ms: u64 },
    #[error(
        "member {id} is at {addr}, which sent a heartbeat {unseen_ms} ms ago: {IN_USE} (two processes on copies \
         of one data directory?); stop one. A node moved to a new address registers once the old one has been \
         silent for half a TTL ({half_ttl_ms} ms); retry"
    )]
    InUse { id: NodeId, addr: String, unseen_ms: u64, half_ttl_ms: u64 },
}

/// The words of [`RegistryError::InUse`] that tell it from the seed's other `409`s: a node
/// retries it (a node moved to a new address waits for its old one to fall silent).
pub const IN_USE: &str = "another process is this node";

/// What one expiry pass did.
///
/// A member is quiet when the seed has not heard from it for half a TTL (a heartbeat or more
/// missed), and expires after a whole TTL. When two or more members are quiet at once, the seed
/// expires none of them:
/// * they may hold the only copies of acknowledged writes: at `w=2`, a write needs two copies,
///   and two members cut off together (a partition, or the seed cut off from them) took writes
///   from each other. Expiring both would hand their ranges to members that never saw those
///   writes, and reads would answer with older values, or "not found";
/// * more than half of them failing together looks like the seed cut off from them, not them
///   all down. Expiring them would leave the few it still hears from owning every range (the
///   rule was this one alone until 2026-12-05 afternoon).
///
/// Kept in the view, the quiet members are what they are to their peers: unreachable replicas,
/// whose writes wait as hints and whose reads are answered by the others or fail for want of a
/// quorum. So the cluster stays correct, at the cost of availability for the keys they share if
/// they really died; an operator then removes the dead (`dkv remove`, `POST /remove`). One
/// member alone expires as ever, and so does a `leaving` one, counted in neither number: silent,
/// it most likely finished its leave and could not say so; if it did not, it hands off by the
/// seed's view when it is heard again. So does a `joining` one: every write it took was
/// acknowledged by W `normal` replicas besides it, so it holds no write nobody else does, and it
/// joins again when heard. Until 2026-12-06 joining members held expiry back too: two
/// registrations that never sent a heartbeat (or two joins that died) stopped every write to
/// their ranges until an operator removed them (found by trying).
///
/// When the seed stops holding back (the others are heard again), a member still quiet gets
/// half a TTL more before it expires, however long it was silent: it may have kept serving
/// while the others were quiet too, and needs that long to find out they are not (its lease,
/// `life/lease.rs` in the node crate).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    /// The members removed.
    pub removed: Vec<Member>,
    /// Members past the TTL kept in the view, because two or more members are quiet.
    pub withheld: Vec<NodeId>,
    /// `normal` members unheard from for half a TTL or more, and the `normal` members.
    pub quiet: usize,
    pub members: usize,
}

pub struct Registry {
    /// A hash map, so that a heartbeat's lookup costs the same at any size; views list the
    /// members sorted by id ([`Registry::listed`]).
    members: HashMap<NodeId, Member>,
    epoch: u64,
    /// The digest of `members`, kept up to date member by member (see [`Digest`]).
    digest: Digest,
    /// The recent changes, for heartbeats from nodes a few epochs behind.
    log: ChangeLog,
    ttl_ms: u64,
    started_ms: u64,
    cluster: String,
    /// Members this seed made `normal` on arrival, while fresh, because no member was: see the
    /// module's rules.
    unpulled: Vec<NodeId>,
    /// Whether the last expiry pass held back (see [`Expiry`]).
    holding: bool,
    /// Started from the seed's own record of the membership ([`Registry::restore`]): never
    /// fresh, since it knows every member and every departure.
    restored: bool,
    /// The restored record turned out older than the cluster and was dropped: its epoch, and the
    /// newer one a member held (see [`Registry::take_dropped_record`]).
    dropped: Option<(u64, u64)>,
    /// Members this fresh seed holds only because an adopted view listed them: not heard from
    /// themselves since (see [`Registry::adopt_if_fresh`]).
    adopted: HashSet<NodeId>,
    /// Members whose address this seed took from a view another node presented, not from their
    /// own registration: a member's heartbeats carry its id alone, so they vouch for the member
    /// but not for that address, which may be one it has since left (see
    /// [`Registry::refuse_a_second_process`]).
    hearsay: HashSet<NodeId>,
    /// This seed may have restarted under a live cluster (no `--new-cluster`, no record): while
    /// fresh, a new node that finds no member waits ([`RegistryError::NotYet`]; see the
    /// module's rules). Otherwise it is the first member of a new cluster at once.
    holds_new_nodes: bool,
}

impl Registry {
    /// A registry of the cluster named `dkv` (the default `--cluster-name`).
    pub fn new(now_ms: u64, ttl_ms: u64) -> Self {
        Registry {
            members: HashMap::new(),
            epoch: 0,
            digest: Digest(0),
            log: ChangeLog::new(0, Digest(0), LOG_ENTRIES),
            ttl_ms,
            started_ms: now_ms,
            cluster: "dkv".into(),
            unpulled: Vec::new(),
            holding: false,
            restored: false,
            dropped: None,
            adopted: HashSet::new(),
            hearsay: HashSet::new(),
            holds_new_nodes: false,
        }
    }

    /// This seed may have restarted under a live cluster: while it is fresh, a new node that
    /// finds no member waits (see the module's rules).
    pub fn hold_new_nodes_while_fresh(&mut self) {
        self.holds_new_nodes = true;
    }

    /// This seed starts a new cluster: a new node that finds no member is its first member at
    /// once, also while the seed is fresh.
    pub fn start_a_new_cluster(&mut self) {
        self.holds_new_nodes = false;
    }

    /// Serve the cluster called `name` instead.
    pub fn for_cluster(mut self, name: &str) -> Self {
        self.cluster = name.to_string();
        self
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn view(&self) -> View {
        View { epoch: self.epoch, nodes: self.listed() }
    }

    pub fn register(&mut self, req: RegisterRequest, now_ms: u64) -> Result<RegisterResponse, RegistryError> {
        validate_addr(&req.addr)?;
        if let Some(c) = req.cluster.as_ref().filter(|c| **c != self.cluster) {
            return Err(RegistryError::ForeignCluster { seed: self.cluster.clone(), node: c.clone() });
        }
        let vnodes = req.vnodes.unwrap_or(DEFAULT_VNODES);
        if vnodes == 0 || vnodes > MAX_VNODES {
            return Err(RegistryError::BadRequest(format!("vnodes must be 1..={MAX_VNODES}, got {vnodes}")));
        }
        if matches!(&req.tokens, Some(t) if t.is_empty() || t.len() > MAX_VNODES) {
            return Err(RegistryError::BadRequest(format!("tokens must hold 1..={MAX_VNODES} entries")));
        }
        if let Some(t) = req.tokens.as_ref().filter(|t| !distinct(t)) {
            return Err(RegistryError::BadRequest(format!(
                "tokens must be distinct: {} of {} are repeats",
                repeats(t),
                t.len()
            )));
        }
        if let Some(view) = &req.view {
            validate_view(view)?;
        }
        // Before the presented view changes anything: a registration refused must leave the
        // membership as it was (it adopted the view first, found by review, 2026-12-06).
        if let Some(id) = req.id {
            self.refuse_a_second_process(id, &req.addr, now_ms)?;
        }
        let mut owners_returned = false;
        if let Some(view) = &req.view {
            self.drop_record_if_behind(view.epoch, now_ms);
            owners_returned = self.adopt_if_fresh(view, now_ms);
        }
        let id = match req.id {
            Some(id) => id,
            None => self.fresh_id(),
        };
        self.heard_from(id);
        let arriving = !self.members.contains_key(&id);
        // A leaving member this seed expired (after its first TTL) is not taken back: as
        // `leaving` it would serve reads again, with what it held before its absence, beside
        // the members that took over its ranges meanwhile. It is answered the view without it,
        // and hands its keys over by that view before it exits (the node's
        // `forgotten_while_leaving`).
        if arriving && req.state == Some(NodeState::Leaving) && req.id.is_some() && !self.fresh(now_ms) {
            return Ok(RegisterResponse {
                id,
                epoch: self.epoch,
                nodes: self.listed(),
                seed_fresh: self.fresh(now_ms),
            });
        }
        owners_returned |= arriving && req.state == Some(NodeState::Normal);
        let mut touched = if owners_returned { self.send_back_unpulled(now_ms) } else { Vec::new() };
        let no_owner = !self.members.values().any(|m| m.state == NodeState::Normal);
        if arriving && req.state.is_none() && no_owner && self.fresh(now_ms) {
            if self.holds_new_nodes {
                let since_ms = now_ms.saturating_sub(self.started_ms);
                return Err(RegistryError::NotYet { since_ms, ttl_ms: self.ttl_ms });
            }
            self.unpulled.push(id);
        }
        let tokens = req.tokens.clone().map(Into::into).unwrap_or_else(|| match self.members.get(&id) {
            Some(m) => m.tokens.clone(),
            None => self.new_tokens(id, vnodes).into(),
        });
        let state = match (req.state, self.members.get(&id)) {
            // A leave the seed recorded stands: a node stopped right after it asked to leave may
            // not have saved the view that says so, and registers as it was. It finishes the
            // leave (as a ready that crosses a leave leaves the node leaving).
            (_, Some(m)) if m.state == NodeState::Leaving => NodeState::Leaving,
            // A member back after this seed expired it (not one returning to a seed that just
            // restarted) missed every write since: the others took it out of their views. As
            // `normal` it would answer reads at once with what it holds, and a read of it and
            // one replica that has not yet got a write acknowledged by the others returns the
            // value before that write. So it joins again: it copies its ranges, written to all
            // the while, and only then serves reads. Unless no member is `normal`: then it is
            // the one that holds the data.
            (Some(NodeState::Normal), None) if req.id.is_some() && !self.fresh(now_ms) && !no_owner => {
                NodeState::Joining
            }
            // Only its `ready` makes a joining member normal, never a registration: the one
            // above may be sent again (its answer lost, the node retrying as it was), and a
            // member sent back to joining may register from a saved view that says `normal`.
            // Either way it has not copied its ranges yet.
            (Some(NodeState::Normal), Some(m)) if m.state == NodeState::Joining && !no_owner => NodeState::Joining,
            (Some(state), _) => state,
            (None, Some(m)) => m.state,
            (None, None) if no_owner => NodeState::Normal,
            (None, None) => NodeState::Joining,
        };
        let replaced: Vec<NodeId> =
            self.members.values().filter(|m| m.addr == req.addr && m.id != id).map(|m| m.id).collect();
        for old in replaced {
            self.take(old);
            touched.push(old);
        }
        if self.put(Member { id, addr: req.addr, tokens, state, last_seen_ms: now_ms }) {
            touched.push(id);
        }
        self.hearsay.remove(&id); // its address is its own word now
        self.changed(touched);
        Ok(RegisterResponse { id, epoch: self.epoch, nodes: self.listed(), seed_fresh: self.fresh(now_ms) })
    }

    /// For the registration of a new node (no id, no tokens): a fresh id and what choosing its
    /// tokens needs, so the seed can choose them without holding the registry (see [`JoinPlan`]);
    /// `None` for any other registration, which [`Registry::register`] handles alone.
    pub fn plan_join(&self, req: &RegisterRequest) -> Option<JoinPlan> {
        let vnodes = req.vnodes.unwrap_or(DEFAULT_VNODES);
        let foreign = req.cluster.as_ref().is_some_and(|c| *c != self.cluster);
        let refused = foreign || !(1..=MAX_VNODES).contains(&vnodes) || validate_addr(&req.addr).is_err();
        if req.id.is_some() || req.tokens.is_some() || req.view.is_some() || refused {
            return None;
        }
        let id = self.fresh_id();
        Some(JoinPlan { id, staying: self.staying(id), vnodes })
    }

    pub fn heartbeat(&mut self, id: NodeId, now_ms: u64) -> Result<View, RegistryError> {
        self.heard_from(id);
        let m = self.members.get_mut(&id).ok_or(RegistryError::UnknownNode(id))?;
        m.last_seen_ms = now_ms;
        Ok(self.view())
    }

    /// A member registering from another address while the seed still hears from it at its
    /// own is a second process with its id (a copy of its data directory, or the same one
    /// started twice): taken, it moved the member to its address, and the first one went on
    /// serving, unlisted, acknowledging writes that reads through the member did not find (found
    /// by trying, 2026-12-06). It is refused until the member has been silent for half a TTL, the
    /// bound `remove` also counts as alive, which is also what a node started again at a new
    /// address waits. Only an address the member registered itself counts: one taken from a
    /// view another node presented to this fresh seed may be one the member has left since, and
    /// its own heartbeats (which carry no address) would have kept it out for good, the cluster
    /// sending its ranges to the old address (found by review, 2026-12-06).
    fn refuse_a_second_process(&self, id: NodeId, addr: &str, now_ms: u64) -> Result<(), RegistryError> {
        let Some(m) = self.members.get(&id).filter(|m| m.addr != addr && !self.hearsay.contains(&id)) else {
            return Ok(());
        };
        let unseen_ms = now_ms.saturating_sub(m.last_seen_ms);
        if unseen_ms > self.ttl_ms / 2 {
            return Ok(());
        }
        Err(RegistryError::InUse { id, addr: m.addr.clone(), unseen_ms, half_ttl_ms: self.ttl_ms / 2 })
    }

    /// `id` spoke to this seed itself: it is no longer a member only an adopted view vouched for.
    fn heard_from(&mut self, id: NodeId) {
        if !self.adopted.is_empty() {
            self.adopted.remove(&id);
        }
    }

    /// A heartbeat from a node that holds the view `known` (epoch and digest; `None` from a node
    /// that does not say): "unchanged" (neither `nodes` nor `changes`) when that is the current
    /// view, else the changes since it when the log has them, else the whole view. The answer's
    /// `now_ms` is left for the caller, which knows when it sends it.
    pub fn heartbeat_since(
        &mut self,
        id: NodeId,
        known: Option<(u64, Digest)>,
        now_ms: u64,
    ) -> Result<HeartbeatAnswer, RegistryError> {
        if let Some((epoch, _)) = known {
            self.drop_record_if_behind(epoch, now_ms);
        }
        self.heard_from(id);
        let m = self.members.get_mut(&id).ok_or(RegistryError::UnknownNode(id))?;
        m.last_seen_ms = now_ms;
        let mut answer = HeartbeatAnswer {
            epoch: self.epoch,
            digest: Some(self.digest),
            nodes: None,
            changes: None,
            now_ms: None,
            clock: None,
        };
        if known == Some((self.epoch, self.digest)) {
            return Ok(answer);
        }
        match known.and_then(|(epoch, digest)| Some((epoch, self.log.touched_since(epoch, digest)?))) {
            Some((since, touched)) => {
                let mut changes = Changes { since, ..Default::default() };
                for id in touched {
                    match self.members.get(&id) {
                        Some(m) => changes.members.push(m.clone()),
                        None => changes.removed.push(id),
                    }
                }
                answer.changes = Some(changes);
            }
            None => answer.nodes = Some(self.listed()),
        }
        Ok(answer)
    }

    /// A joining node has copied its ranges and now owns them. A node that started leaving
    /// meanwhile stays `leaving`: its ready crossed its leave (a leave may start during a join),
    /// and a leaving node must not be given reads again.
    pub fn ready(&mut self, id: NodeId, now_ms: u64) -> Result<View, RegistryError> {
        self.heard_from(id);
        match self.members.get_mut(&id) {
            Some(m) if m.state == NodeState::Leaving => {
                m.last_seen_ms = now_ms;
                Ok(self.view())
            }
            _ => self.set_state(id, NodeState::Normal, now_ms),
        }
    }

    /// `done == false`: the node starts handing off; `done == true`: it has, and is removed.
    /// Finishing a leave that the seed already forgot (expired, seed restarted) is not an error.
    pub fn leave(&mut self, id: NodeId, done: bool, now_ms: u64) -> Result<View, RegistryError> {
        self.heard_from(id);
        if !done {
            return self.set_state(id, NodeState::Leaving, now_ms);
        }
        if self.take(id).is_some() {
            self.changed(vec![id]);
        }
        Ok(self.view())
    }

    /// A leaving member takes its leave back and is `normal` again: its leave found no member
    /// left to take its keys (every other one left, expired or is leaving), so it keeps them and
    /// serves them. A member that is not leaving is left as it is.
    pub fn withdraw_leave(&mut self, id: NodeId, now_ms: u64) -> Result<View, RegistryError> {
        self.heard_from(id);
        let m = self.members.get(&id).ok_or(RegistryError::UnknownNode(id))?;
        if m.state != NodeState::Leaving {
            return Ok(self.view());
        }
        self.set_state(id, NodeState::Normal, now_ms)
    }

    /// An operator takes out a member that is gone for good ([`crate::api::RemoveRequest`]):
    /// refused for one heard from within half a TTL, unless `force`. The others then take over
    /// its ranges, as after an expiry.
    pub fn remove(&mut self, id: NodeId, force: bool, now_ms: u64) -> Result<(Member, View), RegistryError> {
        let m = self.members.get(&id).ok_or(RegistryError::NoSuchMember(id))?;
        let unseen_ms = now_ms.saturating_sub(m.last_seen_ms);
        if !force && unseen_ms <= self.ttl_ms / 2 {
            let (id, addr) = (id, m.addr.clone());
            return Err(match m.state {
                NodeState::Leaving => RegistryError::Leaving { id, addr, unseen_ms },
                _ => RegistryError::Alive { id, addr, unseen_ms },
            });
        }
        let removed = self.take(id).expect("a member");
        self.changed(vec![id]);
        Ok((removed, self.view()))
    }

    /// Count every member as heard from at `now_ms`. For a seed that did not run for a while
    /// (paused, or its machine frozen): it heard no heartbeat meanwhile, so the members' silence
    /// says nothing of them, and expiring them all at once would leave the first to register
    /// again alone in a view of one, serving every key by itself.
    pub fn seen_all(&mut self, now_ms: u64) {
        for m in self.members.values_mut() {
            m.last_seen_ms = m.last_seen_ms.max(now_ms);
        }
    }

    /// Remove members unseen for longer than the TTL, unless two or more members are quiet at
    /// once (see [`Expiry`]); says who was removed and who was kept.
    pub fn expire(&mut self, now_ms: u64) -> Expiry {
        let quiet_after = self.ttl_ms / 2;
        let staying = |m: &Member| m.state == NodeState::Normal;
        let unseen = |m: &Member| now_ms.saturating_sub(m.last_seen_ms);
        let quiet = self.members.values().filter(|m| staying(m) && unseen(m) > quiet_after).count();
        let members = self.members.values().filter(|m| staying(m)).count();
        let hold_back = quiet >= 2;
        if self.holding && !hold_back {
            // Holding back ends: whoever is still quiet gets half a TTL more (see [`Expiry`]).
            let floor = now_ms.saturating_sub(quiet_after);
            for m in self.members.values_mut().filter(|m| staying(m)) {
                m.last_seen_ms = m.last_seen_ms.max(floor);
            }
        }
        self.holding = hold_back;
        let (mut dead, mut withheld) = (Vec::new(), Vec::new());
        for m in self.members.values().filter(|m| unseen(m) > self.ttl_ms) {
            let kept = hold_back && m.state == NodeState::Normal;
            if kept { &mut withheld } else { &mut dead }.push(m.id);
        }
        let removed: Vec<Member> = dead.iter().filter_map(|id| self.take(*id)).collect();
        self.changed(removed.iter().map(|m| m.id).collect());
        Expiry { removed, withheld, quiet, members }
    }

    fn set_state(&mut self, id: NodeId, state: NodeState, now_ms: u64) -> Result<View, RegistryError> {
        let m = self.members.get(&id).ok_or(RegistryError::UnknownNode(id))?;
        let next = Member { state, last_seen_ms: now_ms, ..m.clone() };
        if self.put(next) {
            self.changed(vec![id]);
        }
        Ok(self.view())
    }

    /// How long a member may go unheard before it expires, in ms.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// Within one TTL of the seed's start: live nodes may not all have re-registered yet. A seed
    /// restored from its record is never fresh: it knows its members already.
    pub fn fresh(&self, now_ms: u64) -> bool {
        !self.restored && now_ms.saturating_sub(self.started_ms) <= self.ttl_ms
    }

    /// Start from the view this seed recorded before it stopped (the seed's `--data-dir`): its
    /// members, each as heard from at `now_ms`, at its epoch. Called once, on a new registry.
    ///
    /// The record holds every view the seed answered with (it is written before the answer), so
    /// it is the newest view any node holds, and it says who left or was expired. So the seed is
    /// not fresh (see [`Registry::fresh`]): it adopts no view a node presents, a member it
    /// expired comes back `joining` and a newcomer `joining` beside the recorded owners, whenever
    /// they arrive. Members that do not come back are expired as silent ones always are: one
    /// alone after a TTL, two or more not at all (see [`Expiry`]). A record older than the
    /// cluster is dropped at the first member that shows it (`drop_record_if_behind`).
    pub fn restore(&mut self, view: &View, now_ms: u64) -> Result<(), RegistryError> {
        validate_view(view)?;
        debug_assert!(self.members.is_empty(), "restored once, on a new registry");
        for m in &view.nodes {
            self.put(Member { last_seen_ms: now_ms, ..m.clone() });
        }
        self.epoch = view.epoch;
        self.log.reset(self.epoch, self.digest);
        self.restored = true;
        Ok(())
    }

    /// A member holds a view of epoch `held`, newer than this seed's: if the seed was restored
    /// from its record, the record is older than the cluster (a backup put back, an old volume
    /// the seed was moved to), since a seed writes every view before it answers with it. The
    /// seed then forgets it and starts again as a seed without a record: empty and fresh, so
    /// every member is told it is unknown, registers again with its view, and the membership is
    /// rebuilt from the views they present. Said once by [`Registry::take_dropped_record`].
    fn drop_record_if_behind(&mut self, held: u64, now_ms: u64) {
        if !self.restored || held <= self.epoch {
            return;
        }
        let dropped = (self.epoch, held);
        *self = Registry::new(now_ms, self.ttl_ms).for_cluster(&self.cluster);
        self.dropped = Some(dropped);
    }

    /// The record dropped by the last call, if one was: the record's epoch and the newer one a
    /// member held (for the seed to say so).
    pub fn take_dropped_record(&mut self) -> Option<(u64, u64)> {
        self.dropped.take()
    }

    /// Adopt a returning node's view if the seed is fresh and the view newer; returns whether a
    /// `normal` member came back with it.
    fn adopt_if_fresh(&mut self, view: &View, now_ms: u64) -> bool {
        if !self.fresh(now_ms) || view.epoch <= self.epoch {
            return false;
        }
        let mut owners_returned = false;
        // What an older adopted view said of members it lists that this one does not: they
        // left or were expired since. Brought only by that view, they go; back themselves, a
        // `normal` one missed the writes since it was expired, and joins again.
        let departed: Vec<NodeId> = self.members.keys().filter(|id| view.member(**id).is_none()).copied().collect();
        for id in departed {
            if self.adopted.contains(&id) {
                self.take(id);
            } else if let Some(m) = self.members.get(&id).filter(|m| m.state == NodeState::Normal) {
                let joining = Member { state: NodeState::Joining, ..m.clone() };
                self.put(joining);
            }
        }
        for m in &view.nodes {
            let adopted_before = self.adopted.contains(&m.id);
            if adopted_before || !self.members.contains_key(&m.id) {
                owners_returned |= m.state == NodeState::Normal && !adopted_before;
                self.put(Member { last_seen_ms: now_ms, ..m.clone() });
                self.adopted.insert(m.id);
                self.hearsay.insert(m.id);
            }
        }
        // Nodes that hold the presented view must not take this one for it.
        let same = self.digest == view.digest();
        self.epoch = if same { view.epoch } else { view.epoch + 1 };
        self.log.reset(self.epoch, self.digest);
        owners_returned
    }

    /// Members that hold data came back: every member this seed made `normal` without a copy of
    /// its ranges goes back to `joining` (while the seed is fresh; after, they are owners like
    /// any other). Returns the members changed.
    fn send_back_unpulled(&mut self, now_ms: u64) -> Vec<NodeId> {
        let unpulled = std::mem::take(&mut self.unpulled);
        if !self.fresh(now_ms) {
            return Vec::new();
        }
        let mut sent_back = Vec::new();
        for id in unpulled {
            let Some(m) = self.members.get(&id).filter(|m| m.state == NodeState::Normal) else { continue };
            let joining = Member { state: NodeState::Joining, ..m.clone() };
            self.put(joining);
            sent_back.push(id);
        }
        sent_back
    }

    /// Every member, sorted by id.
    fn listed(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self.members.values().cloned().collect();
        members.sort_unstable_by_key(|m| m.id);
        members
    }

    /// Insert or replace a member, keeping the digest; returns whether placement changed (a
    /// new member, or another address, state or tokens).
    fn put(&mut self, member: Member) -> bool {
        match self.members.get_mut(&member.id) {
            Some(m) if same_share(m, &member) => {
                m.last_seen_ms = member.last_seen_ms;
                false
            }
            Some(m) => {
                self.digest.0 ^= member_hash(m) ^ member_hash(&member);
                *m = member;
                true
            }
            None => {
                self.digest.0 ^= member_hash(&member);
                self.members.insert(member.id, member);
                true
            }
        }
    }

    fn take(&mut self, id: NodeId) -> Option<Member> {
        self.heard_from(id);
        self.hearsay.remove(&id);
        let m = self.members.remove(&id)?;
        self.digest.0 ^= member_hash(&m);
        Some(m)
    }

    /// Close a change that touched `touched` (nothing when it is empty): a new epoch.
    fn changed(&mut self, touched: Vec<NodeId>) {
        if touched.is_empty() {
            return;
        }
        self.epoch += 1;
        self.log.record(self.epoch, self.digest, touched);
    }

    /// Tokens for a node joining now: balanced against the members that will remain.
    fn new_tokens(&self, id: NodeId, vnodes: usize) -> Vec<u64> {
        JoinPlan { id, staying: self.staying(id), vnodes }.tokens()
    }

    /// The members that will remain, with their tokens, sorted by id.
    fn staying(&self, id: NodeId) -> Vec<(NodeId, Arc<[u64]>)> {
        let mut staying: Vec<(NodeId, Arc<[u64]>)> = self
            .members
            .values()
            .filter(|m| m.state != NodeState::Leaving && m.id != id)
            .map(|m| (m.id, m.tokens.clone()))
            .collect();
        staying.sort_unstable_by_key(|m| m.0); // the same choice for the same membership
        staying
    }

    fn fresh_id(&self) -> NodeId {
        loop {
            let id = NodeId(rand::random::<u64>());
            if id.0 != 0 && !self.members.contains_key(&id) {
                return id;
            }
        }
    }
}

/// A new node's tokens, to choose outside the registry's lock: the choice is the most balanced
/// of 64 candidate rings of every member, O(members) each (half a second at 1 000 members, 7 s at
/// 10 000: `examples/registry_bench.rs`), and heartbeats must not wait for it. Register the node
/// with `id` and the chosen tokens; the membership may have moved meanwhile, which only makes the
/// choice a little less balanced.
pub struct JoinPlan {
    pub id: NodeId,
    staying: Vec<(NodeId, Arc<[u64]>)>,
    vnodes: usize,
}

impl JoinPlan {
    pub fn tokens(&self) -> Vec<u64> {
        choose_tokens(&self.staying, self.id, self.id.0, self.vnodes, TOKEN_CANDIDATES)
    }
}

/// `host:port`, as peers and clients will dial it: a host of printable ASCII without spaces and
/// a port from 1 to 65535 in plain decimal (no sign, no leading zero). What a node advertises
/// always is; anything else (a newline in the host, `h:+80`) could only break the peers that
/// try to reach it.
fn validate_addr(addr: &str) -> Result<(), RegistryError> {
    // An address rides in every view and every change list: one of megabytes would make each
    // of them megabytes.
    if addr.len() > MAX_ADDR_BYTES {
        return Err(RegistryError::BadRequest(format!(
            "addr of {} bytes is over {MAX_ADDR_BYTES} (a host name holds at most 253)",
            addr.len()
        )));
    }
    let bad = || RegistryError::BadRequest(format!("addr must be host:port, got {addr:?}"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    // No `/`: `http://10.0.0.5:8080` was taken for host `http://10.0.0.5`, a member nothing
    // reached (and no `@`, `?` or `#`, which would read as parts of a URL where it is dialled).
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic() && !b"/@?#".contains(&b));
    let port_ok = !port.starts_with('0') && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    if !host_ok || !port_ok {
        return Err(bad());
    }
    Ok(())
}

/// A view a returning node presents is adopted wholesale by a fresh seed, so every member in it
/// must be one the seed would have registered itself. A node checks a view a peer sends it the
/// same way (`peer_views.rs` in the node crate).
pub fn validate_view(view: &View) -> Result<(), RegistryError> {
    if view.epoch > MAX_EPOCH {
        return Err(RegistryError::BadRequest(format!("view epoch {} is over {MAX_EPOCH}", view.epoch)));
    }
    for m in &view.nodes {
        validate_addr(&m.addr)?;
        if m.tokens.is_empty() || m.tokens.len() > MAX_VNODES {
            return Err(RegistryError::BadRequest(format!(
                "view member {} has {} tokens; members hold 1..={MAX_VNODES}",
                m.id,
                m.tokens.len()
            )));
        }
        if !distinct(&m.tokens) {
            return Err(RegistryError::BadRequest(format!("view member {} has tokens given twice", m.id)));
        }
    }
    Ok(())
}

/// Whether no token is given twice: a member's tokens are its places on the ring, and one place
/// twice is a registration no node sends (the seed took `[1, 1, 1]`, found by trying, 2026-12-06).
fn distinct(tokens: &[u64]) -> bool {
    repeats(tokens) == 0
}

/// How many of `tokens` repeat an earlier one.
fn repeats(tokens: &[u64]) -> usize {
    let mut seen = HashSet::with_capacity(tokens.len());
    tokens.iter().filter(|t| !seen.insert(**t)).count()
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
