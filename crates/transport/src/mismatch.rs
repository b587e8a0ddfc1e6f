//! One side speaking TLS and the other not, told from the errors it gives: rustls and hyper say
//! only what went wrong with the bytes ("received corrupt message of type InvalidContentType",
//! "invalid HTTP version parsed"), and the node, the seed and the CLI each add what to do.

/// Whether a TLS error says the other side answered in the clear: its first bytes were no TLS
/// record.
pub fn answered_in_the_clear(reason: &str) -> bool {
    reason.contains("InvalidContentType")
}

/// Whether an HTTP client's error says the server answered in TLS: its first bytes were no
/// HTTP status line.
pub fn answered_in_tls(reason: &str) -> bool {
    reason.contains("invalid HTTP version")
}
