//! A dkv storage node.
//!
//! Layers inside the crate, bottom up:
//! * [`wire`] and [`peer`]: the internal message format and the one pooled HTTP client used for
//!   peers and the seed;
//! * `membership`: registration, heartbeats and the current [`dkv_membership::Topology`],
//!   published on a `watch` channel so readers never block;
//! * `router` (pure): where a public request goes — served here, forwarded, or refused;
//! * `coordinator`: versioned reads and writes against a key's replicas, via `quorum`;
//! * `mover`: data movement — pulling ranges on join, handing keys to their new owners after a
//!   membership change, and handing everything off on leave;
//! * `api` and `internal`: the public HTTP API and the node-to-node endpoints; `resp`: the same
//!   key operations over the Redis protocol;
//! * `durability` and `local`: the `--fsync` policy (group commit) and what a node keeps in its
//!   data directory besides its keys (identity, last view, pending hints);
//! * `node`: start-up, background tasks and shutdown.

mod antientropy;
mod api;
pub mod config;
mod consistency;
mod coordinator;
mod durability;
pub mod error;
mod hints;
mod internal;
mod local;
mod membership;
mod metrics;
mod mover;
mod node;
pub mod peer;
pub mod query;
mod quorum;
pub mod resp;
mod router;
mod stats;
pub mod wire;

pub use config::NodeConfig;
pub use error::{NodeError, PeerError};
pub use node::{run, Stop};
