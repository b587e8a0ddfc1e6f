//! Why a call failed. Every variant names the peer, so an error that reaches a log or a client
//! says which node to look at.

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// No connection could be made (or the last attempts failed and the pool is backing off).
    #[error("{addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The peer did not answer before the call's deadline.
    #[error("{addr} did not answer within {ms} ms")]
    Timeout { addr: String, ms: u128 },
    /// The connection dropped while the call was in flight; the request may or may not have run.
    #[error("connection to {addr} lost: {reason}")]
    Lost { addr: String, reason: String },
    /// The peer refused the connection's handshake (secret, cluster name or format version).
    #[error("{addr} refused the connection: {reason}")]
    Handshake { addr: String, reason: String },
    /// The peer answered the request with a refusal.
    #[error("{addr} answered {status}: {message}")]
    Refused { addr: String, status: u16, message: String },
    /// The peer's answer could not be read.
    #[error("{addr} sent a malformed answer: {reason}")]
    Protocol { addr: String, reason: String },
}
