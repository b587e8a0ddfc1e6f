//! The `dkv` binary's library part: command-line parsing, the local-cluster launcher, and the
//! HTTP client used by the client commands (and by the integration tests), and `dkv bench`.

pub mod bench;
pub mod cli;
pub mod client;
pub mod commands;
pub mod keys;
pub mod out;
pub mod status;
pub mod up;
