//! The node's RESP connections, as `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL` see them, and
//! the `CLIENT` command itself.
//!
//! Operators find a leaking connection pool or a stuck worker with `CLIENT LIST` (its address,
//! name, age and idle time), and end it with `CLIENT KILL`; redis-py's `client_list()` failed
//! here until 2026-12-06. Each connection is listed from its start to its end, with what the
//! others may read of it: its id, addresses, name, when it began and when it last sent
//! something. Its own session (`commands::Session`) keeps the rest.
//!
//! The list is per node: a client sees the connections of the node it is connected to, as with
//! one Redis server. A killed connection closes at once while it waits for input or for its
//! client to read (a connection in the middle of a command finishes it first); one that kills
//! itself gets its reply first.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use super::commands::{unknown_subcommand, Session, SHOWN};
use super::frame::{self, Reply};
use crate::front::auth::{self, Access};

/// Every open RESP connection of a node, by id.
#[derive(Debug, Default)]
pub struct Clients {
    open: Mutex<HashMap<u64, Arc<Client>>>,
}

/// One connection, as the others see it.
#[derive(Debug)]
pub struct Client {
    pub id: u64,
    /// The client's address; `None` for a session made without a connection (unit tests).
    addr: Option<SocketAddr>,
    /// The node's address it connected to.
    laddr: Option<SocketAddr>,
    began: Instant,
    /// When it last sent something, in ms since `began`.
    active_ms: AtomicU64,
    name: Mutex<Option<Bytes>>,
    killed: AtomicBool,
    kill: Notify,
}

impl Client {
    pub fn new(id: u64, addr: Option<SocketAddr>, laddr: Option<SocketAddr>) -> Client {
        Client {
            id,
            addr,
            laddr,
            began: Instant::now(),
            active_ms: AtomicU64::new(0),
            name: Mutex::new(None),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        }
    }

    /// The client's address, if it came over a connection.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// It sent something at `now`.
    pub fn active(&self, now: Instant) {
        self.active_ms.store(now.saturating_duration_since(self.began).as_millis() as u64, Ordering::Relaxed);
    }

    pub fn name(&self) -> Option<Bytes> {
        self.name.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_name(&self, name: Option<Bytes>) {
        *self.name.lock().unwrap_or_else(|p| p.into_inner()) = name;
    }

    /// Ends once the connection was killed (at once if it already was). Several may wait: the
    /// wait for input and a write's.
    pub async fn killed(&self) {
        // Made before the flag is read: a kill after that reaches it, polled or not.
        let notified = self.kill.notified();
        if !self.killed.load(Ordering::Acquire) {
            notified.await;
        }
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_waiters();
    }

    /// Its line in `CLIENT LIST`: Redis 7's fields, in its order (redis-py splits it on spaces
    /// and `=`, and reads `multi`, the buffers' and memory fields as numbers). dkv charges a
    /// connection's buffers to `--max-client-memory` but keeps no figures per connection: those
    /// fields are 0, `multi` is -1 and `cmd` is `NULL`.
    pub fn line(&self, now: Instant, out: &mut String) {
        let shown = |a: Option<SocketAddr>| a.map_or(String::new(), |a| a.to_string());
        let age = now.saturating_duration_since(self.began);
        let idle = age.as_millis().saturating_sub(u128::from(self.active_ms.load(Ordering::Relaxed))) / 1000;
        let name = self.name().map(|n| String::from_utf8_lossy(&n).into_owned()).unwrap_or_default();
        let _ = writeln!(
            out,
            "id={} addr={} laddr={} fd=-1 name={name} age={} idle={idle} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 \
             qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=NULL \
             user=default redir=-1 resp=2",
            self.id,
            shown(self.addr),
            shown(self.laddr),
            age.as_secs(),
        );
    }
}

/// What `CLIENT KILL` picks, by Redis's filters: every given one must match.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub ids: Vec<u64>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    /// Older than this many seconds.
    pub max_age: Option<u64>,
    /// `TYPE` other than `normal`, or `USER` other than `default`: dkv has no such clients.
    pub none: bool,
    /// `SKIPME no`: the caller may be among them (by default it is not).
    pub include_me: bool,
}

impl Filter {
    fn matches(&self, c: &Client, me: u64, now: Instant) -> bool {
        !self.none
            && (self.include_me || c.id != me)
            && (self.ids.is_empty() || self.ids.contains(&c.id))
            && self.addr.as_ref().is_none_or(|a| c.addr.is_some_and(|x| x.to_string() == *a))
            && self.laddr.as_ref().is_none_or(|a| c.laddr.is_some_and(|x| x.to_string() == *a))
            && self.max_age.is_none_or(|s| now.saturating_duration_since(c.began).as_secs() >= s)
    }
}

impl Clients {
    /// List a new connection; it leaves the list when the returned handle is dropped.
    pub fn open(self: &Arc<Self>, client: Client) -> Listed {
        let client = Arc::new(client);
        self.lock().insert(client.id, client.clone());
        Listed { clients: self.clone(), client }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Client>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `CLIENT LIST [ID id ...]`: a line per connection, by id.
    pub fn list(&self, ids: &[u64]) -> String {
        let now = Instant::now();
        let mut listed: Vec<Arc<Client>> =
            self.lock().values().filter(|c| ids.is_empty() || ids.contains(&c.id)).cloned().collect();
        listed.sort_by_key(|c| c.id);
        let mut out = String::new();
        for c in listed {
            c.line(now, &mut out);
        }
        out
    }

    /// Kill the connections `filter` picks, `me` being the caller's; how many, and whether the
    /// caller is one of them (it closes after its reply).
    pub fn kill(&self, filter: &Filter, me: u64) -> (usize, bool) {
        let now = Instant::now();
        let picked: Vec<Arc<Client>> = self.lock().values().filter(|c| filter.matches(c, me, now)).cloned().collect();
        let mut killed_me = false;
        for c in &picked {
            if c.id == me {
                killed_me = true;
            } else {
                c.kill();
            }
        }
        (picked.len(), killed_me)
    }
}

/// A connection's place in the list, for as long as it is open.
pub struct Listed {
    pub clients: Arc<Clients>,
    pub client: Arc<Client>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.clients.lock().remove(&self.client.id);
    }
}

/// `CLIENT SETNAME`, `GETNAME`, `ID` and `SETINFO`, with Redis's checks and errors.
pub(super) fn client(session: &mut Session, a: &[Bytes]) -> Reply {
    // Lowercased only if it is short enough to be one: an unknown one is shown cut, not copied.
    let sub = match a[0].len() {
        0..=7 => a[0].to_ascii_lowercase(),
        _ => return unknown_subcommand("CLIENT", &a[0]),
    };
    let arity = |n: usize| {
        (a.len() != n).then(|| {
            Reply::err(format!("wrong number of arguments for 'client|{}' command", String::from_utf8_lossy(&sub)))
        })
    };
    match sub.as_slice() {
        b"setname" => arity(2).unwrap_or_else(|| match set_name(session, &a[1]) {
            Ok(()) => Reply::ok(),
            Err(e) => e,
        }),
        b"setinfo" => arity(3).unwrap_or_else(Reply::ok),
        b"getname" => arity(1).unwrap_or_else(|| session.me.name().map_or(Reply::Nil, Reply::Bulk)),
        b"id" => arity(1).unwrap_or(Reply::Int(session.id as i64)),
        b"info" => arity(1).unwrap_or_else(|| {
            let mut line = String::new();
            session.me.line(std::time::Instant::now(), &mut line);
            Reply::Bulk(line.into())
        }),
        b"list" => client_list(session, &a[1..]),
        b"kill" if session.access == Access::ReadOnly => {
            Reply::Error(auth::noperm("client|kill").replace("may not write", "may not kill connections"))
        }
        b"kill" if a.len() < 2 => arity(2).unwrap_or_else(|| Reply::err("syntax error")),
        b"kill" => client_kill(session, &a[1..]),
        // What the unknown subcommand's error says to ask (it answered that same error).
        b"help" => arity(1).unwrap_or_else(|| {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are: ID <client-id>, ADDR <ip:port>, LADDR <ip:port>,",
                "    TYPE normal, USER default, SKIPME (YES|NO) (default YES), MAXAGE <seconds>.",
                "LIST [TYPE normal] [ID <client-id> [<client-id> ...]]",
                "    Return information about this node's client connections.",
                "SETINFO <option> <value>",
                "    Taken and not kept.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "HELP",
                "    Print this help.",
            ];
            Reply::Array(lines.iter().map(|l| Reply::Simple(l)).collect())
        }),
        _ => unknown_subcommand("CLIENT", &a[0]),
    }
}

/// `CLIENT LIST [TYPE type] [ID id ...]`: this node's connections (`clients.rs`).
fn client_list(session: &Session, a: &[Bytes]) -> Reply {
    let mut ids = Vec::new();
    let mut none = false;
    let mut rest = a.iter();
    while let Some(opt) = rest.next() {
        match opt.to_ascii_uppercase().as_slice() {
            b"TYPE" => match rest.next().map(|t| t.to_ascii_lowercase()) {
                Some(t) if t == b"normal" => {}
                Some(t) if [&b"master"[..], b"replica", b"slave", b"pubsub"].contains(&t.as_slice()) => none = true,
                Some(t) => {
                    return Reply::err(format!(
                        "Unknown client type '{}'",
                        String::from_utf8_lossy(&t[..t.len().min(SHOWN)])
                    ))
                }
                None => return Reply::err("syntax error"),
            },
            b"ID" => {
                for id in rest.by_ref() {
                    match client_id(id, "Invalid client ID") {
                        Ok(id) => ids.push(id),
                        Err(e) => return e,
                    }
                }
                if ids.is_empty() {
                    return Reply::err("syntax error");
                }
            }
            _ => return Reply::err("syntax error"),
        }
    }
    let text = match (&session.clients, none) {
        (_, true) => String::new(),
        (Some(clients), false) => clients.list(&ids),
        (None, false) => {
            let mut line = String::new();
            session.me.line(std::time::Instant::now(), &mut line);
            line
        }
    };
    Reply::Bulk(text.into())
}

/// `CLIENT KILL ip:port` (`+OK`, or an error if there is none) or `CLIENT KILL <filter> <value>
/// ...` (how many were killed), as Redis 7 takes them.
fn client_kill(session: &mut Session, a: &[Bytes]) -> Reply {
    let text = |v: &Bytes| String::from_utf8_lossy(v).into_owned();
    let old_form = a.len() == 1;
    let mut filter = Filter::default();
    if old_form {
        filter.addr = Some(text(&a[0]));
        filter.include_me = true;
    } else {
        if !a.len().is_multiple_of(2) {
            return Reply::err("syntax error");
        }
        for pair in a.chunks(2) {
            let value = &pair[1];
            match pair[0].to_ascii_uppercase().as_slice() {
                b"ID" => match client_id(value, "client-id should be greater than 0") {
                    Ok(id) => filter.ids.push(id),
                    Err(e) => return e,
                },
                b"ADDR" => filter.addr = Some(text(value)),
                b"LADDR" => filter.laddr = Some(text(value)),
                b"TYPE" if value.eq_ignore_ascii_case(b"normal") => {}
                b"TYPE" => filter.none = true,
                b"USER" => filter.none |= value.as_ref() != b"default",
                b"SKIPME" if value.eq_ignore_ascii_case(b"yes") => filter.include_me = false,
                b"SKIPME" if value.eq_ignore_ascii_case(b"no") => filter.include_me = true,
                b"MAXAGE" => match frame::integer(value).and_then(|v| u64::try_from(v).ok()) {
                    Some(age) => filter.max_age = Some(age),
                    None => return frame::not_an_integer(),
                },
                _ => return Reply::err("syntax error"),
            }
        }
    }
    let (killed, me) = match &session.clients {
        Some(clients) => clients.kill(&filter, session.id),
        None => (0, false),
    };
    session.quit |= me;
    match (old_form, killed) {
        (true, 0) => Reply::err("No such client"),
        (true, _) => Reply::ok(),
        (false, n) => Reply::Int(n as i64),
    }
}

/// A client id of `CLIENT LIST ID` or `CLIENT KILL ID`: `not_a_number` is the subcommand's
/// error for one that is no integer, as Redis words it.
fn client_id(id: &Bytes, not_a_number: &str) -> Result<u64, Reply> {
    let n = frame::integer(id).ok_or_else(|| Reply::err(not_a_number))?;
    u64::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| Reply::err("client-id should be greater than 0"))
}

/// Name the connection, as Redis does: an empty name clears it, and one with a space, a
/// newline or another byte outside `!`..`~` is refused. Unlike Redis, a name is at most
/// [`MAX_CLIENT_NAME`] bytes, and copied: a connection kept a 16 MB name for its life, outside
/// the client memory budget (found by trying, 2026-12-06), and a slice of the read buffer would
/// keep all of that buffer.
pub(super) fn set_name(session: &mut Session, name: &Bytes) -> Result<(), Reply> {
    if name.len() > MAX_CLIENT_NAME {
        return Err(Reply::err(format!("Client names are at most {MAX_CLIENT_NAME} bytes here; got {}", name.len())));
    }
    if name.iter().any(|b| !(b'!'..=b'~').contains(b)) {
        return Err(Reply::err("Client names cannot contain spaces, newlines or special characters."));
    }
    session.me.set_name((!name.is_empty()).then(|| Bytes::copy_from_slice(name)));
    Ok(())
}

/// The longest name `CLIENT SETNAME` takes.
const MAX_CLIENT_NAME: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn connections_are_listed_while_open_and_killed_by_filter() {
        let clients = Arc::new(Clients::default());
        let a = clients.open(Client::new(1, addr(5001), addr(6379)));
        let b = clients.open(Client::new(2, addr(5002), addr(6379)));
        b.client.set_name(Some(Bytes::from_static(b"worker")));
        let list = clients.list(&[]);
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 2, "{list}");
        assert!(
            lines[0].starts_with("id=1 addr=127.0.0.1:5001 laddr=127.0.0.1:6379 fd=-1 name= age=0 idle=0"),
            "{list}"
        );
        assert!(lines[1].contains(" name=worker "), "{list}");
        assert_eq!(clients.list(&[2]).lines().count(), 1);

        // By address; the caller is skipped unless it asks not to be.
        let by_addr = Filter { addr: Some("127.0.0.1:5002".into()), ..Filter::default() };
        assert_eq!(clients.kill(&by_addr, 1), (1, false));
        assert!(b.client.killed.load(Ordering::Relaxed) && !a.client.killed.load(Ordering::Relaxed));
        let all = Filter { laddr: Some("127.0.0.1:6379".into()), ..Filter::default() };
        assert_eq!(clients.kill(&all, 1), (1, false), "SKIPME yes by default");
        let all = Filter { include_me: true, ..all };
        assert_eq!(clients.kill(&all, 1), (2, true));
        assert!(!a.client.killed.load(Ordering::Relaxed), "the caller closes after its reply, not before");
        assert_eq!(clients.kill(&Filter { none: true, include_me: true, ..Filter::default() }, 1), (0, false));
        assert_eq!(clients.kill(&Filter { ids: vec![9], ..Filter::default() }, 1), (0, false));

        drop(b);
        assert_eq!(clients.list(&[]).lines().count(), 1, "a closed connection leaves the list");
    }

    #[tokio::test]
    async fn a_kill_reaches_every_wait_and_one_made_after_it() {
        let c = Arc::new(Client::new(1, None, None));
        let waits: Vec<_> = (0..2)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.killed().await })
            })
            .collect();
        tokio::task::yield_now().await;
        c.kill();
        for w in waits {
            tokio::time::timeout(std::time::Duration::from_secs(5), w).await.expect("both woken").unwrap();
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), c.killed()).await.expect("ends at once");
    }

    /// `CLIENT` as Redis answers it: an id per connection, names checked, an empty name clears
    /// it, arities checked.
    #[test]
    fn client_names_ids_and_arities_are_redis_s() {
        let args = |words: &[&str]| words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect::<Vec<_>>();
        let text = |r: Reply| match r {
            Reply::Error(e) => e.to_string(),
            Reply::Simple(s) => s.to_string(),
            Reply::Int(n) => n.to_string(),
            Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            Reply::Nil => "nil".into(),
            other => panic!("{other:?}"),
        };
        let (mut a, mut b) = (Session::new(), Session::new());
        let (ida, idb) = (text(client(&mut a, &args(&["ID"]))), text(client(&mut b, &args(&["id"]))));
        assert!(ida != idb && ida != "0", "{ida} {idb}");
        assert_eq!(text(client(&mut a, &args(&["SETNAME", "worker-1"]))), "OK");
        assert_eq!(text(client(&mut a, &args(&["GETNAME"]))), "worker-1");
        for bad in ["a b", "a\nb", "ü"] {
            let refused = text(client(&mut a, &args(&["SETNAME", bad])));
            assert!(refused.contains("cannot contain spaces"), "{bad:?}: {refused}");
        }
        let long = "n".repeat(MAX_CLIENT_NAME + 1);
        assert!(text(client(&mut a, &args(&["SETNAME", &long]))).contains("at most 4096 bytes"));
        // What the unknown subcommand's error says to ask answers (it was that error again).
        match client(&mut a, &args(&["help"])) {
            Reply::Array(lines) => {
                assert!(lines.len() > 4 && text(lines[0].clone()).starts_with("CLIENT <subcommand>"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(text(client(&mut a, &args(&["GETNAME"]))), "worker-1", "a refused name changes nothing");
        assert_eq!(text(client(&mut a, &args(&["SETNAME", ""]))), "OK");
        assert_eq!(text(client(&mut a, &args(&["GETNAME"]))), "nil", "an empty name clears it");
        assert!(text(client(&mut a, &args(&["ID", "x"]))).contains("wrong number of arguments for 'client|id'"));
        assert!(text(client(&mut a, &args(&["GETNAME", "x"]))).contains("'client|getname'"));
        assert!(text(client(&mut a, &args(&["FOO"]))).contains("unknown subcommand 'FOO'"));
        let command = super::super::introspection::command;
        assert!(text(command(&args(&["COUNT", "x"]))).contains("'command|count'"));
        let long = "y".repeat(4 << 20);
        for (reply, cmd) in [(client(&mut a, &args(&[&long])), "CLIENT"), (command(&args(&[&long])), "COMMAND")] {
            assert_eq!(text(reply), format!("ERR unknown subcommand '{}'. Try {cmd} HELP.", "y".repeat(128)));
        }
    }
}
