//! Hinted handoff: writes a replica missed, kept by the coordinator ([`store`], pure, with explicit
//! time) and delivered when the replica answers again ([`delivery`]).

pub mod delivery;
mod saved;
mod store;

pub use saved::decode_saved;
pub use store::{restore, wall_ms, Hints, Save, SavedHint};
