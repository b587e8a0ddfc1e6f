//! How nodes talk to each other. The frames, connections, handshake and deadlines live in the
//! `dkv-transport` crate, which knows nothing of dkv's messages; here are the messages
//! ([`wire`]), the client side that addresses peers by node ([`peer`]) and the server side that
//! answers them ([`internal`]); [`seed`] calls the seed. [`tls`] holds the certificates of both public listeners and of
//! calls between nodes (mutual TLS), reloaded on SIGHUP.

pub mod internal;
pub mod listener;
pub mod peer;
pub mod seed;
pub mod tls;
pub mod wire;
