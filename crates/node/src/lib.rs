//! A dkv storage node.
//!
//! The crate's folders are its layers, bottom up:
//! * [`transport`]: how nodes talk to each other — the binary frame transport's messages
//!   (`wire`), the client side (`peer`, which also speaks HTTP to the seed) and the server side
//!   (`internal`, the handler of every node-to-node message);
//! * [`replication`]: the Dynamo-style machinery — coordinated quorum reads and writes
//!   (`coordinator` over `quorum`), per-request consistency levels, hinted handoff (`hints`),
//!   anti-entropy, data movement on join, leave and rebalance (`movement`), and the sweep that
//!   reclaims values past their expiry deadline (`expiry`);
//! * [`front`]: what clients talk to — the key service every protocol shares (`service`), the
//!   public HTTP API (`http`, `query`), the routing decision (`router`) and the Redis protocol
//!   (`resp/`);
//! * [`life`]: the node's own life — its shared state (`state`), start-up and shutdown
//!   (`server`), membership and heartbeats, its data directory (`local`), the `--fsync` policy
//!   (`durability`), counters and Prometheus metrics.

pub mod config;
pub mod error;
pub mod front;
pub mod life;
pub mod replication;
#[cfg(test)]
pub(crate) mod testing;
pub mod transport;

pub use config::NodeConfig;
pub use error::{NodeError, PeerError};
pub use life::server::run;
pub use life::state::Stop;
