//! The seed: dkv's membership service.
//!
//! A thin HTTP shell around [`dkv_membership::Registry`]: each request locks the registry for
//! one pure state transition and answers with the resulting view (a heartbeat from a node whose
//! view is current, with none); a timer expires members that stopped heart-beating. It speaks
//! JSON, and to nodes that ask for it a compact binary encoding (`format.rs`); nodes send their
//! heartbeats over dkv's binary transport, on the same port (`transport.rs`), which speaks only
//! TLS when the seed has a certificate (`tls.rs`). The seed keeps no
//! data. By default it keeps no disk state either — if it restarts, nodes keep serving with the
//! membership they last saw and re-register with their own ids, tokens and last view, so the same
//! membership is back within one heartbeat (see the registry's docs) — but only members back
//! within its first TTL are told from newcomers. With `--data-dir` it records the membership
//! before every answer that carries a change, and starts again from that record (`record.rs`,
//! written off the registry's lock by `recorder.rs`).

mod dashboard;
mod format;
mod openapi;
mod record;
mod recorder;
mod serve;
mod server;
mod tls;
mod transport;

pub use server::{router, run, SeedConfig};
pub use tls::SeedTls;
