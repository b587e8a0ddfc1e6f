//! Framed binary RPC between dkv nodes.
//!
//! Nodes call each other for every replicated read and write, so this is the hot path of a
//! cluster. Over HTTP/2 (hyper and axum) one internal call cost more than the client request it
//! served; here a call is a frame of a few bytes of header and a postcard body on a long-lived TCP
//! connection:
//! * many calls share one connection, each with an id, and answers come back in any order;
//! * frames queued by many tasks while the socket was busy leave in one write, on both sides
//!   ([`outbox`]), so under load one syscall carries many calls;
//! * every call has a deadline, and a dropped connection fails its calls at once with the peer's
//!   address and the reason; reconnects back off;
//! * a frame's length is checked against the limit before anything is allocated ([`frame`]);
//! * a connection starts with a handshake (format version, cluster name, secret), refused with a
//!   clear reason on both sides when they do not match;
//! * it runs on plain TCP, or on whatever a [`Wrap`] makes of it (the node's TLS), see [`io`];
//! * for calls made one at a time by one task (a heartbeat), a [`Line`] reads and writes in the
//!   caller's task, with no reader or writer task to wake.
//!
//! The crate knows nothing of dkv's messages: a request is a kind byte and a body, an answer a
//! body or a [`Refusal`]. The node crate defines the messages.

mod accept;
mod client;
mod error;
pub mod frame;
mod io;
mod line;
pub mod mismatch;
mod outbox;
mod server;
mod throttle;

pub use accept::{accept_until_stopped, answer_and_close, closing_http_answer, stopped};
pub use client::{Client, ClientConfig, STATUS_TOO_LARGE};
pub use error::CallError;
pub use frame::{put_postcard, Refusal};
pub use io::{Connection, Io, Prefixed, Split, Wrap, Wrapped, Wrapper};
pub use line::Line;
pub use server::{refuse, same_secret, secret_matches, serve, serve_admitted, Handler, ServerConfig};
pub use throttle::{LeftOut, Throttle};

/// What both sides of a connection must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// The cluster's name (`--cluster-name`): nodes of two clusters never talk.
    pub cluster: String,
    /// The cluster secret (`--cluster-secret`), when one is set.
    pub secret: Option<String>,
}
