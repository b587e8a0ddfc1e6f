//! The `dkv` binary's library part: command-line parsing, the local-cluster launcher, and the
//! HTTP client used by the client commands (and by the integration tests), and `dkv bench`.

// The module docs are written for the engineers who work on the crate, and name its private
// parts (`cargo doc --document-private-items` shows them, as `scripts/test.sh` builds it).
#![allow(rustdoc::private_intra_doc_links)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod commands;
pub mod keys;
pub mod out;
pub mod status;
pub mod up;
