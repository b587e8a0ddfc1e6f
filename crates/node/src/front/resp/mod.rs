//! The Redis protocol (RESP2) listener: `redis-cli`, `redis-benchmark` and Redis client libraries
//! talk to any node (DESIGN §8).
//!
//! * [`frame`]: parsing commands and encoding replies, pure;
//! * [`commands`]: each command in terms of the key service, the same as the HTTP API's;
//! * this file: the TCP side. Each connection reads into one buffer and starts every complete
//!   command in it (pipelining) at once, up to [`MAX_IN_FLIGHT`]: their keys live on different
//!   replicas, and running them one after the other would add up their round trips. Replies are
//!   collected in command order and all written with one write. Commands that touch the
//!   connection's session (`CLIENT`, `HELLO`, `QUIT`) answer at once, in their place in the order.
//!   Running at once must not change what a client sees: a command that writes a key an earlier
//!   running command reads or writes, or reads a key one of them writes (`SET k` then `GET k`),
//!   or reads the whole keyspace (`DBSIZE`), waits until the commands before it have finished,
//!   as it would on Redis. Reads of the same key run together.
//!   A malformed frame gets an error reply after the replies before it, and the connection is
//!   closed; an unknown command only gets an error.

mod commands;
pub mod frame;

use bytes::{Bytes, BytesMut};
use futures_util::future::{ready, Either};
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::life::state::Node;
use crate::transport::listener::accept_until_stopped;
use commands::Touches;
use frame::{Limits, Reply};

/// Serve RESP on `listener` until `stop`.
pub async fn serve(node: Node, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let limits = Limits {
        max_bulk: node.config.max_value_bytes.max(node.config.max_key_bytes),
        max_args: 1 << 20,
        max_inline: 64 * 1024,
    };
    loop {
        let Some((stream, peer)) = accept_until_stopped(&listener, &mut stop, "RESP").await else { return };
        let (node, stop) = (node.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(node, stream, limits, stop).await {
                tracing::debug!(%peer, "RESP connection ended: {e}");
            }
        });
    }
}

/// Commands of one connection running at once; more wait in the input buffer (and TCP).
pub const MAX_IN_FLIGHT: usize = 128;

async fn connection(
    node: Node,
    mut stream: TcpStream,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut session = commands::Session::default();
    let mut running = FuturesOrdered::new();
    // Keys touched by the commands running now, and a parsed command waiting for them to finish.
    let mut wave = Touches::none();
    let mut held: Option<Vec<Bytes>> = None;
    loop {
        // Start every complete command in the buffer, up to the bound.
        let (mut malformed, mut at_bound) = (None, false);
        while !session.quit {
            if running.len() == MAX_IN_FLIGHT {
                at_bound = true;
                break;
            }
            let args = match held.take() {
                Some(args) => args,
                None => match frame::parse(&mut input, &limits) {
                    Ok(Some(args)) if args.is_empty() => continue,
                    Ok(Some(args)) => args,
                    Ok(None) => break,
                    Err(e) => {
                        malformed = Some(Reply::err(&e));
                        frame::discard(&mut input);
                        break;
                    }
                },
            };
            if let Some(reply) = commands::session_command(&node, &mut session, &args) {
                running.push_back(Either::Left(ready(reply)));
                continue;
            }
            if running.is_empty() && input.is_empty() {
                // The only command of this read (no pipeline): nothing to order it against.
                commands::run(&node, args).await.write(&mut output);
                continue;
            }
            let touches = commands::touches(&args);
            if !running.is_empty() && touches.conflicts_with(&wave) {
                held = Some(args); // starts once the commands before it have finished
                break;
            }
            wave.absorb(touches);
            running.push_back(Either::Right(commands::run(&node, args)));
        }
        // Their replies, in order, into one write.
        while let Some(reply) = running.next().await {
            reply.write(&mut output);
        }
        wave = Touches::none();
        if let Some(reply) = &malformed {
            reply.write(&mut output);
        }
        if malformed.is_some() || session.quit {
            stream.write_all(&output).await?;
            return Ok(());
        }
        if (at_bound || held.is_some()) && output.len() < 64 * 1024 {
            continue; // more complete commands are waiting in the buffer
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
