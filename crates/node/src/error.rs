//! Errors of the node layer. Each variant tells the caller what to do; the API layer maps them to
//! HTTP statuses (and nothing below it knows about HTTP).

#[derive(Debug, thiserror::Error)]
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
    /// A bug or an unexpected peer answer (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl NodeError {
    /// The HTTP status this error is answered with (RESP reports it in metrics the same way).
    pub fn status(&self) -> http::StatusCode {
        match self {
            NodeError::BadRequest(_) => http::StatusCode::BAD_REQUEST,
            NodeError::TooLarge(_) => http::StatusCode::PAYLOAD_TOO_LARGE,
            NodeError::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Internal(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<dkv_storage::StorageError> for NodeError {
    fn from(e: dkv_storage::StorageError) -> Self {
        NodeError::Internal(e.to_string())
    }
}

/// Why a call to a peer or the seed failed.
#[derive(Debug, Clone, thiserror::Error)]
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
