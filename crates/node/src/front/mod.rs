//! What clients talk to. [`service`] is the one key service (`get`, `put`, `delete` with a
//! consistency level, typed results and errors, validation, routing, forwarding and metrics);
//! [`http`] and [`resp`] are thin adapters that parse their protocol, call it and render what it
//! answers. [`router`] is the pure routing decision, [`query`] the HTTP query-string parsing.

pub mod http;
pub mod query;
pub mod resp;
pub mod router;
pub mod service;
