//! The Redis protocol (RESP2) listener: `redis-cli`, `redis-benchmark` and Redis client libraries
//! talk to any node (DESIGN §8).
//!
//! * [`frame`]: parsing commands and encoding replies, pure;
//! * [`commands`]: each command in terms of the same key operations as the HTTP API;
//! * this file: the TCP side. Each connection reads into one buffer, runs every complete command
//!   in it in order (pipelining) and writes all their replies with one write. A malformed frame
//!   gets an error reply and the connection is closed; an unknown command only gets an error.

mod commands;
pub mod frame;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::life::state::Node;
use frame::{Limits, Reply};

/// Serve RESP on `listener` until `stop`.
pub async fn serve(node: Node, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let limits = Limits {
        max_bulk: node.config.max_value_bytes.max(node.config.max_key_bytes),
        max_args: 1 << 20,
        max_inline: 64 * 1024,
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!("RESP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (node, stop) = (node.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(node, stream, limits, stop).await {
                tracing::debug!(%peer, "RESP connection ended: {e}");
            }
        });
    }
}

async fn connection(
    node: Node,
    mut stream: TcpStream,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut session = commands::Session::default();
    loop {
        loop {
            match frame::parse(&mut input, &limits) {
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => {
                    commands::run(&node, &mut session, args).await.write(&mut output);
                    if session.quit {
                        stream.write_all(&output).await?;
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    Reply::err(&e).write(&mut output);
                    frame::discard(&mut input);
                    stream.write_all(&output).await?;
                    return Ok(());
                }
            }
        }
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        let read = tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            r = stream.read_buf(&mut input) => r?,
        };
        if read == 0 {
            return Ok(());
        }
    }
}

/// Resolves once `stop` is set (without holding the channel's lock guard across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
