//! Replication: every key on N nodes, coordinated by whichever replica a request reaches.
//!
//! [`coordinator`] reads one key across its replicas through the quorum helper ([`quorum`]),
//! whole or only its head ([`shape`]), and
//! writes it by gathering the replicas' answers in one place ([`votes`]), its calls to each
//! replica sent together ([`batch`]); [`apply`] is the replica's side, storing what it is sent;
//! [`consistency`] resolves per-request `w=`/`r=`; [`hints`] keeps and delivers writes a replica
//! missed; [`antientropy`] compares bucket digests between replicas and exchanges only the
//! differences, skipping the pairs that [`pairs`] knows to be equal; [`movement`] moves ranges
//! when members join, leave or die; both ship entries in [`pages`] bounded by bytes, within the node's
//! one budget of `--move-rate` ([`pace`]); [`latency`]
//! says how long to wait for a replica before asking another as well; [`expiry`] reclaims values
//! past their deadline; [`scan`] walks every key of the cluster in hash order (with [`glob`]
//! patterns).

pub mod antientropy;
pub mod apply;
pub mod batch;
pub mod consistency;
pub mod coordinator;
pub mod expiry;
pub mod glob;
pub mod hints;
pub mod latency;
pub mod movement;
pub mod pace;
pub mod pages;
pub mod pairs;
pub mod quorum;
pub mod scan;
pub mod settled;
pub mod shape;
pub mod votes;
