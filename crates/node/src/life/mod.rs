//! The node's own life: its shared [`state`], start-up and shutdown ([`server`]), the address it
//! gives its peers ([`advertise`]), an event loop
//! kept awake between requests on request ([`busy_poll`]), registration
//! and heartbeats with the seed ([`membership`], paced by a [`ticker`]; views from peers while it
//! is down, [`peer_views`]), its clock against the others' ([`clock`]), what it keeps in its data directory
//! ([`local`]), when a write counts as stored ([`durability`]) and when its store no longer
//! takes any ([`store_watch`]), how a data move waits for the
//! writes planned before it ([`fence`]), and what it reports
//! ([`stats`], [`metrics`], and with each heartbeat [`load`]).

pub mod absence;
pub mod advertise;
pub mod busy_poll;
pub mod clock;
pub mod durability;
pub mod fence;
pub mod hint_file;
pub mod lease;
pub mod load;
pub mod local;
pub mod membership;
pub mod metrics;
pub mod peer_views;
pub mod server;
pub mod starting;
pub mod state;
pub mod stats;
pub mod store_watch;
pub mod ticker;
