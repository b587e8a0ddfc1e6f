//! The seed: dkv's membership service.
//!
//! A thin HTTP/JSON shell around [`dkv_membership::Registry`]: each request locks the registry for
//! one pure state transition and answers with the resulting view; a timer expires members that
//! stopped heart-beating. The seed keeps no data and no disk state — if it restarts, nodes keep
//! serving with the membership they last saw and re-register with their own ids, tokens and last
//! view, so the same membership is back within one heartbeat (see the registry's docs).

mod openapi;
mod server;

pub use server::{router, run, SeedConfig};
