//! TLS on the seed's port (`dkv seed --tls-cert`), so that what members tell the seed (the
//! cluster secret, addresses, the membership) does not cross the network in the clear.
//!
//! The seed's certificate is signed by the cluster CA, the one that signs the members'
//! certificates, and the members check it against that CA when they call (`--seed https://…`).
//! Like a node's shared port, the seed's asks every connection for a certificate without
//! requiring one at the TLS layer: people read the dashboard and `/nodes` with a browser or
//! `curl --cacert`. Once the first decrypted byte says "transport" (a member's heartbeat line),
//! the connection is refused unless it presented a certificate the cluster CA signed; HTTP
//! requests that change the membership still need the cluster secret, now inside TLS.
//!
//! The certificates themselves are loaded, and reloaded on SIGHUP, by the binary (the node's
//! `transport::tls`): this crate sees them only through [`SeedTls`].

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;

/// The seed's certificates, as the accept loop uses them.
pub trait SeedTls: Send + Sync + std::fmt::Debug + 'static {
    /// For a new connection: the certificates in use at this moment.
    fn acceptor(&self) -> TlsAcceptor;
    /// Whether `certs`, what a connection presented, show a member: signed by the cluster CA.
    fn is_member(&self, certs: Option<&[CertificateDer<'_>]>) -> bool;
}
