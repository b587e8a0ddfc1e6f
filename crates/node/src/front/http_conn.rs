//! Serving HTTP connections: hyper under the router, with the limits of `limits.rs`.
//!
//! `axum::serve` would do, except that it gives hyper no timer, so hyper's header read timeout
//! never fires and a client that sends half a request header holds its connection forever. Here
//! each connection gets `--read-timeout` for its request headers (HTTP/1.1; counted from when
//! the node starts waiting for the next request, so an idle keep-alive connection is closed after
//! it too), HTTP/2 gets a bound on streams and a keep-alive ping, and every connection task is
//! tracked so a shutdown waits for the requests in flight and no longer.
//!
//! hyper's own timer starts only once it knows the protocol, and to know it, it waits for up
//! to 24 bytes that may be the start of HTTP/2's preface, with no timeout: a client that sent
//! `P` and nothing more held its connection, and its place under `--max-connections`, for good.
//! So a connection must also make its first request within `--read-timeout` of being handed
//! here, whatever its protocol. And one whose answer waits for the client with no byte moved
//! for `--idle-timeout` is closed (see `progress.rs`): a client that never reads an answer would
//! hold it in the node.

use std::time::Duration;

use axum::response::Response;
use dkv_transport::stopped;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use crate::front::limits::{Guard, Refusal};
use crate::front::parse_errors::{Explained, InFlight, Tracking};
use crate::front::progress::{stalled, Progress, Stamp};
use crate::transport::listener::HttpConn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Streams one HTTP/2 client may have open at once.
const MAX_H2_STREAMS: u32 = 256;

/// The most a request head may take: the longest URL hyper takes (64 KiB, enough for a key of
/// 8 KiB whose every byte is percent-encoded) and 32 KiB of headers. It bounds what a connection
/// holds while its head arrives, which `--max-client-memory` does not count: hyper's default
/// HTTP/1 buffer of about 400 KB let 1 000 unfinished heads hold 340 MB (found by trying,
/// 2026-12-06). And HTTP/2's default list of 16 KiB refused a key of 8 KiB percent-encoded (24
/// KiB of path) with a broken connection, where HTTP/1.1 took it.
const MAX_HEAD_BYTES: usize = 96 << 10;

/// Serve `app` on the connections `conns` delivers until `stop`, then let the requests in
/// flight finish (graceful shutdown) and return once every connection is closed.
/// `node` is the node's id, for the answers hyper writes itself (`parse_errors.rs`).
pub async fn serve<S>(
    app: impl Fn(std::net::SocketAddr) -> S,
    mut conns: mpsc::Receiver<HttpConn>,
    guard: Arc<Guard>,
    mut stop: watch::Receiver<bool>,
    node: dkv_membership::NodeId,
) where
    S: Service<hyper::Request<Incoming>, Response = Response, Error = std::convert::Infallible> + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(guard.limits.read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(MAX_H2_STREAMS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let tracker = TaskTracker::new();
    loop {
        let conn = tokio::select! {
            _ = stopped(&mut stop) => break,
            conn = conns.recv() => match conn {
                Some(conn) => conn,
                None => break,
            },
        };
        let requested = Arc::new(AtomicBool::new(false));
        let in_flight = InFlight::default();
        let service =
            FirstRequest { inner: app(conn.peer), requested: requested.clone(), in_flight: in_flight.clone() };
        let (builder, guard, mut stop) = (builder.clone(), guard.clone(), stop.clone());
        tracker.spawn(async move {
            let _slot = conn.slot; // held until the connection closes
            let stamp = Stamp::new();
            let io = TokioIo::new(Explained::new(Progress::new(conn.stream, stamp.clone()), node, in_flight));
            let served = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(served);
            let read_timeout = guard.limits.read_timeout;
            let silent = async {
                tokio::time::sleep(read_timeout).await;
                if requested.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            };
            let result = tokio::select! {
                r = served.as_mut() => r,
                _ = stopped(&mut stop) => {
                    served.as_mut().graceful_shutdown();
                    served.await
                }
                () = silent => {
                    guard.refused(Refusal::ReadTimeout);
                    tracing::debug!(peer = %conn.peer, "HTTP connection closed: no request within {read_timeout:?} (--read-timeout)");
                    return;
                }
                () = idle_for(&stamp, guard.limits.idle_timeout) => {
                    guard.refused(Refusal::Idle);
                    tracing::debug!(peer = %conn.peer, "HTTP connection closed: its answer waited unread for --idle-timeout");
                    return;
                }
            };
            if let Err(e) = result {
                if e.downcast_ref::<hyper::Error>().is_some_and(|e| e.is_timeout()) {
                    guard.refused(Refusal::ReadTimeout);
                }
                tracing::debug!(peer = %conn.peer, "HTTP connection ended: {e}");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Ends once the connection's answer waited unread for `idle` (never, without an idle timeout).
async fn idle_for(stamp: &Stamp, idle: Option<Duration>) {
    match idle {
        Some(idle) => stalled(stamp, idle).await,
        None => std::future::pending().await,
    }
}

/// The router, noting that a connection made a request (see the module doc) and which of its
/// answers are in flight (see `parse_errors.rs`).
#[derive(Clone)]
struct FirstRequest<S> {
    inner: S,
    requested: Arc<AtomicBool>,
    in_flight: InFlight,
}

impl<S, B, RB> Service<hyper::Request<B>> for FirstRequest<S>
where
    S: Service<hyper::Request<B>, Response = hyper::Response<RB>>,
{
    type Response = hyper::Response<crate::front::parse_errors::Tracked<RB>>;
    type Error = S::Error;
    type Future = Tracking<S::Future>;

    fn call(&self, req: hyper::Request<B>) -> Self::Future {
        self.requested.store(true, Ordering::Relaxed);
        let answering = self.in_flight.begin();
        Tracking::new(self.inner.call(req), answering)
    }
}
