//! Hinted handoff: writes a replica missed, kept by the coordinator ([`store`], pure, with explicit
//! time) and delivered when the replica answers again ([`delivery`]).

pub mod delivery;
mod store;

pub use store::{restore, Hints, SavedHint};
