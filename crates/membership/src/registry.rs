//! The seed's membership state machine, without I/O: every call takes the current time in
//! milliseconds and returns the resulting view or an error, so the seed server only does HTTP
//! and a timer, and every rule here is unit-tested.
//!
//! Rules:
//! * every change that can move a key (a member added or removed, a state, address or token
//!   change) bumps `epoch`; heartbeats do not;
//! * a new node gets a fresh random id and tokens chosen to balance the ring (see
//!   `dkv_placement::choose_tokens`); it starts `joining` if some
//!   member is already `normal` (it must first copy its ranges), else `normal` (nothing to copy);
//! * a node that re-registers with an id keeps that id and its tokens;
//! * a member unseen for `ttl_ms` is removed (it crashed or was cut off; it will re-register);
//! * one address belongs to one member: a new registration from an address removes the old
//!   member there (a process that restarted without its data and got a new id);
//! * a seed that has just started adopts the view a returning node presents if it is newer than
//!   its own (see [`RegisterRequest`]); after one TTL it no longer does, since by then every live
//!   node has re-registered and an old view could only resurrect departed members.

use std::collections::BTreeMap;

use dkv_placement::{choose_tokens, DEFAULT_VNODES, TOKEN_CANDIDATES};

use crate::api::{RegisterRequest, RegisterResponse};
use crate::{Member, NodeId, NodeState, View};

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
    #[error("this seed serves cluster {seed:?}, the node belongs to cluster {node:?}; point the node at its own cluster's seed, or give both the same --cluster-name")]
    ForeignCluster { seed: String, node: String },
}

pub struct Registry {
    members: BTreeMap<NodeId, Member>,
    epoch: u64,
    ttl_ms: u64,
    started_ms: u64,
    cluster: String,
}

impl Registry {
    /// A registry of the cluster named `dkv` (the default `--cluster-name`).
    pub fn new(now_ms: u64, ttl_ms: u64) -> Self {
        Registry { members: BTreeMap::new(), epoch: 0, ttl_ms, started_ms: now_ms, cluster: "dkv".into() }
    }

    /// Serve the cluster called `name` instead.
    pub fn for_cluster(mut self, name: &str) -> Self {
        self.cluster = name.to_string();
        self
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn view(&self) -> View {
        View { epoch: self.epoch, nodes: self.members.values().cloned().collect() }
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
        if let Some(view) = &req.view {
            validate_view(view)?;
            self.adopt_if_fresh(view, now_ms);
        }
        let id = match req.id {
            Some(id) => id,
            None => self.fresh_id(),
        };
        let tokens = req.tokens.clone().unwrap_or_else(|| match self.members.get(&id) {
            Some(m) => m.tokens.clone(),
            None => self.new_tokens(id, vnodes),
        });
        let state = req.state.unwrap_or_else(|| match self.members.get(&id) {
            Some(m) => m.state,
            None if self.members.values().any(|m| m.state == NodeState::Normal) => NodeState::Joining,
            None => NodeState::Normal,
        });
        let displaced: Vec<NodeId> =
            self.members.values().filter(|m| m.addr == req.addr && m.id != id).map(|m| m.id).collect();
        let mut changed = !displaced.is_empty();
        for old in displaced {
            self.members.remove(&old);
        }
        let member = Member { id, addr: req.addr, tokens, state, last_seen_ms: now_ms };
        match self.members.get_mut(&id) {
            Some(m) => {
                changed |= m.addr != member.addr || m.tokens != member.tokens || m.state != member.state;
                *m = member;
            }
            None => {
                self.members.insert(id, member);
                changed = true;
            }
        }
        if changed {
            self.epoch += 1;
        }
        Ok(RegisterResponse { id, epoch: self.epoch, nodes: self.members.values().cloned().collect() })
    }

    pub fn heartbeat(&mut self, id: NodeId, now_ms: u64) -> Result<View, RegistryError> {
        let m = self.members.get_mut(&id).ok_or(RegistryError::UnknownNode(id))?;
        m.last_seen_ms = now_ms;
        Ok(self.view())
    }

    /// A joining node has copied its ranges and now owns them.
    pub fn ready(&mut self, id: NodeId, now_ms: u64) -> Result<View, RegistryError> {
        self.set_state(id, NodeState::Normal, now_ms)
    }

    /// `done == false`: the node starts handing off; `done == true`: it has, and is removed.
    /// Finishing a leave that the seed already forgot (expired, seed restarted) is not an error.
    pub fn leave(&mut self, id: NodeId, done: bool, now_ms: u64) -> Result<View, RegistryError> {
        if !done {
            return self.set_state(id, NodeState::Leaving, now_ms);
        }
        if self.members.remove(&id).is_some() {
            self.epoch += 1;
        }
        Ok(self.view())
    }

    /// Remove members unseen for longer than the TTL; returns who was removed.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Member> {
        let ttl = self.ttl_ms;
        let dead: Vec<NodeId> =
            self.members.values().filter(|m| now_ms.saturating_sub(m.last_seen_ms) > ttl).map(|m| m.id).collect();
        let removed: Vec<Member> = dead.iter().filter_map(|id| self.members.remove(id)).collect();
        if !removed.is_empty() {
            self.epoch += 1;
        }
        removed
    }

    fn set_state(&mut self, id: NodeId, state: NodeState, now_ms: u64) -> Result<View, RegistryError> {
        let m = self.members.get_mut(&id).ok_or(RegistryError::UnknownNode(id))?;
        m.last_seen_ms = now_ms;
        if m.state != state {
            m.state = state;
            self.epoch += 1;
        }
        Ok(self.view())
    }

    fn adopt_if_fresh(&mut self, view: &View, now_ms: u64) {
        let fresh = now_ms.saturating_sub(self.started_ms) <= self.ttl_ms;
        if !fresh || view.epoch <= self.epoch {
            return;
        }
        for m in &view.nodes {
            self.members.entry(m.id).or_insert_with(|| Member { last_seen_ms: now_ms, ..m.clone() });
        }
        self.epoch = view.epoch;
    }

    /// Tokens for a node joining now: balanced against the members that will remain.
    fn new_tokens(&self, id: NodeId, vnodes: usize) -> Vec<u64> {
        let staying: Vec<(NodeId, Vec<u64>)> = self
            .members
            .values()
            .filter(|m| m.state != NodeState::Leaving && m.id != id)
            .map(|m| (m.id, m.tokens.clone()))
            .collect();
        choose_tokens(&staying, id, id.0, vnodes, TOKEN_CANDIDATES)
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

/// `host:port`, as peers and clients will dial it: a host of printable ASCII without spaces and
/// a port from 1 to 65535 in plain decimal (no sign, no leading zero). What a node advertises
/// always is; anything else (a newline in the host, `h:+80`) could only break the peers that
/// try to reach it.
fn validate_addr(addr: &str) -> Result<(), RegistryError> {
    let bad = || RegistryError::BadRequest(format!("addr must be host:port, got {addr:?}"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic());
    let port_ok = !port.starts_with('0') && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    if !host_ok || !port_ok {
        return Err(bad());
    }
    Ok(())
}

/// A view a returning node presents is adopted wholesale by a fresh seed, so every member in it
/// must be one the seed would have registered itself.
fn validate_view(view: &View) -> Result<(), RegistryError> {
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
    }
    Ok(())
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
