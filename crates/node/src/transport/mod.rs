//! How nodes talk to each other. The frames, connections, handshake and deadlines live in the
//! `dkv-transport` crate, which knows nothing of dkv's messages; here are the messages
//! ([`wire`]), the client side that addresses peers by node ([`peer`]) and the server side that
//! answers them ([`internal`]).

pub mod internal;
pub mod listener;
pub mod peer;
pub mod wire;
