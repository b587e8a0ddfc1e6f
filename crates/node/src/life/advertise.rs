//! The address a node gives the seed and its peers (`--advertise`, or one found for it), and a
//! check that a given one reaches this node itself.
//!
//! The seed keeps one member per address: a new node registered at a member's address takes
//! that member's place (a node restarted without its data directory comes back with a new id at
//! its old address, and the old member must go). So a node that advertised a live member's
//! address by mistake (a copied `--advertise`) made the seed drop that healthy member, and in a
//! one-node cluster took its place empty, its keys read as missing (found by trying,
//! 2026-12-06). Before it registers, a node given `--advertise` connects to it and sends a
//! request that names a nonce: its own listener must take it. If another server answers there
//! instead, the node refuses to start; so it does when the address is a loopback one where
//! nothing listens (a typo: no one could ever reach the node, and it stayed a member for good,
//! its heartbeats going out while no peer could reach it, found by trying, 2026-12-06). If
//! nothing can be reached otherwise (an address this host cannot dial itself, a name not yet in
//! DNS), it says so and starts: peers may still reach it there.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::NodeConfig;
use crate::error::NodeError;

/// How long the check waits for each step: the connection, its arrival, an answer.
const WITHIN: Duration = Duration::from_secs(2);

/// Whether `advertised` reaches this node's own `listener` (see the module's doc).
async fn reaches_this_node(advertised: &str, listener: &TcpListener) -> Result<(), NodeError> {
    let nonce = format!("{:016x}", RandomState::new().hash_one(Instant::now()));
    let mut out = match tokio::time::timeout(WITHIN, TcpStream::connect(advertised)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused && is_loopback(advertised) => {
            return Err(NodeError::BadRequest(format!(
                "--advertise {advertised}: nothing listens there (connection refused), and a loopback address is \
                 reached from this host alone, so no peer or client could ever reach this node; advertise the \
                 address it listens on (--listen), or leave --advertise out"
            )))
        }
        Ok(Err(e)) => return unchecked(advertised, &e.to_string()),
        Err(_) => return unchecked(advertised, "no connection within 2s"),
    };
    let request =
        format!("GET /health HTTP/1.1\r\nhost: {advertised}\r\nx-dkv-self-check: {nonce}\r\nconnection: close\r\n\r\n");
    if let Err(e) = out.write_all(request.as_bytes()).await {
        return unchecked(advertised, &e.to_string());
    }
    // Take what arrives at our own listener until the nonce does. Anything else that came this
    // early (a client, a peer that knew this address) is closed: it calls again.
    let deadline = tokio::time::Instant::now() + WITHIN;
    while let Ok(Ok((mut conn, _))) = tokio::time::timeout_at(deadline, listener.accept()).await {
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while seen.len() < 4096 {
            match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                _ => break,
            }
            if seen.windows(nonce.len()).any(|w| w == nonce.as_bytes()) {
                return Ok(());
            }
            if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    // Not at our listener. Another server answering there (over HTTP, or a TLS alert, or any
    // byte) is the mistake this is for; one that closes without a word (a proxy that is cut)
    // tells nothing.
    let mut answer = [0u8; 64];
    match tokio::time::timeout(WITHIN, out.read(&mut answer)).await {
        Ok(Ok(n)) if n > 0 => Err(NodeError::BadRequest(format!(
            "--advertise {advertised} reaches another server, not this node (it answered this node's own request \
             there): give this node its own address. The seed keeps one member per address, and would put this \
             node in the place of the member already there"
        ))),
        _ => unchecked(advertised, "what answers there did not pass this node's request on"),
    }
}

/// Whether `addr` names a loopback address (`127.0.0.1:9000`, `[::1]:9000`, `localhost:9000`).
/// Refused there, the address is refused to everyone: it can only be this host's, and the kernel
/// answered for it. Elsewhere a refusal may be this host's alone (a port forwarded only for
/// traffic from outside), so the node starts and says it could not check.
fn is_loopback(addr: &str) -> bool {
    match addr.parse::<SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => addr.rsplit_once(':').is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

/// The check could not tell: said once, and the node starts.
fn unchecked(advertised: &str, why: &str) -> Result<(), NodeError> {
    tracing::warn!(
        "could not check that --advertise {advertised} reaches this node itself ({why}); peers must reach it there"
    );
    Ok(())
}

/// The address peers must use: `--advertise` if given; the listen address if it is specific;
/// otherwise this host's own address on the route to the seed (in a container, its address on
/// the cluster network) with the listen port.
pub async fn address(config: &NodeConfig, local: SocketAddr, listener: &TcpListener) -> Result<String, NodeError> {
    if let Some(a) = &config.advertise {
        reaches_this_node(a, listener).await?;
        return Ok(a.clone());
    }
    if !local.ip().is_unspecified() {
        return Ok(local.to_string());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match route_ip_toward(&config.seed).await {
            Ok(ip) => return Ok(SocketAddr::new(ip, local.port()).to_string()),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(NodeError::Unavailable(format!(
                    "cannot find this host's address toward the seed {}: {e}; pass --advertise HOST:PORT",
                    config.seed
                )))
            }
            Err(e) => {
                tracing::warn!(seed = %config.seed, "resolving the seed to pick an advertise address: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn route_ip_toward(seed: &str) -> std::io::Result<std::net::IpAddr> {
    let target = tokio::net::lookup_host(seed)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let bind: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { "[::]:0".parse().expect("literal") };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(target).await?;
    Ok(sock.local_addr()?.ip())
}
