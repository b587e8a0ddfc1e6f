//! Serving the seed's HTTP connections: hyper under the router, with a bound on request heads.
//!
//! `axum::serve` would do, except that it gives hyper its defaults, and hyper's HTTP/1 buffer
//! holds up to about 400 KB of a request head that has not ended: with `--max-connections` at
//! 20 000, 8 GB. Here a head may take 96 KiB, as on a node (its `front/http_conn.rs`), and
//! HTTP/2 the same in headers. The other bounds are the connection's own (`transport.rs`):
//! its place under `--max-connections`, and `--read-timeout` for a request and for every wait.

use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use dkv_transport::stopped;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::transport::{Caller, HttpConnections};

/// The most a request head may take: a URL of up to hyper's 64 KiB and 32 KiB of headers.
const MAX_HEAD_BYTES: usize = 96 << 10;

/// Serve `app` on the connections `conns` delivers until `stop`, then let the requests in
/// flight finish and return once every connection is closed.
pub(crate) async fn serve(app: Router, mut conns: HttpConnections, mut stop: watch::Receiver<bool>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(MAX_HEAD_BYTES);
    builder.http2().max_header_list_size(MAX_HEAD_BYTES as u32);
    let tracker = TaskTracker::new();
    loop {
        let io = tokio::select! {
            _ = stopped(&mut stop) => break,
            io = conns.next() => io,
        };
        let service = WithCaller { app: TowerToHyperService::new(app.clone()), caller: Caller { member: io.member() } };
        let (builder, mut stop) = (builder.clone(), stop.clone());
        tracker.spawn(async move {
            let served = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(served);
            let result = tokio::select! {
                r = served.as_mut() => r,
                _ = stopped(&mut stop) => {
                    served.as_mut().graceful_shutdown();
                    served.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("seed HTTP connection ended: {e}");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// The router, with what it knows of the connection a request came on (`ConnectInfo<Caller>`),
/// as `into_make_service_with_connect_info` gave it.
#[derive(Clone)]
struct WithCaller {
    app: TowerToHyperService<Router>,
    caller: Caller,
}

impl<B> Service<hyper::Request<B>> for WithCaller
where
    TowerToHyperService<Router>: Service<hyper::Request<B>>,
{
    type Response = <TowerToHyperService<Router> as Service<hyper::Request<B>>>::Response;
    type Error = <TowerToHyperService<Router> as Service<hyper::Request<B>>>::Error;
    type Future = <TowerToHyperService<Router> as Service<hyper::Request<B>>>::Future;

    fn call(&self, mut req: hyper::Request<B>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.caller));
        self.app.call(req)
    }
}
