//! Membership layer: who is in the cluster, in which state, and what that means for placement.
//!
//! The seed owns the authoritative [`View`] (members plus an `epoch` bumped on every change) and
//! evolves it with the pure state machine in [`registry`]. Nodes receive views and derive a
//! [`Topology`] from each: two rings built from the members' stored tokens.
//!
//! * the **read ring** holds `normal` and `leaving` members — the nodes that have the data now;
//! * the **future ring** holds `normal` and `joining` members — the nodes that will have it once
//!   the current joins and leaves finish.
//!
//! A key is read from its replicas on the read ring and written to its replicas on *both* rings,
//! so while a node joins or leaves every write reaches the old and the new owner and a range can
//! be copied in the background without losing concurrent writes. The same rule, applied to keys a
//! node already holds, tells it which keys to hand to someone else.
//!
//! No I/O here: the seed server and the node feed messages and clock readings in and act on the
//! decisions that come out.

pub mod api;
mod changes;
pub mod clocks;
pub mod compact;
mod digest;
mod json_int;
pub mod load;
mod member;
pub mod openapi;
pub mod registry;
mod topology;

pub use changes::{ChangeLog, Changes};
pub use digest::Digest;
pub use member::{Member, NodeId, NodeState, ParseNodeIdError, View};
pub use registry::{Expiry, JoinPlan, Registry, RegistryError};
pub use topology::{Placement, Topology};
