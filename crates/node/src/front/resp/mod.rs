//! The Redis protocol (RESP2) listener: `redis-cli`, `redis-benchmark` and Redis client libraries
//! talk to any node (DESIGN §8).
//!
//! * [`frame`]: parsing commands and encoding replies, pure;
//! * [`table`]: the commands this node knows, with their arity and whether they write, pure;
//! * [`commands`]: each command in terms of the key service, the same as the HTTP API's, and
//!   [`expiry`], the commands that set and read a key's expiry;
//! * this file: the TCP side. Each connection reads into one buffer and starts every complete
//!   command in it (pipelining) at once, up to [`MAX_IN_FLIGHT`] key operations (a multi-key
//!   command counts the keys it asks for at once): their keys live on different replicas, and
//!   running them one after the other would add up their round trips. The pipelines of all
//!   connections together run at most `--max-pipelined` key operations (`Guard::pipelined`): a
//!   connection that finds the node there runs one command at a time. Commands past the bound
//!   start as soon as those before them have finished, without waiting for more input. Replies are
//!   collected in command order and all written with one write. Commands that touch the
//!   connection's session (`CLIENT`, `HELLO`, `QUIT`, `RESET`, `MULTI` and the commands it
//!   queues) answer at once, in their place in the order; an `EXEC` ([`multi`]) runs alone,
//!   once the commands before it have finished, and the commands after it wait for it.
//!   Running at once must not change what a client sees: a command that writes a key an earlier
//!   running command reads or writes, or reads a key one of them writes (`SET k` then `GET k`),
//!   or reads the whole keyspace (`DBSIZE`), waits until the commands before it have finished,
//!   as it would on Redis. Reads of the same key run together.
//!   A malformed frame gets an error reply after the replies before it, and the connection is
//!   closed; an unknown command only gets an error.
//! * limits (`front/limits.rs`): at most `--max-connections` clients; each connection's unparsed
//!   input is bounded by `--max-query-buffer` and charged to `--max-client-memory`; a command
//!   that has begun must arrive whole within `--read-timeout`, and a connection that sends
//!   nothing is closed after `--idle-timeout`. With TLS the handshake is bounded by
//!   `--read-timeout` and holds the connection's slot. Replies are written out every
//!   [`OUTPUT_FLUSH`] bytes, so a pipeline of large values does not pile up its answers, and
//!   while a write waits for the client to read, the connection goes on reading its commands
//!   ([`write_reading`]): a client that sends its whole pipeline before it reads is not stuck.

mod clients;
mod commands;
mod expiry;
pub mod frame;
mod info;
mod interrupts;
mod introspection;
mod multi;
mod replies;
mod scan;
mod table;

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::future::{ready, Either, FutureExt, OptionFuture};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::front::auth::Access;
use crate::front::limits::{human, Charge, Guard, Listener, Refusal, SMALL_CHARGE};
use crate::life::state::Node;
use crate::transport::listener::answer_and_close;
use crate::transport::tls::{ClientStream, Prefixed};
use clients::{Client, Clients, Listed};
use commands::{Answer, Held, Touches};
use dkv_transport::{accept_until_stopped, stopped, Throttle};
use frame::{Limits, Reply};
use std::sync::atomic::Ordering::Relaxed;
use table::Cmd;

/// Serve RESP on `listener` until `stop`, then wait for the connections to close.
pub async fn serve(node: Node, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let limits = Limits {
        max_bulk: node.config.max_value_bytes.max(node.config.max_key_bytes),
        // 64 Ki arguments: a command's arguments are kept in a vector until it is whole (a
        // command arriving in pieces is parsed on from where the last read stopped,
        // `frame::Resume`; parsed again from its start, 7 MiB of 1 Mi arguments took 3.5 s).
        max_args: 1 << 16,
        max_inline: 64 * 1024,
    };
    let tracker = TaskTracker::new();
    let clients = Arc::new(Clients::default());
    loop {
        let Some((stream, peer)) = accept_until_stopped(&listener, &mut stop, "RESP").await else { break };
        let Some(slot) = node.guard.admit(Listener::Resp) else {
            node.guard.refused(Refusal::Connections);
            if node.config.tls.is_none() {
                // Redis's own words, which client libraries recognise. (A TLS client is closed
                // without them: telling it would cost a handshake; so is any client past the
                // refusals being answered already.)
                if let Some(refusing) = node.guard.refusing() {
                    tracker.spawn(async move {
                        answer_and_close(stream, b"-ERR max number of clients reached\r\n").await;
                        drop(refusing);
                    });
                }
            }
            continue;
        };
        let (node, stop, clients) = (node.clone(), stop.clone(), clients.clone());
        tracker.spawn(async move {
            let _slot = slot;
            let me = Client::new(commands::Session::next_id(), Some(peer), stream.local_addr().ok());
            let Some(stream) = open(&node, stream, peer).await else { return };
            let listed = clients.open(me);
            if let Err(e) = connection(node, stream, limits, stop, &listed).await {
                tracing::debug!(%peer, "RESP connection ended: {e}");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// The connection as commands will be read from it: with TLS, after the handshake, which must
/// end within `--read-timeout` (the connection holds its slot meanwhile).
async fn open(node: &Node, stream: TcpStream, peer: std::net::SocketAddr) -> Option<ClientStream> {
    let Some(tls) = &node.config.tls else { return Some(ClientStream::Plain(stream)) };
    match tokio::time::timeout(node.guard.limits.read_timeout, tls.resp_acceptor().accept(stream)).await {
        Ok(Ok(s)) => Some(ClientStream::Tls(Box::new(Prefixed::new(None, s)))),
        Ok(Err(e)) if crate::transport::tls::is_certificate_error(&e) => {
            static REFUSED: Throttle = Throttle::new();
            let e = e.to_string();
            if let Some(more) = REFUSED.allow(&e) {
                tracing::warn!(%peer, "RESP TLS handshake refused: {e}{more}");
            }
            None
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, "RESP TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            node.guard.refused(Refusal::ReadTimeout);
            None
        }
    }
}

/// Key operations of one connection's commands running at once: a command for one key counts
/// one, a multi-key command the keys it asks for at once (at most 64, `commands.rs`). More
/// commands wait in the input buffer (and TCP).
pub const MAX_IN_FLIGHT: usize = 128;

/// Room kept free in a connection's input buffer for the next read.
const READ_CHUNK: usize = 16 * 1024;

/// Replies gathered for one write; more are written out before the rest are gathered.
const OUTPUT_FLUSH: usize = 1 << 20;

async fn connection(
    node: Node,
    mut stream: ClientStream,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    listed: &Listed,
) -> std::io::Result<()> {
    let guard = node.guard.clone();
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut charge = match guard.charge(input.capacity()) {
        Ok(charge) => charge,
        Err(refused) => return refuse(stream, &format!("ERR {}", refused.0)).await,
    };
    // Until a client that needs a password has given it, it may send only small commands, as
    // Redis's unauthenticated clients may (bulk strings of 16 KiB, 10 arguments): one that
    // announced a 16 MiB value had that much reserved and charged to the budget every client
    // shares, with no password (found by reading, 2026-12-06).
    let before_auth = Limits {
        max_bulk: limits.max_bulk.min(16 << 10),
        max_args: limits.max_args.min(10),
        max_inline: limits.max_inline.min(16 << 10),
    };
    // (An atomic only because the connection's future must be `Send`: one task touches it.)
    let authenticated = std::sync::atomic::AtomicBool::new(!node.auth.required());
    let limits_now = || if authenticated.load(Relaxed) { &limits } else { &before_auth };
    // Room for the next read, charged; or why there is none.
    // And their unparsed input may hold one such command (32 KiB), not `--max-query-buffer`: a
    // client with no password that pipelined small commands and never read the `-NOAUTH`
    // replies had the node read on while its replies waited, up to 64 MiB a connection charged
    // to the shared budget; 19 of them filled 805 MB of it and every large write was refused
    // (found by trying, 2026-12-06).
    let max_input = |authenticated: bool| match authenticated {
        true => guard.limits.max_query_buffer.max(limits.max_bulk + READ_CHUNK),
        false => before_auth.max_bulk + READ_CHUNK,
    };
    let mut grow = |input: &mut BytesMut, resume: &frame::Resume| {
        let authenticated = authenticated.load(Relaxed);
        make_room(input, resume, &mut charge, limits_now(), max_input(authenticated), &guard)
    };
    // Where the parse of a long command not yet whole stopped (see `frame::Resume`).
    let mut resume = frame::Resume::default();
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    let mut session = commands::Session::listed(listed.client.clone(), listed.clients.clone());
    let mut running = replies::Replies::new();
    // The box a command starts in, kept for the next one while each is done at its first poll.
    let mut spare = None;
    // Keys touched by the commands running now, and a parsed command waiting for them to finish.
    let mut wave = Touches::none();
    let mut held: Option<frame::Args> = None;
    // Their share of the node's bound on pipelined key operations, given back once they are
    // answered, or before a write of their replies that may wait for the client.
    let mut shares: Option<tokio::sync::SemaphorePermit> = None;
    let mut clock = Clock::new(guard.limits.idle_timeout, guard.limits.read_timeout);
    // Armed once per connection, not once per wait: a wait that ends with a read (nearly all of
    // them) then leaves no timer to take down and no stop signal to unsubscribe from. And they
    // are polled only when one of them has woken the task (`interrupts.rs`).
    let mut check = stop.clone();
    // (The node's stop, or a `CLIENT KILL` of this connection.)
    let me = listed.client.clone();
    let mut stopping = std::pin::pin!(async move {
        tokio::select! {
            _ = stopped(&mut stop) => {}
            _ = me.killed() => {}
        }
    });
    let mut timer = std::pin::pin!(tokio::time::sleep_until(clock.now.into()));
    let mut timer_at: Option<Instant> = None;
    let interrupts = interrupts::Interrupts::new();
    // Write out the replies gathered, reading on meanwhile (`write_reading`); the connection
    // ends here if it ended there.
    macro_rules! write_out {
        () => {
            if let Err(end) = write_reading(
                &mut stream,
                &mut output,
                &mut input,
                &resume,
                &mut clock,
                &mut grow,
                &guard,
                &listed.client,
                &mut running,
                &mut shares,
            )
            .await?
            {
                return end.close(&guard);
            }
        };
    }
    loop {
        // Start every complete command in the buffer, up to the bound: `MAX_IN_FLIGHT` key
        // operations (a multi-key command counts each key it asks for at once).
        // `paused`: stopped with complete commands left in the buffer, at the bound or with a
        // megabyte of replies to write out first (commands done at once write theirs straight
        // to the output, and a pipeline of GETs of a large value must not pile them all up).
        let (mut malformed, mut paused, mut took) = (None, false, false);
        let mut in_flight = 0;
        while !session.quit {
            if output.len() >= OUTPUT_FLUSH {
                paused = true;
                break;
            }
            let args = match held.take() {
                Some(args) => args,
                None => match frame::parse_resuming(&mut input, limits_now(), &mut resume) {
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
            took = true;
            let cmd = Cmd::of(&args[0]);
            if cmd == Cmd::Unknown && table::is_http(&args[0]) {
                static ATTACKS: Throttle = Throttle::new();
                if let Some(more) = ATTACKS.allow("http") {
                    tracing::warn!(
                        "a RESP connection sent an HTTP request ({}): a web page may be trying to run commands on \
                         this node through a browser (cross-protocol scripting); closed without running it. Give \
                         the node a --client-password, and keep its RESP port off networks browsers reach{more}",
                        String::from_utf8_lossy(&args[0])
                    );
                }
                // The commands before it run to their end and are answered, as in Redis, and the
                // connection closes as after `QUIT`: returning here dropped them mid-way, and an
                // `MSET` before it was left partly written (found by a hunt, 2026-12-08).
                session.quit = true;
                break;
            }
            let operations = commands::key_operations(cmd, &args);
            if !running.is_empty() && in_flight + operations > MAX_IN_FLIGHT {
                held = Some(args); // starts once the commands before it have finished
                paused = true;
                break;
            }
            if matches!(cmd, Cmd::Exec) && !running.is_empty() {
                held = Some(args); // a transaction runs alone: once the commands before it finished
                break;
            }
            match commands::session_command(&node, &mut session, cmd, &args, guard.limits.max_query_buffer) {
                Some(Answer::Now(reply)) => {
                    authenticated.store(!node.auth.required() || session.access != Access::None, Relaxed);
                    running.push_back(Either::Left(Either::Left(ready(Some(Held::small(reply))))));
                    in_flight += 1;
                    continue;
                }
                Some(Answer::Exec(queued)) => {
                    let node = &node;
                    let exec = multi::exec(node, queued).map(Some);
                    running.push_back(Either::Left(Either::Right(Box::pin(exec))));
                    wave = Touches::Everything; // and the commands after it wait for it
                    in_flight += 1;
                    continue;
                }
                None => {}
            }
            if running.is_empty() && input.is_empty() {
                // The only command of this read (no pipeline): nothing to order it against. Its
                // reply is charged as a pipelined one's is, refused past the budget: written
                // straight out, a lone `KEYS *` of 80 MB was held uncharged, and 24 clients that
                // sent one each and read nothing held 3 GB against a 1 GiB budget (found by a
                // code-reading hunt, 2026-12-07).
                let keep = commands::takes_value_out(cmd, &args);
                let reply = commands::run(&node, cmd, args).await;
                match (!keep).then(|| commands::past_budget(&node, &reply)).flatten() {
                    Some(refusal) => refusal.write(&mut output),
                    None => reply.write(&mut output),
                }
                continue;
            }
            let touches = commands::touches(cmd, &args);
            if !running.is_empty() && touches.conflicts_with(&wave) {
                held = Some(args); // starts once the commands before it have finished
                break;
            }
            // Its share of the node's bound on pipelined operations (`--max-pipelined`): with
            // none left, it waits for this connection's running commands to answer. The first
            // of a wave runs even without one, so every connection moves on.
            let share = match running.is_empty() {
                true => None,
                false => match guard.pipelined(operations) {
                    Some(share) => Some(share),
                    None => {
                        held = Some(args);
                        paused = true;
                        break;
                    }
                },
            };
            // Most commands of a one-node pipeline are done at their first poll: with nothing
            // running before it, such a reply goes straight to the output, and the ordered set
            // (a task allocated per command, a wake and a heap per reply) is kept for those that
            // wait on another node. Their box is used again for the next command.
            let command = spare.get_or_insert_with(|| Box::pin(OptionFuture::from(None)));
            command.set(Some(commands::run_held(&node, cmd, args)).into());
            if running.is_empty() {
                if let Some(Some(held)) = command.as_mut().now_or_never() {
                    held.reply.write(&mut output);
                    continue;
                }
            }
            if let Some(share) = share.or_else(|| guard.pipelined(operations)) {
                match shares.as_mut() {
                    Some(shares) => shares.merge(share),
                    None => shares = Some(share),
                }
            }
            wave.absorb(touches);
            in_flight += operations;
            running.extend(spare.take().map(Either::Right));
        }
        clock.parsed(took, input.is_empty());
        // What the writes below read meanwhile (`write_reading`) may hold whole commands: they
        // are parsed next, not left waiting for more input that may never come.
        let unparsed = input.len();
        // Their replies, in order, written out as they pile up.
        while let Some(held) = running.next().await {
            // Its charge is given back once its reply is in the output.
            held.reply.write(&mut output);
            drop(held);
            if output.len() >= OUTPUT_FLUSH {
                // The wave's shares go back during a write that may wait for the client as long
                // as --idle-timeout, once its commands still running have finished (they go on
                // meanwhile, their replies over 4 KiB charged to --max-client-memory as they
                // finish: `replies.rs`): a client that does not read must not hold the node's
                // bound.
                write_out!();
            }
        }
        wave = Touches::none();
        shares = None;
        if let Some(reply) = &malformed {
            reply.write(&mut output);
        }
        if malformed.is_some() || session.quit {
            // The last replies, under the same bound in time as any (what is read meanwhile is
            // never run).
            write_out!();
            // Closed with unread input (the rest of a value over the limit, say), the socket
            // resets, and the client saw "connection reset" instead of the error (found by trying
            // with redis-py, 2026-12-06): what it still sends is read and dropped, until it is
            // quiet for a second (4 s and 256 MiB at most).
            if malformed.is_some() {
                drop((input, output, charge)); // not held while it drains
                answer_and_close(stream, b"").await;
            }
            return Ok(());
        }
        // Complete commands still wait in the buffer: their replies join these, unless these
        // are many already. Either way they are started next, not after more input: a client
        // that sent its whole pipeline waits for every reply before it sends anything else.
        let more = paused || held.is_some();
        if !output.is_empty() && (!more || output.len() >= 64 * 1024) {
            write_out!();
        }
        if more || input.len() > unparsed {
            continue;
        }
        if output.capacity() > OUTPUT_FLUSH * 2 {
            output = BytesMut::with_capacity(READ_CHUNK); // give back what one large reply took
        }
        if let Err(why) = grow(&mut input, &resume) {
            drop((input, output, charge)); // not held while it drains
            return refuse(stream, &why).await;
        }
        // Wait for more: a command that has begun must be whole within --read-timeout; an idle
        // connection may wait --idle-timeout. The timer is moved only to an earlier deadline;
        // one that rings early (the client was busy meanwhile) is set again, to the real one.
        if check.has_changed().unwrap_or(true) && *check.borrow_and_update() {
            return Ok(());
        }
        let (deadline, why) = clock.deadline(input.is_empty());
        let read = loop {
            if let Some(d) = deadline.filter(|&d| timer_at.is_none_or(|t| d < t)) {
                timer.as_mut().reset(d.into());
                timer_at = Some(d);
                interrupts.rearm();
            }
            let interrupted = std::future::poll_fn(|cx| {
                interrupts.poll(cx, |cx| {
                    if stopping.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                    match timer_at.is_some() && timer.as_mut().poll(cx).is_ready() {
                        true => Poll::Ready(true),
                        false => Poll::Pending,
                    }
                })
            });
            tokio::select! {
                biased;
                r = stream.read_buf(&mut input) => break r?,
                rung = interrupted => {
                    if !rung {
                        return Ok(()); // the node is stopping
                    }
                    timer_at = None;
                    // Rung for an earlier deadline than the current one (or for one that is gone).
                    if deadline.is_none_or(|d| Instant::now() < d) {
                        continue;
                    }
                    guard.refused(why);
                    if why == Refusal::Idle {
                        return Ok(()); // as Redis's `timeout` does: closed without a word
                    }
                    let text = format!(
                        "ERR a command was not received whole within {} (--read-timeout)",
                        humantime::format_duration(guard.limits.read_timeout)
                    );
                    drop((input, output, charge)); // not held while it drains
                    return refuse(stream, &text).await;
                }
            }
        };
        clock.read();
        listed.client.active(clock.now);
        if read == 0 {
            return Ok(());
        }
    }
}

/// Why a connection ends while its replies wait to be written.
enum Ending {
    /// What the client sent meanwhile is over a limit (`make_room` counted the refusal). The
    /// client is not told: a reply is half written, and words after it would read as its rest.
    Refused(String),
    /// The client neither read nor sent anything for `--idle-timeout`.
    Idle,
    /// `CLIENT KILL` named it.
    Killed,
}

impl Ending {
    /// End the connection; closed without a word either way.
    fn close(self, guard: &Guard) -> std::io::Result<()> {
        match self {
            Ending::Refused(why) => tracing::debug!("RESP connection closed with a reply half written: {why}"),
            Ending::Idle => guard.refused(Refusal::Idle), // as a connection that sends nothing
            Ending::Killed => {}
        }
        Ok(())
    }
}

/// Write out `output` (and clear it), reading more input meanwhile whenever the write has to
/// wait: a client that sends its whole pipeline before it reads a reply (redis-py's pipeline
/// does) is blocked on its own write while the node's write waits for it to read, and neither
/// would move. So the node takes in what it sends, within the connection's limits (`grow`
/// makes room, or says why there is none: then the connection is closed), as Redis does. A
/// client that neither reads nor sends for `--idle-timeout` is let go, as an idle one is. What
/// waits to be written is charged to the client memory budget meanwhile, and the commands
/// `running` go on: their replies are charged as they finish (`replies.rs`), and their
/// `shares` of `--max-pipelined` go back once none is left running.
#[allow(clippy::too_many_arguments)]
async fn write_reading<F: Future<Output = Option<Held>>>(
    stream: &mut ClientStream,
    output: &mut BytesMut,
    input: &mut BytesMut,
    resume: &frame::Resume,
    clock: &mut Clock,
    grow: &mut impl FnMut(&mut BytesMut, &frame::Resume) -> Result<(), String>,
    guard: &Arc<Guard>,
    me: &Client,
    running: &mut replies::Replies<F>,
    shares: &mut Option<tokio::sync::SemaphorePermit<'_>>,
) -> std::io::Result<Result<(), Ending>> {
    let idle = guard.limits.idle_timeout;
    // Nearly always the socket takes it all at once (a TLS session takes it into its buffer,
    // and the flush writes that out).
    let mut written = 0;
    if let Some(Ok(n)) = stream.write(output).now_or_never() {
        written = n;
        if written == output.len() && matches!(stream.flush().now_or_never(), Some(Ok(()))) {
            output.clear();
            return Ok(Ok(()));
        }
    }
    // What waits for the client to read it is counted in the budget while it waits: replies of
    // a key read from this node's store alone (one replica) were not, and 30 connections that
    // asked for a 15 MB value and never read held 470 MB outside a 64 MiB budget (found by
    // trying, 2026-12-06). Its whole allocation, not what is left of it to write: replies grow
    // the buffer by doubling, and 40 connections held 2 MB each charged at 0.6 (the hunt of
    // 2026-12-07).
    let allocated = output.capacity();
    let _waiting = (allocated > SMALL_CHARGE).then(|| guard.hold(allocated));
    let (first, mut read, mut closed) = (written, false, false);
    // Rings once nothing moved either way for `idle`; set again at every step.
    let mut stalled = idle.map(|t| (t, Box::pin(tokio::time::sleep(t))));
    // A `CLIENT KILL` ends it too: a client that does not read is what one kills (it went
    // unnoticed until the idle timeout, found by review, 2026-12-06).
    let mut killed = std::pin::pin!(me.killed());
    let done = std::future::poll_fn(|cx| loop {
        if killed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(Err(Ending::Killed)));
        }
        if running.poll_finished(cx) {
            drop(shares.take());
        }
        let before = written;
        while written < output.len() {
            match std::pin::Pin::new(&mut *stream).poll_write(cx, &output[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        if written == output.len() {
            // Written into a TLS session is not yet sent: what its buffer holds goes out by the
            // flush (a plain socket's is at once), while input is read as for a write.
            match std::pin::Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(Ok(()))),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        let mut moved = written > before;
        if !closed {
            if let Err(why) = grow(input, resume) {
                return Poll::Ready(Ok(Err(Ending::Refused(why))));
            }
            match std::pin::pin!(stream.read_buf(input)).poll(cx) {
                Poll::Ready(Ok(0)) => closed = true, // the client sends no more
                Poll::Ready(Ok(_)) => (read, moved) = (true, true),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if moved {
            if let Some((t, sleep)) = &mut stalled {
                sleep.as_mut().reset(tokio::time::Instant::now() + *t);
            }
            continue;
        }
        if let Some((_, sleep)) = &mut stalled {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(Err(Ending::Idle)));
            }
        }
        return Poll::Pending;
    })
    .await;
    if read || written > first {
        // A client that reads its replies is not idle: the wait for its next command counts
        // from here (a large reply to a slow reader may take longer than --idle-timeout).
        clock.read();
    }
    output.clear();
    done
}

/// Make sure `input` has room for the next read, within the connection's limit and the shared
/// budget; what to tell the client otherwise. A command whose headers announce a large bulk
/// string gets room for all of it at once (charged first), so a large value is one allocation
/// rather than a ladder of doublings whose freed steps the allocator keeps.
fn make_room(
    input: &mut BytesMut,
    resume: &frame::Resume,
    charge: &mut Charge,
    limits: &Limits,
    max: usize,
    guard: &Guard,
) -> Result<(), String> {
    if input.is_empty() && input.capacity() > 4 * READ_CHUNK {
        *input = BytesMut::with_capacity(READ_CHUNK); // give back what a large command took
    }
    let want = frame::announced_from(input, limits, resume).unwrap_or(0).max(input.len() + READ_CHUNK / 4);
    if want > input.capacity() {
        // `max`: always room for one command with the largest value.
        if want > max {
            guard.refused(Refusal::QueryBuffer);
            return Err(match max < guard.limits.max_query_buffer {
                true => format!(
                    "ERR this connection's pipeline needs {} not yet parsed, over the {} a connection may hold before AUTH; authenticate first",
                    human(want),
                    human(max)
                ),
                false => format!(
                    "ERR this connection's pipeline needs {} not yet parsed, over the query buffer limit (--max-query-buffer {}); send smaller pipelines",
                    human(want),
                    human(max)
                ),
            });
        }
        let room = want.max(input.len() + READ_CHUNK);
        charge.grow_to(room).map_err(|refused| format!("ERR {}", refused.0))?;
        input.reserve(room - input.len());
    }
    // The charge follows the buffer's capacity, which shrinks by each command taken from its
    // front and comes back when `reserve` reuses the allocation those commands were in. Kept
    // while the capacity is at least half of it (the allocation is still held), the charge
    // leaves the counter every connection shares alone on nearly every command.
    let capacity = input.capacity();
    if capacity > charge.bytes() || capacity < charge.bytes() / 2 {
        charge.grow_to(capacity).map_err(|refused| format!("ERR {}", refused.0))?;
    }
    Ok(())
}

/// Tell the client why it is being disconnected, and close.
async fn refuse(stream: ClientStream, text: &str) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    Reply::Error(text.to_string()).write(&mut out);
    answer_and_close(stream, &out).await;
    Ok(())
}

/// The two deadlines a connection waits under: --idle-timeout from its last read while nothing
/// is pending, --read-timeout from when the command still arriving began.
struct Clock {
    idle: Option<Duration>,
    partial: Duration,
    /// When the last read returned.
    now: Instant,
    /// When the command still incomplete in the input began to arrive: at the read that brought
    /// its first bytes, or at the read that completed the command before it.
    began: Option<Instant>,
}

impl Clock {
    fn new(idle: Option<Duration>, partial: Duration) -> Clock {
        Clock { idle, partial, now: Instant::now(), began: None }
    }

    /// A read returned (one clock read per read, and none per command).
    fn read(&mut self) {
        self.now = Instant::now();
    }

    /// The commands of the input were taken (`took`: at least one), leaving it `empty` or not.
    fn parsed(&mut self, took: bool, empty: bool) {
        if empty {
            self.began = None;
        } else if took || self.began.is_none() {
            self.began = Some(self.now);
        }
    }

    /// When the wait for more input ends, and why.
    fn deadline(&self, empty: bool) -> (Option<Instant>, Refusal) {
        match self.began {
            Some(began) if !empty => (Some(began + self.partial), Refusal::ReadTimeout),
            _ => (self.idle.map(|t| self.now + t), Refusal::Idle),
        }
    }
}
