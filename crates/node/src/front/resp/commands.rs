//! Redis commands in terms of dkv's operations.
//!
//! Every key goes through the key service (`front/service.rs`), the same path as an HTTP request:
//! served here when this node is a replica of the key (quorum reads and writes), else forwarded
//! to one. So a `SET` through one node and a `GET` through another behave exactly like `PUT` and
//! `GET` over HTTP, with the node's default W and R.
//!
//! What dkv cannot honour is refused with an error that says so: `SET NX/XX`, `SETNX`, `INCR`,
//! `APPEND` and the like (`table::cannot_honour`: dkv has no atomic compare-and-set across
//! replicas). `SET` and the expiry commands are in `expiry.rs`. `SET ... GET`, `GETSET`,
//! `GETDEL`, `DEL`'s count, `EXPIRE`, `PERSIST` and `GETEX` read the key first and then write:
//! each step is a quorum operation, but the pair is not atomic against another writer of the
//! same key.
//!
//! A command arrives here as a [`Cmd`], read once from its name (`table.rs`, where each
//! command's arity and whether it writes are too).

use std::sync::Arc;

use bytes::Bytes;
use dkv_placement::key_hash;
use futures_util::stream::{self, StreamExt};

use super::clients::{self, Client, Clients};
use super::frame::{self, Args, Reply};
use super::multi::{Queue, Transaction};
use super::table::{self, Cmd, Effect};
use super::{expiry, info};
use crate::front::auth::{self, Access, Checked, Failure};
use crate::front::limits::{Charge, CHARGE_FROM};
use crate::life::metrics::Api;
use crate::life::state::Node;
use crate::transport::wire::{Length, Op};

/// What a connection remembers between commands.
pub struct Session {
    /// `CLIENT ID`: this node's count of the RESP connections before it, from 1 (always 0 until
    /// 2026-12-06, so connections could not be told apart).
    pub id: u64,
    /// How the node's other connections see this one (`clients.rs`); its name is kept there.
    pub me: Arc<Client>,
    /// The node's connections, for `CLIENT LIST` and `CLIENT KILL`; `None` for a session made
    /// without a connection (unit tests).
    pub clients: Option<Arc<Clients>>,
    /// Set by `QUIT` (and by a `CLIENT KILL` of itself): reply, then close.
    pub quit: bool,
    /// What `AUTH` (or `HELLO … AUTH`) proved, when the node needs a password.
    pub access: Access,
    /// Since `MULTI`, until `EXEC` or `DISCARD` (`multi.rs`).
    pub transaction: Option<Transaction>,
}

impl Session {
    /// A session with the next id, not in any list.
    #[cfg(test)]
    pub fn new() -> Self {
        Session::blank(Arc::new(Client::new(Session::next_id(), None, None)), None)
    }

    /// A new connection's session, listed in `clients` as `me` (made with [`Session::next_id`]).
    pub fn listed(me: Arc<Client>, clients: Arc<Clients>) -> Self {
        Session::blank(me, Some(clients))
    }

    /// The next connection's id.
    pub fn next_id() -> u64 {
        static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// As a new connection: no name, no transaction, and no access proved (`RESET`).
    fn blank(me: Arc<Client>, clients: Option<Arc<Clients>>) -> Self {
        me.set_name(None);
        Session { id: me.id, me, clients, quit: false, access: Access::None, transaction: None }
    }
}

/// What a session command comes to.
pub enum Answer {
    /// This reply, in its place.
    Now(Reply),
    /// `EXEC`: these commands, run in order (`multi::exec`), in its place.
    Exec(super::multi::Queued),
}

/// The commands that read or change the connection's [`Session`]; they answer at once, in order
/// with the others (see `resp/mod.rs`). So does any command the session may not run (no `AUTH`
/// yet, or a write with the read-only password): its refusal is its reply; and so does every
/// command sent inside a transaction (`multi.rs`): it is queued, or refused. `None` for every
/// other command. `max_queued`: the bound on what a transaction holds.
pub fn session_command(node: &Node, session: &mut Session, cmd: Cmd, args: &Args, max_queued: usize) -> Option<Answer> {
    let a = &args[1..];
    let now = |reply| Some(Answer::Now(reply));
    match cmd {
        Cmd::Auth if session.transaction.is_none() => return now(auth(node, session, a)),
        Cmd::Hello if session.transaction.is_none() => return now(hello(node, session, a)),
        // Redis 7 takes (and ignores) arguments to `QUIT`.
        Cmd::Quit => {
            session.quit = true;
            return now(Reply::ok());
        }
        // As a new connection: no name, no transaction, and no access proved.
        Cmd::Reset if cmd.arity().allows(a.len()) => {
            *session = Session::blank(session.me.clone(), session.clients.clone());
            return now(Reply::Simple("RESET"));
        }
        _ => {}
    }
    if let Some(refusal) = refusal(node, session, cmd, &args[0]) {
        return now(match &mut session.transaction {
            Some(tx) => tx.refuse(refusal),
            None => refusal,
        });
    }
    let in_transaction = session.transaction.is_some();
    let arity_fits = cmd.arity().allows(a.len());
    match cmd {
        _ if !arity_fits && !in_transaction => now(wrong_arity(cmd)),
        // As Redis: a transaction's own commands with the wrong arguments fail it, and `EXEC`
        // then discards it at once (it committed the transaction, found by trying, 2026-12-06).
        Cmd::Exec if !arity_fits => {
            session.transaction = None;
            now(Reply::Error(format!("EXECABORT Transaction discarded because of: {}", arity_text(cmd))))
        }
        Cmd::Multi | Cmd::Discard | Cmd::Watch | Cmd::Reset if !arity_fits => match &mut session.transaction {
            Some(tx) => now(tx.refuse(wrong_arity(cmd))),
            None => now(wrong_arity(cmd)),
        },
        Cmd::Multi if in_transaction => now(Reply::err("MULTI calls can not be nested")),
        Cmd::Multi => {
            session.transaction = Some(Transaction::charged(&node.guard));
            now(Reply::ok())
        }
        Cmd::Exec => match session.transaction.take().map(Transaction::exec) {
            None => now(Reply::err("EXEC without MULTI")),
            Some(Ok(queued)) => Some(Answer::Exec(queued)),
            Some(Err(discarded)) => now(discarded),
        },
        Cmd::Discard => match session.transaction.take() {
            None => now(Reply::err("DISCARD without MULTI")),
            Some(_) => now(Reply::ok()),
        },
        Cmd::Watch if in_transaction => now(Reply::err("WATCH inside MULTI is not allowed")),
        Cmd::Watch => now(Reply::err("dkv cannot honour WATCH: it has no compare-and-set across replicas")),
        // They change the session, which a queued command cannot (Redis queues `AUTH`; here it
        // answered at once, and `EXEC`'s array was one reply short).
        Cmd::Auth | Cmd::Client | Cmd::Hello | Cmd::Reset if in_transaction => {
            let refusal = Reply::err(format!("{} is not allowed inside a transaction", cmd.name()));
            match &mut session.transaction {
                Some(tx) => now(tx.refuse(refusal)),
                None => now(refusal),
            }
        }
        Cmd::Client => now(clients::client(session, a)),
        _ => match &mut session.transaction {
            Some(tx) => match tx.queue(cmd, args, max_queued) {
                Queue::Queued => now(Reply::Simple("QUEUED")),
                Queue::Refused(reply) => now(reply),
            },
            None => None,
        },
    }
}

/// Why this session may not run `cmd`: no `AUTH` yet, or a write with the read-only password.
fn refusal(node: &Node, session: &Session, cmd: Cmd, name: &[u8]) -> Option<Reply> {
    if !node.auth.required() {
        return None;
    }
    if session.access == Access::None {
        node.auth.refused(Api::Resp, Failure::Missing);
        return Some(Reply::Error(auth::NOAUTH.into()));
    }
    // An unknown command is not refused as a write: it is answered as unknown, as Redis does.
    if session.access == Access::ReadOnly && cmd.effect() == Effect::Writes && cmd != Cmd::Unknown {
        node.auth.refused(Api::Resp, Failure::ReadOnly);
        return Some(Reply::Error(auth::noperm(&shown_name(cmd, name))));
    }
    None
}

/// `AUTH password` or `AUTH default password` (Redis's one user without ACLs; any other name is
/// `WRONGPASS`: see `front/auth.rs`).
fn auth(node: &Node, session: &mut Session, a: &[Bytes]) -> Reply {
    let password = match a {
        [p] => p,
        [user, _] if !default_user(user) => return unknown_user(node),
        [_, p] => p,
        [] => return wrong_arity(Cmd::Auth),
        _ => return Reply::err("syntax error"), // Redis's words for three or more
    };
    if !node.auth.required() && a.len() == 2 {
        // Redis's default user without a password takes any: `redis://default:pw@host` URLs
        // and `--user default --pass pw` connect (as `HELLO 2 AUTH` already did here).
        return Reply::ok();
    }
    if !node.auth.required() {
        // Redis's answer: a client configured with a password is pointed at the wrong server.
        return Reply::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    }
    let from = session.me.addr().map(|a| a.ip());
    match node.auth.check_from(Api::Resp, from, password) {
        Checked::Granted(access) => {
            session.access = access;
            Reply::ok()
        }
        Checked::Wrong => Reply::Error(auth::WRONGPASS.into()),
        Checked::TooSoon(left) => Reply::err(auth::too_soon(from, left)),
    }
}

/// Redis's one user without ACLs, the only one a node knows: any other name is Redis's
/// `WRONGPASS`, password or not (until 2026-12-07 the name was not looked at, and `AUTH x y`
/// succeeded on a node without a password).
fn default_user(user: &[u8]) -> bool {
    user == b"default"
}

/// Redis's answer to a user it does not know, counted as a wrong password where one is needed.
fn unknown_user(node: &Node) -> Reply {
    if node.auth.required() {
        node.auth.refused(Api::Resp, Failure::Wrong);
    }
    Reply::Error(auth::WRONGPASS.into())
}

pub(super) fn wrong_arity(cmd: Cmd) -> Reply {
    Reply::err(arity_text(cmd))
}

fn arity_text(cmd: Cmd) -> String {
    format!("wrong number of arguments for '{}' command", cmd.name())
}

/// What a command reads and writes, so a pipeline runs at once only commands that cannot see
/// each other's effects.
pub enum Touches {
    /// Keys by their placement hash: nothing of the frame is held, and a few sit in place, so
    /// the usual command's touches allocate nothing. Two keys of one hash count as one: the
    /// later command then waits when it need not, which changes nothing it sees.
    Keys { reads: Keys, writes: Keys },
    /// It reads the whole keyspace (or is unknown to this list): it runs alone.
    Everything,
}

impl Touches {
    /// Whether this command must wait for the running ones, which touch `running`.
    pub fn conflicts_with(&self, running: &Touches) -> bool {
        let (Touches::Keys { reads, writes }, Touches::Keys { reads: r, writes: w }) = (self, running) else {
            return true;
        };
        writes.iter().any(|k| r.contains(k) || w.contains(k)) || reads.iter().any(|k| w.contains(k))
    }

    /// Add what `other` touches to this set.
    pub fn absorb(&mut self, other: Touches) {
        match (self, other) {
            (Touches::Keys { reads, writes }, Touches::Keys { reads: r, writes: w }) => {
                reads.extend(r);
                writes.extend(w);
            }
            (me, _) => *me = Touches::Everything,
        }
    }

    pub fn none() -> Touches {
        Touches::Keys { reads: Keys::new(), writes: Keys::new() }
    }
}

/// The keys a command reads, or writes: their placement hashes.
pub type Keys = smallvec::SmallVec<[u64; 2]>;

pub fn touches(cmd: Cmd, args: &[Bytes]) -> Touches {
    let a = &args[1..];
    let first = || a.iter().take(1).map(|k| key_hash(k)).collect::<Keys>();
    let all = || a.iter().map(|k| key_hash(k)).collect::<Keys>();
    let (reads, writes) = match cmd {
        Cmd::Get | Cmd::Strlen | Cmd::Type | Cmd::Getrange | Cmd::Substr => (first(), Keys::new()),
        // `MEMORY USAGE key`: the key after the subcommand.
        Cmd::Memory => (a.iter().skip(1).take(1).map(|k| key_hash(k)).collect(), Keys::new()),
        Cmd::Exists | Cmd::Touch | Cmd::Mget => (all(), Keys::new()),
        Cmd::Set | Cmd::Getset | Cmd::Getdel | Cmd::Setex | Cmd::Psetex => (first(), first()),
        Cmd::Ttl | Cmd::Pttl | Cmd::Expiretime | Cmd::Pexpiretime => (first(), Keys::new()),
        Cmd::Expire | Cmd::Pexpire | Cmd::Expireat | Cmd::Pexpireat | Cmd::Persist | Cmd::Getex => (first(), first()),
        Cmd::Del | Cmd::Unlink => (all(), all()),
        Cmd::Mset => (Keys::new(), a.iter().step_by(2).map(|k| key_hash(k)).collect()),
        Cmd::Ping | Cmd::Echo | Cmd::Command | Cmd::Select | Cmd::Time | Cmd::Unwatch => (Keys::new(), Keys::new()),
        // The whole keyspace, the server's state, or not known here: alone.
        Cmd::Dbsize | Cmd::Scan | Cmd::Keys | Cmd::Info | Cmd::Unknown => return Touches::Everything,
        // Answered in their place before any command runs (`session_command`).
        // A transaction's commands run alone too, in their place.
        Cmd::Auth
        | Cmd::Hello
        | Cmd::Quit
        | Cmd::Client
        | Cmd::Reset
        | Cmd::Multi
        | Cmd::Exec
        | Cmd::Discard
        | Cmd::Watch => return Touches::Everything,
    };
    Touches::Keys { reads, writes }
}

/// How many key operations `cmd` has running at once: the keys a multi-key command asks for
/// together (up to [`MULTI_KEY_IN_FLIGHT`]), else one. A connection bounds their sum over the
/// commands of its pipeline (`resp/mod.rs`).
pub fn key_operations(cmd: Cmd, args: &[Bytes]) -> usize {
    let keys = args.len().saturating_sub(1);
    let n = match cmd {
        Cmd::Mget | Cmd::Del | Cmd::Unlink | Cmd::Exists | Cmd::Touch => keys,
        Cmd::Mset => keys / 2,
        _ => 1,
    };
    n.clamp(1, MULTI_KEY_IN_FLIGHT)
}

/// A reply, with what it holds charged to `--max-client-memory` while it waits to be written.
/// A pipeline's commands finish in any order and their replies wait for the ones before them:
/// 128 key operations of 16 MiB values were 2 GiB held outside the budget for one connection
/// (until 2026-12-06, bounded in time alone). A reply of [`CHARGE_FROM`] or more that the budget
/// has no room for is an error that says so, as a large write is; the value goes at once.
pub struct Held {
    pub reply: Reply,
    _charge: Option<Charge>,
}

impl Held {
    /// A reply that holds nothing worth charging (a session command's, an error).
    pub fn small(reply: Reply) -> Held {
        Held { reply, _charge: None }
    }

    /// A reply whose values were charged as it was made: an `EXEC`'s (`multi.rs`).
    pub fn charged(reply: Reply, charge: Charge) -> Held {
        Held { reply, _charge: Some(charge) }
    }

    pub fn of(node: &Node, reply: Reply) -> Held {
        let bytes = reply.value_bytes();
        if bytes < CHARGE_FROM {
            return Held::small(reply);
        }
        match node.guard.charge(bytes) {
            Ok(charge) => Held { reply, _charge: Some(charge) },
            Err(refused) => Held::small(Reply::err(refused.0)),
        }
    }
}

/// [`run`], its reply [`Held`]: refused past the client memory budget, unless the command took
/// the value out of the store as it replied with it (refused, it would be lost).
pub async fn run_held(node: &Node, cmd: Cmd, args: Args) -> Held {
    let out = takes_value_out(cmd, &args);
    let reply = run(node, cmd, args).await;
    match out {
        true => {
            let bytes = reply.value_bytes();
            Held { reply, _charge: Some(node.guard.hold(bytes)) }
        }
        false => Held::of(node, reply),
    }
}

/// The budget's error in place of `reply`, if a reply that large would pass what
/// `--max-client-memory` has left; for a reply written out at once (a command sent alone), whose
/// output the connection then holds charged ([`run_held`] without keeping the charge).
pub fn past_budget(node: &Node, reply: &Reply) -> Option<Reply> {
    let bytes = reply.value_bytes();
    if bytes < CHARGE_FROM {
        return None;
    }
    node.guard.charge(bytes).err().map(|refused| Reply::err(refused.0))
}

/// Whether the command takes its key's value out of the store as it replies with it.
pub fn takes_value_out(cmd: Cmd, args: &Args) -> bool {
    match cmd {
        Cmd::Getdel | Cmd::Getset => true,
        Cmd::Set => args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"GET")),
        _ => false,
    }
}

/// Run any command but those of [`session_command`].
pub async fn run(node: &Node, cmd: Cmd, args: Args) -> Reply {
    let a = &args[1..];
    if !cmd.arity().allows(a.len()) {
        return wrong_arity(cmd);
    }
    match cmd {
        Cmd::Ping => a.first().map_or(Reply::Simple("PONG"), |m| Reply::Bulk(m.clone())),
        Cmd::Echo => Reply::Bulk(a[0].clone()),
        Cmd::Get => get(node, &a[0]).await.map_or_else(|e| e, |v| v.map_or(Reply::Nil, Reply::Bulk)),
        Cmd::Set => expiry::set(node, a).await,
        // `SET key value GET`, as Redis has had it since `GETSET` was deprecated.
        Cmd::Getset => expiry::set(node, &[a[0].clone(), a[1].clone(), Bytes::from_static(b"GET")]).await,
        Cmd::Setex | Cmd::Psetex => expiry::setex(node, cmd, a).await,
        Cmd::Expire | Cmd::Pexpire | Cmd::Expireat | Cmd::Pexpireat => expiry::expire(node, cmd, a).await,
        Cmd::Ttl | Cmd::Pttl | Cmd::Expiretime | Cmd::Pexpiretime => expiry::ttl(node, cmd, &a[0]).await,
        Cmd::Persist => expiry::persist(node, &a[0]).await,
        Cmd::Getex => expiry::getex(node, a).await,
        // The tombstone is written whatever the read found, as for `DEL` (see `count_one`).
        Cmd::Getdel => match get(node, &a[0]).await {
            Ok(v) => write(node, &a[0], None).await.map_or_else(|e| e, |()| v.map_or(Reply::Nil, Reply::Bulk)),
            Err(e) => e,
        },
        Cmd::Strlen => length(node, &a[0]).await.map_or_else(|e| e, |l| Reply::Int(l.map_or(0, |l| l.len as i64))),
        Cmd::Getrange | Cmd::Substr => match (frame::integer(&a[1]), frame::integer(&a[2])) {
            (Some(start), Some(end)) => match get(node, &a[0]).await {
                Ok(value) => Reply::Bulk(value.map_or_else(Bytes::new, |v| v.slice(range(v.len(), start, end)))),
                Err(e) => e,
            },
            _ => frame::not_an_integer(),
        },
        Cmd::Time => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let bulk = |n: u64| Reply::Bulk(n.to_string().into());
            Reply::Array(vec![bulk(now.as_secs()), bulk(u64::from(now.subsec_micros()))])
        }
        // `UNLINK` frees nothing in the background that `DEL` would not, and `TOUCH` has no
        // access time to set: they count as `DEL` and `EXISTS` do.
        Cmd::Del | Cmd::Unlink => count(node, a, true).await,
        Cmd::Exists | Cmd::Touch => count(node, a, false).await,
        Cmd::Type => length(node, &a[0]).await.map_or_else(|e| e, |l| Reply::Simple(l.map_or("none", |_| "string"))),
        Cmd::Memory => info::memory(node, a).await,
        Cmd::Mget => {
            let mut answers = stream::iter(0..a.len()).map(|i| get(node, &a[i])).buffered(MULTI_KEY_IN_FLIGHT);
            let mut out = Vec::with_capacity(a.len());
            // The reply is held whole before it is written: a few bytes of keys naming one large
            // value again and again would otherwise make it any size.
            let (mut bytes, max) = (0, node.guard.limits.max_query_buffer);
            while let Some(answer) = answers.next().await {
                match answer {
                    Ok(v) => {
                        bytes += v.as_ref().map_or(0, Bytes::len);
                        if bytes > max {
                            return Reply::err(format!(
                                "the values of this MGET come to more than {max} bytes, the most one reply holds \
                                 (--max-query-buffer); ask for fewer keys at once"
                            ));
                        }
                        out.push(v.map_or(Reply::Nil, Reply::Bulk));
                    }
                    Err(e) => return e,
                }
            }
            Reply::Array(out)
        }
        Cmd::Mset => {
            // Every pair checked before any is written: a bad one refuses the command whole,
            // as Redis never applies part of an `MSET`.
            if let Some(e) = a.chunks(2).find_map(|kv| node.check_parts(Op::Put, &kv[0], Some(&kv[1])).err()) {
                return Reply::err(e);
            }
            // Each key once, with the last value it was given: writes at once would otherwise
            // leave whichever happened to land last.
            let pairs = last_of_each(a.chunks(2).rev(), |kv| &kv[0]);
            let write_pair = |i: usize| write(node, &pairs[i][0], Some(pairs[i][1].clone()));
            let mut writes = stream::iter(0..pairs.len()).map(write_pair).buffer_unordered(MULTI_KEY_IN_FLIGHT);
            while let Some(written) = writes.next().await {
                if let Err(e) = written {
                    return e;
                }
            }
            Reply::ok()
        }
        Cmd::Dbsize => info::dbsize(node).await,
        Cmd::Scan => super::scan::scan(node, a).await,
        Cmd::Keys => super::scan::keys(node, &a[0]).await,
        Cmd::Info => Reply::Bulk(info::info(node, a).await.into()),
        Cmd::Command => super::introspection::command(a),
        // As Redis: a number that is not one is its own error, then the range.
        Cmd::Select => match frame::integer(&a[0]) {
            Some(0) => Reply::ok(),
            Some(_) => Reply::err("DB index is out of range: dkv has one keyspace, database 0"),
            None => frame::not_an_integer(),
        },
        // Nothing is watched (`multi.rs`); queued in a transaction, it runs here.
        Cmd::Unwatch => Reply::ok(),
        // Answered before they could get here (`session_command`).
        Cmd::Auth
        | Cmd::Hello
        | Cmd::Quit
        | Cmd::Client
        | Cmd::Reset
        | Cmd::Multi
        | Cmd::Exec
        | Cmd::Discard
        | Cmd::Watch => Reply::err("a session command ran as a key command"),
        Cmd::Unknown => unknown_command(&args[0], a),
    }
}

/// The reply to a command this node does not know: why it cannot honour it, for the ones it
/// knows of (`table::cannot_honour`) and that has Redis's number of arguments, or Redis's words.
pub(super) fn unknown_command(name: &Bytes, a: &[Bytes]) -> Reply {
    match table::cannot_honour(name) {
        Some((_, arity)) if !arity.allows(a.len()) => {
            Reply::err(format!("wrong number of arguments for '{}' command", name.to_ascii_lowercase().escape_ascii()))
        }
        Some((why, _)) => Reply::err(format!("dkv cannot honour {}: {why}", name.to_ascii_uppercase().escape_ascii())),
        None => unknown(&shown_name(Cmd::Unknown, name), a),
    }
}

/// The command's name as Redis's error texts give it: in lower case, an unknown one as it was sent.
fn shown_name(cmd: Cmd, sent: &[u8]) -> String {
    match cmd {
        Cmd::Unknown => String::from_utf8_lossy(&sent[..sent.len().min(SHOWN)]).into_owned(),
        _ => cmd.name().into(),
    }
}

/// Redis's text for an unknown subcommand of `cmd`: as sent, cut at [`SHOWN`] bytes (a 4 MB one
/// made a 4 MB error line).
pub(super) fn unknown_subcommand(cmd: &str, sub: &[u8]) -> Reply {
    let sub = String::from_utf8_lossy(&sub[..sub.len().min(SHOWN)]);
    Reply::err(format!("unknown subcommand '{sub}'. Try {cmd} HELP."))
}

/// How much of an unknown command's name, and of its arguments together, its error shows, as
/// in Redis: a 4 MB argument made a 4 MB error line (found by trying, 2026-12-06).
pub(super) const SHOWN: usize = 128;

/// Redis's text for an unknown command: each argument quoted and followed by a space, cut so
/// that no more than [`SHOWN`] bytes of them are shown.
fn unknown(cmd: &str, a: &[Bytes]) -> Reply {
    let mut shown = String::new();
    for x in a {
        let Some(room) = SHOWN.checked_sub(shown.len()).filter(|r| *r > 0) else { break };
        shown += &format!("'{}' ", String::from_utf8_lossy(&x[..x.len().min(room)]));
    }
    Reply::err(format!("unknown command '{cmd}', with args beginning with: {shown}"))
}

/// The bytes of a value of `len` bytes that `GETRANGE start end` answers, as Redis counts
/// them: inclusive, negative from the end, clamped to the value.
fn range(len: usize, start: i64, end: i64) -> std::ops::Range<usize> {
    let len = len as i64;
    if start < 0 && end < 0 && start > end {
        return 0..0;
    }
    let from_end = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (from_end(start), from_end(end).min(len - 1));
    if start > end || len == 0 {
        return 0..0;
    }
    start as usize..end as usize + 1
}

async fn get(node: &Node, key: &Bytes) -> Result<Option<Bytes>, Reply> {
    node.get(Api::Resp, key.clone(), None).await.map_err(Reply::err)
}

/// The length and deadline of `key`'s value: read without the value (see `Node::length`).
pub(super) async fn length(node: &Node, key: &Bytes) -> Result<Option<Length>, Reply> {
    node.length(Api::Resp, key.clone(), None).await.map_err(Reply::err)
}

async fn write(node: &Node, key: &Bytes, value: Option<Bytes>) -> Result<(), Reply> {
    let result = match value {
        // The value is a slice of the connection's read buffer: whatever keeps it beyond the
        // request (the engine, replica calls, a hint) keeps a copy.
        Some(v) => node.put(Api::Resp, key.clone(), v, None).await,
        None => node.delete(Api::Resp, key.clone(), None).await,
    };
    result.map_err(Reply::err)
}

/// Keys of one multi-key command (`MGET`, `MSET`, `DEL`, `EXISTS`) asked at once, at most: they
/// live on different replicas, and one after the other their round trips would add up. Each
/// key's request is made only when it starts (streams over the keys' places: a closure over a
/// `&Bytes` would not prove the connection's task `Send`), so a command of 65 536 keys holds 64
/// requests, not 65 536.
const MULTI_KEY_IN_FLIGHT: usize = 64;

/// `EXISTS` (and, with `delete`, `DEL`): how many of the keys exist. `EXISTS a a` counts `a`
/// twice and `DEL a a` deletes it once, as in Redis.
async fn count(node: &Node, keys: &[Bytes], delete: bool) -> Reply {
    // Every key checked first: a bad one refuses the command before any key is deleted.
    if let Some(e) = keys.iter().find_map(|k| node.check_parts(Op::Get, k, None).err()) {
        return Reply::err(e);
    }
    let keys: Vec<&Bytes> = match delete {
        true => last_of_each(keys.iter().rev(), |k| k),
        false => keys.iter().collect(),
    };
    let mut counted =
        stream::iter(0..keys.len()).map(|i| count_one(node, keys[i], delete)).buffer_unordered(MULTI_KEY_IN_FLIGHT);
    let mut n = 0;
    while let Some(one) = counted.next().await {
        match one {
            Ok(one) => n += one,
            Err(e) => return e,
        }
    }
    Reply::Int(n)
}

/// 1 if `key` exists, else 0; with `delete`, a tombstone is written either way, as HTTP's
/// `DELETE` writes one. A key the read did not find may still be on a replica it did not ask (a
/// write that failed short of W, which hints or anti-entropy would then spread): a `DEL` after
/// a failed `SET` must keep it from coming back (found by reading, 2026-12-07: `DEL` answered 0,
/// wrote nothing, and the value appeared 3 s later).
async fn count_one(node: &Node, key: &Bytes, delete: bool) -> Result<i64, Reply> {
    let found = length(node, key).await?.is_some();
    if delete {
        write(node, key, None).await?;
    }
    Ok(i64::from(found))
}

/// The items of `from_last` (a command's keys or pairs, last first) whose key appears in no
/// later item, in their order; bounded by the command's arguments, and linear in them.
fn last_of_each<'a, T: ?Sized>(from_last: impl Iterator<Item = &'a T>, key: impl Fn(&'a T) -> &'a Bytes) -> Vec<&'a T> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<&T> = from_last.filter(|item| seen.insert(key(item))).collect();
    kept.reverse();
    kept
}

/// Redis's refusal of a `HELLO` option it does not take, or of one without its arguments.
fn hello_syntax(opt: &[u8]) -> Reply {
    Reply::err(format!("Syntax error in HELLO option '{}'", String::from_utf8_lossy(&opt[..opt.len().min(SHOWN)])))
}

/// `HELLO [2 [...]]` answers the server's properties; `HELLO 3` is refused with `NOPROTO`, which
/// clients take as "stay on RESP2".
fn hello(node: &Node, session: &mut Session, a: &[Bytes]) -> Reply {
    match a.first().map(|v| &v[..]) {
        None | Some(b"2") => {}
        Some(b"3") => return Reply::Error("NOPROTO this server speaks RESP2 only; use HELLO 2 or no HELLO".into()),
        Some(v) if frame::integer(v).is_some() => return Reply::Error("NOPROTO unsupported protocol version".into()),
        Some(_) => return Reply::err("Protocol version is not an integer or out of range"),
    }
    let mut rest = a.iter().skip(1);
    let mut name = None;
    let mut authed = None;
    while let Some(opt) = rest.next() {
        match opt.to_ascii_uppercase().as_slice() {
            b"SETNAME" => match rest.next() {
                Some(n) => name = Some(n.clone()),
                None => return hello_syntax(opt),
            },
            b"AUTH" => match (rest.next(), rest.next()) {
                (Some(user), Some(_)) if !default_user(user) => return unknown_user(node),
                (Some(_), Some(password)) if node.auth.required() => {
                    let from = session.me.addr().map(|a| a.ip());
                    match node.auth.check_from(Api::Resp, from, password) {
                        Checked::Granted(access) => authed = Some(access),
                        Checked::Wrong => return Reply::Error(auth::WRONGPASS.into()),
                        Checked::TooSoon(left) => return Reply::err(auth::too_soon(from, left)),
                    }
                }
                (Some(_), Some(_)) => {}
                _ => return hello_syntax(opt),
            },
            _ => return hello_syntax(opt),
        }
    }
    if let Some(access) = authed {
        session.access = access;
    } else if node.auth.required() && session.access == Access::None {
        node.auth.refused(Api::Resp, Failure::Missing);
        return Reply::Error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into(),
        );
    }
    if let Some(name) = name {
        if let Err(e) = clients::set_name(session, &name) {
            return e;
        }
    }
    let s = |v: &str| Reply::Bulk(Bytes::from(v.to_string()));
    Reply::Array(vec![
        s("server"),
        s("dkv"),
        s("version"),
        s(env!("CARGO_PKG_VERSION")),
        s("proto"),
        Reply::Int(2),
        s("id"),
        Reply::Int(session.id as i64),
        // As `INFO`'s `redis_mode`: a client that reads "cluster" asks for `CLUSTER SLOTS` and
        // expects `MOVED` redirects, neither of which dkv has; every node serves every key.
        s("mode"),
        s("standalone"),
        s("role"),
        s("master"),
        s("modules"),
        Reply::Array(Vec::new()),
        s("dkv_node"),
        s(&node.me.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis 7.0.15's answers for "Hello World" (and an empty value).
    #[test]
    fn getrange_cuts_as_redis_does() {
        let v = b"Hello World";
        let cut = |s, e| String::from_utf8_lossy(&v[range(v.len(), s, e)]).into_owned();
        assert_eq!(cut(0, 4), "Hello");
        assert_eq!(cut(-5, -1), "World");
        assert_eq!(cut(0, -1), "Hello World");
        assert_eq!(cut(6, 1000), "World");
        assert_eq!(cut(-100, 2), "Hel");
        assert_eq!(cut(5, 3), "");
        assert_eq!(cut(-1, -5), "");
        assert_eq!(cut(20, 30), "");
        assert_eq!(cut(i64::MIN, i64::MAX), "Hello World");
        assert_eq!(range(0, 0, -1), 0..0);
    }

    /// An unknown command's error is Redis's: its name as sent, and no more than 128 bytes of its
    /// arguments, however long they are.
    #[test]
    fn an_unknown_commands_error_shows_what_redis_shows() {
        let text = |name: &[u8], a: &[&[u8]]| match unknown_command(
            &Bytes::copy_from_slice(name),
            &a.iter().map(|x| Bytes::copy_from_slice(x)).collect::<Vec<_>>(),
        ) {
            Reply::Error(e) => e.to_string(),
            other => panic!("an error, not {other:?}"),
        };
        assert_eq!(text(b"FoO", &[b"a"]), "ERR unknown command 'FoO', with args beginning with: 'a' ");
        let (x, y, z) = (vec![b'x'; 200], vec![b'y'; 100], vec![b'z'; 4 << 20]);
        let long = text(&x, &[&y, &z, b"w"]);
        let want = format!(
            "ERR unknown command '{}', with args beginning with: '{}' '{}' ",
            "x".repeat(128),
            "y".repeat(100),
            "z".repeat(25)
        );
        assert_eq!(long, want);
    }

    /// A large reply waiting to be written holds its bytes of the client memory budget until it
    /// is dropped; past the budget it is an error that says so, and holds nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_replies_are_held_against_the_client_memory_budget() {
        let mut config = crate::testing::config();
        config.limits.max_client_memory = 8 << 20;
        let nodes = crate::testing::cluster(&[dkv_membership::NodeState::Normal], config).await;
        let node = &nodes[0];
        let big = || Reply::Array(vec![Reply::Bulk(Bytes::from(vec![b'v'; 2 << 20])), Reply::Nil]);
        let small = Held::of(node, Reply::Bulk(Bytes::from_static(b"tiny")));
        let (a, b) = (Held::of(node, big()), Held::of(node, big()));
        assert_eq!(node.guard.charged(), 4 << 20, "two replies of 2 MiB held; small ones are not counted");
        let (c, refused) = (Held::of(node, big()), Held::of(node, big()));
        assert_eq!(node.guard.charged(), 6 << 20, "large charges take three quarters of the budget at most");
        match &refused.reply {
            Reply::Error(e) => assert!(e.contains("--max-client-memory"), "{e}"),
            other => panic!("over the budget, an error: {other:?}"),
        }
        drop((a, b, c, small));
        assert_eq!(node.guard.charged(), 0, "given back once written");
    }

    fn cmd(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    fn touches_of(command: &str) -> Touches {
        let args = cmd(command);
        touches(Cmd::of(&args[0]), &args)
    }

    fn running(cmds: &[&str]) -> Touches {
        let mut t = Touches::none();
        for c in cmds {
            t.absorb(touches_of(c));
        }
        t
    }

    #[test]
    fn multi_key_commands_count_the_keys_they_ask_for_at_once() {
        let operations = |c: &str| {
            let args = cmd(c);
            key_operations(Cmd::of(&args[0]), &args)
        };
        assert_eq!(operations("GET a"), 1);
        assert_eq!(operations("PING"), 1);
        assert_eq!(operations("MGET a b c"), 3);
        assert_eq!(operations("MSET a 1 b 2"), 2);
        assert_eq!(operations(&format!("DEL {}", vec!["k"; 100].join(" "))), MULTI_KEY_IN_FLIGHT);
    }

    #[test]
    fn a_key_named_twice_is_kept_at_its_last_place() {
        let pairs = cmd("a 1 b 2 a 3");
        assert_eq!(last_of_each(pairs.chunks(2).rev(), |kv| &kv[0]), [&pairs[2..4], &pairs[4..6]]);
        let keys = cmd("x y x z y");
        assert_eq!(last_of_each(keys.iter().rev(), |k| k), [&keys[2], &keys[3], &keys[4]]);
    }

    #[test]
    fn only_commands_that_could_see_each_other_wait() {
        let wave = running(&["SET a 1", "GET b", "MGET c d"]);
        assert!(touches_of("GET a").conflicts_with(&wave), "reads a key being written");
        assert!(touches_of("SET b 2").conflicts_with(&wave), "writes a key being read");
        assert!(touches_of("DEL d").conflicts_with(&wave), "deletes a key being read");
        assert!(touches_of("UNLINK d").conflicts_with(&wave), "deletes a key being read");
        assert!(touches_of("GETSET c 1").conflicts_with(&wave), "writes a key being read");
        assert!(touches_of("TYPE a").conflicts_with(&wave), "reads a key being written");
        assert!(!touches_of("TOUCH b c").conflicts_with(&wave), "reads keys being read");
        assert!(touches_of("DBSIZE").conflicts_with(&wave), "reads everything");
        assert!(!touches_of("GET b").conflicts_with(&wave), "reads of one key run together");
        assert!(!touches_of("SET e 1").conflicts_with(&wave));
        assert!(!touches_of("PING").conflicts_with(&wave));
        assert!(touches_of("GET x").conflicts_with(&running(&["INFO"])), "after a command that runs alone");
    }
}
