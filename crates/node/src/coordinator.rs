//! Coordinating reads and writes of one key across its replicas.
//!
//! The coordinator stamps each write with a version from its hybrid clock and sends it to every
//! node in the key's write set (its replicas on the read ring plus any node joining into, or taking
//! over, the range) through the quorum helper. This release requires every node in the write set
//! to acknowledge, which with one copy per key means the owner — and during a join or leave also
//! the new owner, so a range being moved never misses a write. Reads ask the key's first replica.
//!
//! A replica that has seen a newer membership epoch refuses with "stale epoch"; the coordinator
//! then refreshes its view and re-plans, so a write never lands only on a node that has already
//! handed its range away.

use bytes::Bytes;
use dkv_membership::{NodeId, Topology};
use dkv_placement::key_hash;
use dkv_storage::{Applied, Entry, Version};

use crate::error::{NodeError, PeerError};
use crate::node::Node;
use crate::peer::is_stale_epoch;
use crate::quorum::{quorum, QuorumError};
use crate::wire::{self, ApplyKind, ApplyRequest, KeyEntry, ReadRequest, ReadResponse};

/// Re-plans after a "stale epoch" answer before giving up.
const STALE_RETRIES: usize = 3;

impl Node {
    /// Write `value` (or a tombstone for `None`) under a fresh version.
    pub async fn coordinate_write(&self, key: Bytes, value: Option<Bytes>) -> Result<(), NodeError> {
        let hash = key_hash(&key);
        let entry = Entry { version: Version { ts: self.hlc.now(), node: self.me.0 }, value };
        let kv = KeyEntry { key, entry };
        {
            let _writes = self.fence.read().await;
            if self.topology().sole_replica(hash) == Some(self.me) {
                // The common single-copy case stays small and allocation-light.
                self.apply_local(vec![kv]);
                return Ok(());
            }
        }
        Box::pin(self.write_to_replicas(hash, kv)).await
    }

    async fn write_to_replicas(&self, hash: u64, kv: KeyEntry) -> Result<(), NodeError> {
        for attempt in 1..=STALE_RETRIES {
            let result = {
                let _writes = self.fence.read().await;
                let topo = self.topology();
                let targets = topo.placement(hash).write;
                if targets.is_empty() {
                    return Err(NodeError::Unavailable(
                        "no node owns this key: the cluster has no serving members".into(),
                    ));
                }
                quorum(&targets, targets.len(), |id| self.apply_on(&topo, id, ApplyKind::Write, vec![kv.clone()])).await
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if attempt < STALE_RETRIES && stale(&e) => self.refresh().await,
                Err(e) => return Err(NodeError::Unavailable(format!("write not acknowledged: {e}"))),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The newest live value of `key`, or `None` if absent or deleted.
    pub async fn coordinate_read(&self, key: Bytes) -> Result<Option<Bytes>, NodeError> {
        let hash = key_hash(&key);
        if self.topology().coordinator(hash) == Some(self.me) {
            return Ok(self.engine.get(hash, &key).and_then(|e| e.value));
        }
        Box::pin(self.read_from_replicas(hash, key)).await
    }

    async fn read_from_replicas(&self, hash: u64, key: Bytes) -> Result<Option<Bytes>, NodeError> {
        for attempt in 1..=STALE_RETRIES {
            let topo = self.topology();
            let replicas = topo.placement(hash).read;
            let Some(&first) = replicas.first() else {
                return Err(NodeError::Unavailable("no node owns this key: the cluster has no serving members".into()));
            };
            match quorum(&[first], 1, |id| self.read_on(&topo, id, key.clone())).await {
                Ok(answers) => {
                    let newest = answers.into_iter().filter_map(|(_, e)| e).max_by_key(|e| e.version);
                    return Ok(newest.and_then(|e| e.value));
                }
                Err(e) if attempt < STALE_RETRIES && stale(&e) => self.refresh().await,
                Err(e) => return Err(NodeError::Unavailable(format!("read failed: {e}"))),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Store entries locally, folding their versions into our clock.
    pub fn apply_local(&self, entries: Vec<KeyEntry>) -> usize {
        let mut stored = 0;
        for KeyEntry { key, entry } in entries {
            self.hlc.observe(entry.version.ts);
            // Copy: `key` and the value may be slices of a larger network buffer; storing them
            // as-is would pin the whole buffer for the life of the entry.
            let entry = Entry { version: entry.version, value: entry.value.map(|v| Bytes::copy_from_slice(&v)) };
            if self.engine.apply(key_hash(&key), &key, entry) == Applied::Stored {
                stored += 1;
            }
        }
        stored
    }

    /// Apply entries on node `id` (locally when it is us).
    pub async fn apply_on(
        &self,
        topo: &Topology,
        id: NodeId,
        kind: ApplyKind,
        entries: Vec<KeyEntry>,
    ) -> Result<(), PeerError> {
        if id == self.me {
            self.apply_local(entries);
            return Ok(());
        }
        let addr = self.addr_of(topo, id)?;
        let body = wire::encode(&ApplyRequest { epoch: topo.epoch(), kind, entries });
        self.peers.call(addr, "/internal/apply", body).await.map(|_| ())
    }

    async fn read_on(&self, topo: &Topology, id: NodeId, key: Bytes) -> Result<Option<Entry>, PeerError> {
        if id == self.me {
            return Ok(self.engine.get(key_hash(&key), &key));
        }
        let addr = self.addr_of(topo, id)?;
        let body =
            self.peers.call(addr, "/internal/read", wire::encode(&ReadRequest { epoch: topo.epoch(), key })).await?;
        wire::decode::<ReadResponse>(&body)
            .map(|r| r.entry)
            .map_err(|e| PeerError::Protocol { addr: addr.to_string(), reason: e.to_string() })
    }

    pub fn addr_of<'t>(&self, topo: &'t Topology, id: NodeId) -> Result<&'t str, PeerError> {
        topo.member(id).map(|m| m.addr.as_str()).ok_or_else(|| PeerError::Unreachable {
            addr: id.to_string(),
            reason: "not a member of the current view".into(),
        })
    }
}

fn stale(e: &QuorumError) -> bool {
    e.failures.iter().any(|(_, f)| is_stale_epoch(f))
}
