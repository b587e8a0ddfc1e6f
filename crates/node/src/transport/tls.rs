//! TLS on the node's ports, for clients and between nodes, from certificate files that a SIGHUP
//! reloads.
//!
//! With `--tls-cert` and `--tls-key`, both public listeners speak only TLS (rustls, ring).
//! The HTTP port is shared with the node-to-node transport (`listener.rs`): it accepts TLS from
//! everyone, then tells the two apart by the first *decrypted* byte, as it does in the clear.
//! So one certificate per node serves clients and peers, and its address stays one address.
//!
//! **Between nodes, mutual.** A node calls its peers with its own certificate as a client
//! certificate and accepts a peer's server certificate only if the cluster CA (`--tls-peer-ca`)
//! signed it. The name in it is not compared with the peer's address: members' addresses come and
//! go with containers, so the CA is what says "member" (it must sign only members'
//! certificates). The answering side asks every connection for a certificate but does not
//! require one at the TLS layer, since clients share the port (rustls's `WebPkiClientVerifier`
//! with `allow_unauthenticated`: a certificate that *is* presented must verify). Once the first
//! byte says "transport", the connection is refused unless it presented a certificate the
//! cluster CA signed ([`Tls::is_peer`]). The cluster secret and name are still checked in the
//! transport's own handshake, inside TLS.
//!
//! **Clients.** They verify the node's certificate as any TLS client does (`curl --cacert`,
//! `redis-cli --tls --cacert`, `dkv --cacert`). With `--tls-client-ca` they must also present a
//! certificate signed by that CA, on both the HTTP and the RESP port.
//!
//! **The seed.** A seed started with `--tls-cert` uses this module's certificates too (the
//! binary hands them to `dkv_seed::SeedTls`), and a node called with `--seed https://` calls it
//! with [`Tls::peer_connector`], as it calls a peer.
//!
//! **Reload.** [`Tls::reload`] reads the files again and swaps the configurations in one step;
//! connections made from then on use the new certificates, open ones keep theirs. A file that
//! does not load (missing, unparsable, a key that does not match) leaves the old certificates in
//! place, and the caller logs why.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, ExtendedKeyPurpose, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The files, from flags.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM), for clients and peers alike; it must allow server
    /// and client authentication (both extended key usages, or none).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA that signs members' certificates (PEM, one or more).
    pub peer_ca: PathBuf,
    /// When set, clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
    /// Whether the certificate is also shown as a client's, calling peers: a node's is, so it
    /// must allow client use too; a seed's only answers.
    pub calls_peers: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

/// One load of the files.
struct Loaded {
    /// The shared HTTP and transport port: a certificate is asked for, from either CA.
    shared: TlsAcceptor,
    /// The RESP port: a client certificate is required when there is a client CA.
    resp: TlsAcceptor,
    /// Calling peers.
    peers: TlsConnector,
    /// What a certificate on a transport connection must verify against.
    peer_verifier: Arc<dyn ClientCertVerifier>,
    /// What a client's must, when clients need certificates.
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// The node's TLS state; shared by the listeners and the peer client.
pub struct Tls {
    files: TlsFiles,
    now: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// The one crypto provider, named rather than left to rustls's process default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let loaded = load(&files)?;
        Ok(Tls { files, now: RwLock::new(Arc::new(loaded)) })
    }

    /// Read the files again; on error the certificates in use stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.files)?;
        *self.now.write().expect("tls lock") = Arc::new(loaded);
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn current(&self) -> Arc<Loaded> {
        self.now.read().expect("tls lock").clone()
    }

    /// For a new connection on the shared HTTP and transport port.
    pub fn shared_acceptor(&self) -> TlsAcceptor {
        self.current().shared.clone()
    }

    /// For a new connection on the RESP port.
    pub fn resp_acceptor(&self) -> TlsAcceptor {
        self.current().resp.clone()
    }

    /// For a new connection to a peer.
    pub fn peer_connector(&self) -> TlsConnector {
        self.current().peers.clone()
    }

    /// Whether `certs` (what a connection presented) show a member: signed by the cluster CA.
    pub fn is_peer(&self, certs: Option<&[CertificateDer<'_>]>) -> bool {
        signed(&*self.current().peer_verifier, certs)
    }

    /// Whether `certs` are enough for a client: anything without `--tls-client-ca`, else a
    /// certificate it signed.
    pub fn is_client(&self, certs: Option<&[CertificateDer<'_>]>) -> bool {
        self.current().client_verifier.as_deref().is_none_or(|v| signed(v, certs))
    }

    /// Whether clients must present certificates.
    pub fn clients_need_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

fn signed(verifier: &dyn ClientCertVerifier, certs: Option<&[CertificateDer<'_>]>) -> bool {
    match certs {
        Some([leaf, chain @ ..]) => verifier.verify_client_cert(leaf, chain, UnixTime::now()).is_ok(),
        _ => false,
    }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The largest PEM file read: a chain of a few certificates is a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A PEM file's bytes: a regular file of at most [`MAX_PEM_BYTES`]. A path that named
/// `/dev/zero` at a SIGHUP made the node read until the machine's OOM killer ended it (found by
/// trying, 2026-12-06). A FIFO blocked the `open` itself, before the file could be looked at:
/// a SIGHUP with the certificate's path on one stopped the node's runtime thread, its
/// heartbeats and every request for good (found by trying, 2026-12-06). So the path is looked
/// at before it is opened, and opened without waiting (what a path swapped in between would
/// need; a regular file's reads do not change).
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let regular = |meta: std::fs::Metadata| match meta.is_file() {
        true => Ok(()),
        false => Err(file_error(path, "not a regular file")),
    };
    regular(std::fs::metadata(path).map_err(|e| file_error(path, e))?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| file_error(path, e))?;
    regular(file.metadata().map_err(|e| file_error(path, e))?)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes).map_err(|e| file_error(path, e))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(file_error(path, format!("over {} KiB: not a certificate or key file", MAX_PEM_BYTES >> 10)));
    }
    Ok(bytes)
}

/// The private key of a PEM file. An encrypted key, or a certificate given in its place, is
/// named as that: pem's words were "base64 decode error: InvalidCharacter(45)" and "no items
/// found" (found by a hunt, 2026-12-07).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let has = |label: &[u8]| pem.windows(label.len()).any(|w| w == label);
        if has(b"ENCRYPTED") {
            file_error(
                path,
                "an encrypted private key: dkv reads unencrypted PEM keys (PKCS#8, PKCS#1 or SEC1) only; write one with \
                 openssl pkey -in KEY -out KEY.plain, and keep it readable by the node alone",
            )
        } else if has(b"-----BEGIN CERTIFICATE-----") {
            file_error(path, "a certificate, not a private key: --tls-key takes the key that goes with --tls-cert")
        } else {
            file_error(path, e)
        }
    })
}

/// Certificates from a PEM file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(&read_pem(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The CA certificates of a PEM file as trust anchors.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let provider = provider();
    let config = |e: rustls::Error| TlsError::Config(e.to_string());
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let peer_roots = read_roots(&files.peer_ca)?;
    let client_roots = files.client_ca.as_deref().map(read_roots).transpose()?;
    if let Some(client_ca) = files.client_ca.as_deref().filter(|ca| shares_a_ca(ca, &files.peer_ca)) {
        // Taken in silence until 2026-12-07 (found by a hunt); not refused, as a deployment may
        // mean it, but said at every load.
        tracing::warn!(
            "{} holds a CA that {} holds too: every client certificate it signs passes for a member's at the TLS \
             layer (the cluster secret still guards the node-to-node protocol and /admin); give members a CA of \
             their own",
            client_ca.display(),
            files.peer_ca.display()
        );
    }

    let client_verifier_of = |roots: RootCertStore, optional: bool| {
        let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        let b = if optional { b.allow_unauthenticated() } else { b };
        b.build().map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))
    };
    let peer_verifier = client_verifier_of(peer_roots.clone(), false)?;
    let client_verifier = client_roots.clone().map(|r| client_verifier_of(r, false)).transpose()?;
    let mut either = peer_roots.clone();
    either.roots.extend(client_roots.iter().flat_map(|r| r.roots.iter().cloned()));
    let server = |verifier: Arc<dyn ClientCertVerifier>, alpn: bool| {
        let mut c = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Config(format!("{} with {}: {e}", files.cert.display(), files.key.display())))?;
        if alpn {
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Ok::<_, TlsError>(TlsAcceptor::from(Arc::new(c)))
    };
    let shared = server(client_verifier_of(either, true)?, true)?;
    let resp = match &client_verifier {
        Some(v) => server(v.clone(), false)?,
        None => server(WebPkiClientVerifier::no_client_auth(), false)?,
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(peer_roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(format!("peer certificate verifier: {e}")))?;
    usable_by_members(&verifier, files.calls_peers.then_some(&*peer_verifier), &chain, files)?;
    let peers = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MemberVerifier(verifier)))
        .with_client_auth_cert(chain.clone(), key.clone_key())
        .map_err(|e| TlsError::Config(format!("{} as a client certificate: {e}", files.cert.display())))?;
    Ok(Loaded { shared, resp, peers: TlsConnector::from(Arc::new(peers)), peer_verifier, client_verifier })
}

/// Refuse a certificate that peers would refuse, as they would judge it: by the cluster CA, with
/// the usage it is shown for (a server's; and a client's, for a node calling its peers), within
/// its validity dates, whatever name it carries. Loaded (at start, or by SIGHUP), every handshake
/// that showed it failed, and the node or seed served nobody: out of its dates (found by trying,
/// 2026-12-06), or a server-only certificate on a node, a client-only one on the seed, or one
/// another CA signed, each started with one line about an alert in its log, and a reload took
/// them and said "reloaded" (found by a hunt, 2026-12-07).
fn usable_by_members(
    as_server: &Arc<WebPkiServerVerifier>,
    as_client: Option<&dyn ClientCertVerifier>,
    chain: &[CertificateDer<'static>],
    files: &TlsFiles,
) -> Result<(), TlsError> {
    let now = UnixTime::now();
    let name = ServerName::try_from("dkv-member").expect("a DNS name");
    let refused = |e: rustls::Error, use_: &str| {
        let why = match &e {
            rustls::Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => "a certificate outside its validity dates fails every handshake".to_string(),
            rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
            ) => format!(
                "its extended key usage does not allow TLS {use_} use ({}), and every peer refuses it",
                match use_ {
                    "server" => "serverAuth",
                    _ => "clientAuth: a node shows its certificate as a client's when it calls its peers",
                }
            ),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
                format!(
                    "the CA in --tls-peer-ca ({}) did not sign it, or --tls-cert lacks the intermediate certificates \
                 between them (give the chain, leaf first), and peers, which trust that CA, refuse it",
                    files.peer_ca.display()
                )
            }
            _ => "peers would refuse it".to_string(),
        };
        // rustls's own words begin "invalid peer certificate", and this is the process's own.
        let what = match &e {
            rustls::Error::InvalidCertificate(CertificateError::InvalidPurposeContext { required, presented }) => {
                purposes_text(required, presented)
            }
            rustls::Error::InvalidCertificate(e) => e.to_string(),
            e => e.to_string(),
        };
        file_error(&files.cert, format!("this certificate: {what}: {why}"))
    };
    match as_server.verify_server_cert(&chain[0], &chain[1..], &name, &[], now) {
        // Names are not compared between members (see the module doc).
        Ok(_)
        | Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {}
        Err(e) => return Err(refused(e, "server")),
    }
    if let Some(as_client) = as_client {
        as_client.verify_client_cert(&chain[0], &chain[1..], now).map_err(|e| refused(e, "client"))?;
    }
    Ok(())
}

/// What a certificate's extended key usage allows, against what was asked of it, in words: rustls
/// prints a usage it has no name for as the numbers of its identifier with commas between them
/// ("allows 1, 3, 6, 1, 5, 5, 7, 3, 3"), the separator of its list too.
fn purposes_text(required: &ExtendedKeyPurpose, presented: &[ExtendedKeyPurpose]) -> String {
    let name = |purpose: &ExtendedKeyPurpose| match purpose {
        ExtendedKeyPurpose::ServerAuth => "serverAuth".to_string(),
        ExtendedKeyPurpose::ClientAuth => "clientAuth".to_string(),
        ExtendedKeyPurpose::Other(arcs) => {
            let oid = arcs.iter().map(usize::to_string).collect::<Vec<_>>().join(".");
            // The purposes RFC 5280 (4.2.1.12) names.
            let known = match oid.as_str() {
                "1.3.6.1.5.5.7.3.3" => "codeSigning",
                "1.3.6.1.5.5.7.3.4" => "emailProtection",
                "1.3.6.1.5.5.7.3.8" => "timeStamping",
                "1.3.6.1.5.5.7.3.9" => "OCSPSigning",
                "2.5.29.37.0" => "anyExtendedKeyUsage",
                _ => return oid,
            };
            format!("{known} ({oid})")
        }
    };
    let allowed = match presented {
        [] => "none".to_string(),
        _ => presented.iter().map(name).collect::<Vec<_>>().join(", "),
    };
    format!("its extended key usage allows {allowed}, not {}", name(required))
}

/// Whether the two PEM files hold a certificate in common.
fn shares_a_ca(a: &Path, b: &Path) -> bool {
    match (read_certs(a), read_certs(b)) {
        (Ok(a), Ok(b)) => a.iter().any(|c| b.contains(c)),
        _ => false,
    }
}

/// A client configuration that trusts the CAs in `ca` (the `dkv` client's `--cacert`), showing
/// the certificate and key files of `identity` when given (its `--client-cert`, for nodes that
/// require one).
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = read_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut c = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let private = read_key(key)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| TlsError::Config(format!("{} with {}: {e}", cert.display(), key.display())))?
        }
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// The name to verify for `host:port` (an IP address or a DNS name).
pub fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is not a TLS server name: {e}")))
}

/// A peer's certificate is a member's when the cluster CA signed it, whatever name it carries.
#[derive(Debug)]
struct MemberVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name: a name error means the chain was good.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Whether a TLS failure is about certificates (worth a warning: a misconfigured peer or
/// client), rather than a connection that went away.
pub fn is_certificate_error(e: &io::Error) -> bool {
    matches!(
        e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::AlertReceived(_)
        )
    )
}

pub use dkv_transport::Prefixed;

/// A client's connection to a public listener: in the clear, or TLS (its first byte, read to
/// tell the protocol, handed back first).
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<Prefixed<tokio_rustls::server::TlsStream<TcpStream>>>),
}

/// A connection this node opened (to a peer's HTTP endpoint, or the `dkv` client's to a node).
pub enum Outgoing {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// AsyncRead and AsyncWrite for an enum of two streams, by delegation.
macro_rules! either_io {
    ($t:ident) => {
        impl AsyncRead for $t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $t::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    $t::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
                }
            }
        }

        impl AsyncWrite for $t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $t::Plain(s) => Pin::new(s).poll_write(cx, buf),
                    $t::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $t::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    $t::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $t::Plain(s) => s.is_write_vectored(),
                    $t::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $t::Plain(s) => Pin::new(s).poll_flush(cx),
                    $t::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $t::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    $t::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
                }
            }
        }
    };
}
either_io!(ClientStream);
either_io!(Outgoing);

impl hyper_util::client::legacy::connect::Connection for Outgoing {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// Connect to `addr` over TCP (TCP_NODELAY), then TLS with `tls` when given.
pub async fn connect(addr: &str, tls: Option<&TlsConnector>) -> io::Result<Outgoing> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Outgoing::Plain(tcp)),
        Some(tls) => Ok(Outgoing::Tls(Box::new(tls.connect(server_name(addr)?, tcp).await?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("dkv-tls-{name}-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }

    /// A certificate or key path that names no regular file, or a file far larger than any
    /// chain, is refused without reading it whole (SIGHUP with `node.pem` linked to `/dev/zero`
    /// read until the OOM killer came).
    #[test]
    fn files_that_are_no_pem_files_are_refused_unread() {
        let d = dir("unread");
        let huge = d.0.join("huge.pem");
        std::fs::write(&huge, vec![b'A'; 2 << 20]).unwrap();
        let dev_zero = Path::new("/dev/zero");
        // A FIFO nobody writes to: its open blocked the reload for good.
        let fifo = d.0.join("fifo.pem");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        let cases = [(dev_zero, "not a regular file"), (&d.0, "not a regular file"), (&huge, "over 1024 KiB")];
        for (path, why) in cases.into_iter().chain([(fifo.as_path(), "not a regular file")]) {
            let err = read_certs(path).expect_err("refused").to_string();
            assert!(err.contains(why), "{}: {err}", path.display());
            let err = read_key(path).expect_err("refused").to_string();
            assert!(err.contains(why), "{}: {err}", path.display());
        }
    }

    fn ca(dir: &Path, name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), ca.pem()).unwrap();
        ca
    }

    /// A member's certificate for `names`, signed by `ca`, written as `name.pem` and `name.key`.
    fn leaf(dir: &Path, name: &str, names: &[&str], ca: &CertifiedIssuer<'static, KeyPair>) -> CertificateDer<'static> {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, ca).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    fn files(dir: &Path, name: &str) -> TlsFiles {
        TlsFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            peer_ca: dir.join("ca.pem"),
            client_ca: None,
            calls_peers: true,
        }
    }

    #[test]
    fn members_are_told_by_the_cluster_ca_not_by_the_name_in_their_certificate() {
        let d = dir("member");
        let cluster = ca(&d.0, "ca");
        let other = ca(&d.0, "other");
        let member = leaf(&d.0, "a", &["node-a.example"], &cluster);
        let stranger = leaf(&d.0, "b", &["127.0.0.1"], &other);
        let tls = Tls::load(files(&d.0, "a")).unwrap();
        assert!(tls.is_peer(Some(std::slice::from_ref(&member))));
        assert!(!tls.is_peer(Some(std::slice::from_ref(&stranger))), "another CA's certificate");
        assert!(!tls.is_peer(None) && !tls.is_peer(Some(&[])), "no certificate");
        assert!(tls.is_client(None), "without --tls-client-ca clients need none");

        // Calling a peer: any name, as long as the cluster CA signed it.
        let roots = read_roots(&d.0.join("ca.pem")).unwrap();
        let v =
            MemberVerifier(WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap());
        let name = ServerName::try_from("10.1.2.3").unwrap();
        assert!(v.verify_server_cert(&member, &[], &name, &[], UnixTime::now()).is_ok());
        assert!(v.verify_server_cert(&stranger, &[], &name, &[], UnixTime::now()).is_err());
    }

    #[test]
    fn a_reload_that_fails_keeps_the_certificates_in_use() {
        let d = dir("reload");
        let cluster = ca(&d.0, "ca");
        leaf(&d.0, "a", &["127.0.0.1"], &cluster);
        leaf(&d.0, "b", &["127.0.0.1"], &cluster);
        let tls = Tls::load(files(&d.0, "a")).unwrap();
        let before = Arc::as_ptr(&tls.current());
        // b's certificate with a's key: they do not match.
        std::fs::copy(d.0.join("b.pem"), d.0.join("a.pem")).unwrap();
        let e = tls.reload().unwrap_err();
        assert!(e.to_string().contains("a.pem"), "{e}");
        assert_eq!(Arc::as_ptr(&tls.current()), before, "the old configuration stays");
        std::fs::write(d.0.join("a.key"), "not a key").unwrap();
        assert!(tls.reload().is_err());
        std::fs::copy(d.0.join("b.key"), d.0.join("a.key")).unwrap();
        tls.reload().unwrap();
        assert_ne!(Arc::as_ptr(&tls.current()), before);
        assert!(Tls::load(TlsFiles { peer_ca: d.0.join("missing.pem"), ..files(&d.0, "a") }).is_err());
    }

    /// An encrypted key, and a certificate given as the key, are named as what they are.
    #[test]
    fn an_encrypted_key_or_a_certificate_as_the_key_says_so() {
        let d = dir("keys");
        let cluster = ca(&d.0, "ca");
        leaf(&d.0, "a", &["127.0.0.1"], &cluster);
        let encrypted = [
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,0011\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        ];
        for (i, text) in encrypted.iter().enumerate() {
            let path = d.0.join(format!("enc{i}.key"));
            std::fs::write(&path, text).unwrap();
            let e = read_key(&path).unwrap_err().to_string();
            assert!(e.contains("an encrypted private key") && e.contains("openssl pkey"), "{e}");
        }
        let e = read_key(&d.0.join("a.pem")).unwrap_err().to_string();
        assert!(e.contains("a certificate, not a private key"), "{e}");
    }

    /// A certificate out of its validity dates is refused at start and by a reload, which keeps
    /// the one in use: loaded, it failed every handshake.
    #[test]
    fn a_certificate_out_of_its_dates_is_refused_and_a_reload_keeps_the_one_in_use() {
        let d = dir("dates");
        let cluster = ca(&d.0, "ca");
        leaf(&d.0, "a", &["127.0.0.1"], &cluster);
        let tls = Tls::load(files(&d.0, "a")).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let now = std::time::SystemTime::now();
        for (name, from, to, why) in
            [("old", now - 10 * day, now - day, "expired"), ("new", now + day, now + 10 * day, "not valid yet")]
        {
            let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            (p.not_before, p.not_after) = (from.into(), to.into());
            write_signed(&d.0, name, p, &cluster);
            refused_at_start_and_by_a_reload(&tls, &d.0, name, why);
        }
    }

    /// A certificate and key made from `p`, signed by `ca`, written as `name.pem` and `name.key`.
    fn write_signed(dir: &Path, name: &str, p: CertificateParams, ca: &CertifiedIssuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), p.signed_by(&key, ca).unwrap().pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    /// `name`'s certificate is refused at start saying `why`, and by a reload of `tls` (loaded
    /// from `a.pem`), which keeps the certificate in use.
    fn refused_at_start_and_by_a_reload(tls: &Tls, dir: &Path, name: &str, why: &str) {
        let before = Arc::as_ptr(&tls.current());
        let err = Tls::load(files(dir, name)).expect_err("refused at start").to_string();
        assert!(err.contains(why) && err.contains(&format!("{name}.pem")), "{name}: {err}");
        std::fs::copy(dir.join(format!("{name}.pem")), dir.join("a.pem")).unwrap();
        std::fs::copy(dir.join(format!("{name}.key")), dir.join("a.key")).unwrap();
        assert!(tls.reload().is_err(), "{name}: refused by a reload");
        assert_eq!(Arc::as_ptr(&tls.current()), before, "the certificate in use stays");
    }

    /// A certificate peers would refuse is refused at start and by a reload, which keeps the
    /// one in use: a node's without client use, a seed's without server use, one another CA
    /// signed (each started, and a reload said "reloaded": found by a hunt, 2026-12-07). A seed's
    /// certificate needs no client use. A usage rustls has no name for is named, not numbered.
    #[test]
    fn a_certificate_peers_would_refuse_is_refused_and_a_reload_keeps_the_one_in_use() {
        let d = dir("usage");
        let cluster = ca(&d.0, "ca");
        let other = ca(&d.0, "other");
        leaf(&d.0, "a", &["127.0.0.1"], &cluster);
        let tls = Tls::load(files(&d.0, "a")).unwrap();
        let write = |name: &str, usages: Vec<ExtendedKeyUsagePurpose>, by: &CertifiedIssuer<'static, KeyPair>| {
            let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            p.extended_key_usages = usages;
            write_signed(&d.0, name, p, by);
        };
        use ExtendedKeyUsagePurpose::{ClientAuth, CodeSigning, ServerAuth};
        write("server", vec![ServerAuth], &cluster);
        write("code", vec![CodeSigning], &cluster);
        write("client", vec![ClientAuth], &cluster);
        write("foreign", vec![ServerAuth, ClientAuth], &other);
        write("any", vec![], &cluster);
        for (name, why) in [
            ("server", "does not allow TLS client use (clientAuth"),
            ("client", "does not allow TLS server use (serverAuth)"),
            ("foreign", "the CA in --tls-peer-ca"),
            ("code", "its extended key usage allows codeSigning (1.3.6.1.5.5.7.3.3), not serverAuth"),
        ] {
            refused_at_start_and_by_a_reload(&tls, &d.0, name, why);
        }
        assert!(Tls::load(files(&d.0, "any")).is_ok(), "no extended key usage allows every use");
        let seed = |name| TlsFiles { calls_peers: false, ..files(&d.0, name) };
        assert!(Tls::load(seed("server")).is_ok(), "a seed's certificate needs server use only");
        assert!(Tls::load(seed("client")).unwrap_err().to_string().contains("serverAuth"));
    }
}
