//! What clients talk to. [`service`] is the one key service (`get`, `put`, `delete` with a
//! consistency level, typed results and errors, validation, routing, forwarding and metrics);
//! [`http`] and [`resp`] are thin adapters that parse their protocol, call it and render what it
//! answers. [`router`] is the pure routing decision, [`query`] the HTTP query-string parsing.
//! [`limits`] bounds what clients may hold (connections, buffered bytes, time), and [`http_conn`]
//! serves HTTP connections under those bounds.
//! [`progress`] notes when a connection last moved bytes, so one that stopped is let go.
//! [`answers`] is what every HTTP answer carries (the node's header, a line for every error,
//! hints for wrong paths and methods); [`parse_errors`] gives hyper's own error answers theirs.
//! [`auth`] checks client passwords (`--client-password`, read-only ones too) on both protocols,
//! and [`guesses`] slows down guessing them, per source address.
//! [`keyspace`] serves key scans (`GET /scan`) and a node's own copy of a key (`GET /local`).
//! [`openapi`] serves the OpenAPI description of the HTTP API (`GET /openapi.json`).

pub mod answers;
pub mod auth;
pub mod guesses;
pub mod http;
pub mod http_conn;
pub mod keyspace;
pub mod limits;
pub mod openapi;
pub mod parse_errors;
pub mod progress;
pub mod query;
pub mod resp;
pub mod router;
pub mod service;
