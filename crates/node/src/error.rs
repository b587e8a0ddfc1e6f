//! Errors of the node layer. Each variant tells the caller what to do; the front ends render them
//! (HTTP as a status and one line, RESP as an error reply). They are serializable so a forwarded
//! request's error reaches the client's node with its structure.

use serde::{Deserialize, Serialize};

use crate::replication::quorum::QuorumError;

#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum NodeError {
    /// The request is malformed; fix it (400).
    #[error("{0}")]
    BadRequest(String),
    /// A key or value over the configured limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The cluster cannot serve this now: no owner, owners unreachable, views disagree (503).
    /// Retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A client write whose version is too far ahead of the cluster's clock as the replica measured it (422): its
    /// coordinator's clock is off. Never kept as a hint.
    #[error("{0}")]
    ClockAhead(String),
    /// Too few replicas answered a read or write (503); says how many and what the others said.
    #[error("{what}: {error}")]
    Quorum { what: String, error: QuorumError },
    /// A bug or an unexpected peer answer (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// The client did not send its request in time (408).
    #[error("{0}")]
    TooSlow(String),
}

impl NodeError {
    /// The HTTP status this error is answered with (RESP reports it in metrics the same way).
    pub fn status(&self) -> http::StatusCode {
        match self {
            NodeError::BadRequest(_) => http::StatusCode::BAD_REQUEST,
            NodeError::TooLarge(_) => http::StatusCode::PAYLOAD_TOO_LARGE,
            NodeError::Unavailable(_) | NodeError::Quorum { .. } => http::StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Internal(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
            NodeError::ClockAhead(_) => http::StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::TooSlow(_) => http::StatusCode::REQUEST_TIMEOUT,
        }
    }
}

impl From<dkv_storage::StorageError> for NodeError {
    fn from(e: dkv_storage::StorageError) -> Self {
        NodeError::Internal(e.to_string())
    }
}

/// Why a call to a peer or the seed failed.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum PeerError {
    #[error("{addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr} did not answer within {ms} ms")]
    Timeout { addr: String, ms: u128 },
    /// The peer answered with an error status; `message` is its one-line explanation.
    #[error("{addr} answered {status}: {message}")]
    Refused { addr: String, status: u16, message: String },
    #[error("{addr} sent a malformed answer: {reason}")]
    Protocol { addr: String, reason: String },
}

impl PeerError {
    pub fn status(&self) -> Option<u16> {
        match self {
            PeerError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<dkv_transport::CallError> for PeerError {
    fn from(e: dkv_transport::CallError) -> Self {
        use dkv_transport::CallError as C;
        match e {
            C::Unreachable { addr, reason } | C::Lost { addr, reason } | C::Handshake { addr, reason } => {
                PeerError::Unreachable { addr, reason }
            }
            C::Timeout { addr, ms } => PeerError::Timeout { addr, ms },
            C::Refused { addr, status, message } => PeerError::Refused { addr, status, message },
            C::Protocol { addr, reason } => PeerError::Protocol { addr, reason },
        }
    }
}
