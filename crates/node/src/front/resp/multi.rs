//! Transactions: `MULTI` queues the commands after it, `EXEC` runs them in order and answers
//! with their replies in one array, `DISCARD` drops them. redis-py's `pipeline()` is one by
//! default, and so are many clients' batches: without it their writes were applied, one by one,
//! and then the `EXEC` failed as an unknown command.
//!
//! As in Redis: a command refused while it is queued (unknown, the wrong number of arguments,
//! one dkv cannot honour, `SET` with `NX` or `XX` among them, a write to the read-only password, past the transaction's bound) is
//! answered with its error at once and makes `EXEC` discard the transaction (`EXECABORT`); a
//! command that fails while it runs does not stop the others (there is no rollback); `QUIT`
//! ends the connection, `RESET` drops the transaction.
//!
//! Unlike Redis, the commands of a transaction are **not isolated** from other clients': dkv
//! has no lock across replicas, so another client may read or write between two of them, as
//! it may between two commands of a pipeline or two keys of one `MSET`. They run one after the
//! other, each seeing the writes before it. `WATCH`, whose whole worth is a compare-and-set at
//! `EXEC`, is refused for that reason, as `INCR` is (`table::cannot_honour`); `UNWATCH` has
//! nothing to undo.
//!
//! A transaction's queued commands are held in memory until `EXEC`: at most
//! `--max-query-buffer` bytes of them, as Redis bounds what a client sends, and charged to
//! `--max-client-memory` meanwhile (40 connections holding queues of 62 MiB held 1.6 GB outside
//! it, found by trying, 2026-12-06).

use std::sync::Arc;

use bytes::Bytes;

use super::commands::{self, takes_value_out, Held};
use super::frame::{Args, Reply};
use super::table::Cmd;
use crate::front::limits::{Charge, Guard, Refused};
use crate::life::state::Node;

/// What a connection in a transaction holds.
#[derive(Default)]
pub struct Transaction {
    queued: Vec<(Cmd, Args)>,
    /// What the queued arguments take, with a little for each: what the bound counts.
    bytes: usize,
    /// `bytes`, charged to the client memory budget (none in unit tests).
    charge: Option<Charge>,
    /// A command was refused while queued: `EXEC` discards the transaction.
    failed: bool,
}

/// What a command sent inside a transaction comes to.
pub enum Queue {
    /// Queued: answered `+QUEUED`.
    Queued,
    /// Refused, with this reply; the transaction is then discarded at `EXEC`.
    Refused(Reply),
}

/// About what a queued argument takes besides its bytes.
const PER_ARG: usize = 16;

/// What a queued command takes besides its arguments: its place in the queue, which grows by
/// doubling, so up to twice that. Uncounted, 1 000 000 queued `GET`s took 230 MB with 43 MB
/// charged (found by a hunt, 2026-12-07).
const PER_COMMAND: usize = 2 * std::mem::size_of::<(Cmd, Args)>();

impl Transaction {
    /// A transaction whose queued commands are charged to `guard`'s budget.
    pub fn charged(guard: &Arc<Guard>) -> Transaction {
        Transaction { charge: guard.charge(0).ok(), ..Transaction::default() }
    }

    /// Queue `cmd`, or say why not (`max_bytes`: the bound on what a transaction holds).
    pub fn queue(&mut self, cmd: Cmd, args: &Args, max_bytes: usize) -> Queue {
        let refusal = match cmd {
            Cmd::Unknown => Some(commands::unknown_command(&args[0], &args[1..])),
            _ if !cmd.arity().allows(args.len() - 1) => Some(commands::wrong_arity(cmd)),
            Cmd::Set => super::expiry::cannot_honour_set(&args[3..]),
            _ => None,
        };
        if let Some(reply) = refusal {
            return Queue::Refused(self.refuse(reply));
        }
        let bytes = PER_COMMAND + args.iter().map(|a| a.len() + PER_ARG).sum::<usize>();
        if self.bytes + bytes > max_bytes {
            return Queue::Refused(self.refuse(Reply::err(format!(
                "a transaction holds at most {} of queued commands (--max-query-buffer); EXEC will discard this one",
                crate::front::limits::human(max_bytes)
            ))));
        }
        if let Some(Err(refused)) = self.charge.as_mut().map(|c| c.grow_to(self.bytes + bytes)) {
            return Queue::Refused(
                self.refuse(Reply::err(format!("{}; EXEC will discard this transaction", refused.0))),
            );
        }
        self.bytes += bytes;
        // Copied: held until `EXEC`, a slice would pin the connection's whole read buffer.
        self.queued.push((cmd, args.iter().map(|a| Bytes::copy_from_slice(a)).collect()));
        Queue::Queued
    }

    /// A command refused while queued: answered with `reply`, and the transaction fails.
    pub fn refuse(&mut self, reply: Reply) -> Reply {
        self.failed = true;
        reply
    }

    /// The commands to run at `EXEC`, with their charge, or the reply that discards them.
    pub fn exec(self) -> Result<Queued, Reply> {
        match self.failed {
            true => Err(Reply::Error("EXECABORT Transaction discarded because of previous errors.".into())),
            false => Ok(Queued { commands: self.queued, _charge: self.charge }),
        }
    }
}

/// A transaction's commands at `EXEC`, still charged until they have run: they stay in memory
/// until then, and commands that wait on other nodes may take the request timeout (found by
/// review, 2026-12-07: the charge was given back as `EXEC` began).
pub struct Queued {
    pub commands: Vec<(Cmd, Args)>,
    _charge: Option<Charge>,
}

/// Run a transaction's commands one after the other, each seeing the writes before it; their
/// replies, in order, in one array.
///
/// The array is held whole before it is written, and a few bytes of queued `GET`s of one large
/// value would make it any size: 1 800 `GET`s of a 1 MiB value (30 KB sent) took a node from 63
/// MB to 1.9 GB before the client memory budget refused the reply (found by a hunt,
/// 2026-12-07). So once the values of the replies come to more than `--max-query-buffer`, as
/// for one `MGET`, every later reply that carries a value is an error in its place. Every
/// command still runs (a transaction's writes are not undone by a reply too large to hold), and
/// an element of `EXEC`'s array may be an error in Redis too. But the reply of a command that
/// took its value out of the store (`GETDEL`, `GETSET`, `SET … GET`) is always sent: nowhere
/// else could the client get that value back.
///
/// The values are charged to `--max-client-memory` as they come, and one the budget refuses is
/// an error in its place as well, as is every later one. Counted but never refused, 40
/// connections that each sent `MULTI`, 64 `GET`s of a 1 MiB value and `EXEC`, and did not read,
/// took a node to 3.6 GB with 2.7 GB charged against a 1 GiB budget (found by trying,
/// 2026-12-07). Values taken out of the store are counted, whatever the budget.
///
/// Past the bound or the budget, a command that only reads values (`GET`, `MGET`, `GETRANGE`)
/// is not run at all: its reply would be the error anyway. And the loop lets the node's other
/// tasks run every [`YIELD_EVERY`] commands: commands on this node's own keys finish at their first poll, and a
/// transaction of a million of them held a runtime thread for seconds, other connections'
/// `PING`s waiting 23 s (the hunt of 2026-12-07).
pub async fn exec(node: &Node, queued: Queued) -> Held {
    let mut bound = Bound::new(&node.guard);
    let Queued { commands, _charge } = queued;
    let mut replies = Vec::with_capacity(commands.len());
    for (i, (cmd, args)) in commands.into_iter().enumerate() {
        if i % YIELD_EVERY == YIELD_EVERY - 1 {
            tokio::task::yield_now().await;
        }
        if let Some(refusal) = bound.refusal.as_ref().filter(|_| only_reads_values(cmd)) {
            replies.push(Reply::err(refusal.clone()));
            continue;
        }
        let took_out = takes_value_out(cmd, &args);
        let reply = commands::run(node, cmd, args).await;
        replies.push(bound.within(reply, took_out));
    }
    Held::charged(Reply::Array(replies), bound.charge)
}

/// Commands of a transaction run between two chances for the node's other tasks.
const YIELD_EVERY: usize = 64;

/// Whether the command does nothing but read values: past the bound it need not run.
fn only_reads_values(cmd: Cmd) -> bool {
    matches!(cmd, Cmd::Get | Cmd::Mget | Cmd::Getrange | Cmd::Substr)
}

/// What a transaction's replies hold of values, against `max` and the client memory budget.
struct Bound {
    max: usize,
    /// Their values, charged to `--max-client-memory` as they come.
    charge: Charge,
    /// Why the first value refused was: every later value is refused the same, whatever its
    /// size.
    refusal: Option<String>,
}

impl Bound {
    fn new(guard: &Arc<Guard>) -> Bound {
        let charge = guard.charge(0).expect("nothing is within any budget");
        Bound { max: guard.limits.max_query_buffer, charge, refusal: None }
    }

    /// `reply`, counted in; the error that takes its place past the bound or the budget, unless
    /// it is the value a command `took_out` of the store, counted whatever the budget.
    fn within(&mut self, reply: Reply, took_out: bool) -> Reply {
        let value = reply.value_bytes();
        if value == 0 {
            return reply;
        }
        if took_out {
            self.charge.include(value);
            return reply;
        }
        if self.refusal.is_none() {
            let total = self.charge.bytes() + value;
            self.refusal = match total > self.max {
                true => Some(format!(
                    "the replies of this transaction come to more than {} bytes of values, the most one reply holds \
                     (--max-query-buffer); this reply is not sent (a write still ran): read fewer values in one transaction",
                    self.max
                )),
                false => self.charge.grow_to(total).err().map(|Refused(why)| {
                    format!("{why}; this reply of the transaction is not sent (a write still ran)")
                }),
            };
        }
        match &self.refusal {
            Some(why) => Reply::err(why.clone()),
            None => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Args {
        words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    fn cmd(words: &[&str]) -> (Cmd, Args) {
        (Cmd::of(words[0].as_bytes()), args(words))
    }

    fn queue(tx: &mut Transaction, words: &[&str], max: usize) -> Queue {
        let (c, a) = cmd(words);
        tx.queue(c, &a, max)
    }

    fn bound(max_query_buffer: usize, max_client_memory: usize) -> (Arc<Guard>, Bound) {
        use crate::front::limits::ClientLimits;
        let guard =
            Arc::new(Guard::new(ClientLimits { max_client_memory, max_query_buffer, ..ClientLimits::default() }));
        let bound = Bound::new(&guard);
        (guard, bound)
    }

    #[test]
    fn replies_past_the_bound_on_a_transactions_values_are_errors_in_their_place() {
        let bulk = |n: usize| Reply::Bulk(Bytes::from(vec![b'v'; n]));
        let (_guard, mut bound) = bound(100, 1 << 20);
        let replies: Vec<Reply> = [bulk(40), Reply::ok(), bulk(50), Reply::Int(3), bulk(20), bulk(5), Reply::Nil]
            .into_iter()
            .map(|r| bound.within(r, false))
            .collect();
        assert!(
            matches!(&replies[..4], [Reply::Bulk(a), Reply::Simple(_), Reply::Bulk(b), Reply::Int(3)] if a.len() == 40 && b.len() == 50)
        );
        assert!(matches!(&replies[4], Reply::Error(e) if e.contains("--max-query-buffer")), "{:?}", replies[4]);
        assert!(matches!(&replies[5], Reply::Error(_)), "once past the bound, a smaller value too");
        assert!(matches!(&replies[6], Reply::Nil));
        // A value taken out of the store is sent whatever the bound: it is nowhere else now.
        assert!(matches!(bound.within(bulk(30), true), Reply::Bulk(v) if v.len() == 30));
        let (getdel, set_get) = (cmd(&["GETDEL", "k"]), cmd(&["SET", "k", "v", "EX", "5", "get"]));
        assert!(takes_value_out(getdel.0, &getdel.1) && takes_value_out(set_get.0, &set_get.1));
        let (set, get) = (cmd(&["SET", "get", "get"]), cmd(&["GET", "k"]));
        assert!(!takes_value_out(set.0, &set.1) && !takes_value_out(get.0, &get.1), "a key or value named get");
    }

    /// The values are charged to the client memory budget as they come: past it, every later
    /// value is the budget's error in its place; what was charged is given back with the reply;
    /// a value taken out of the store is counted whatever the budget.
    #[test]
    fn a_transactions_values_are_charged_to_the_client_memory_budget() {
        let bulk = |n: usize| Reply::Bulk(Bytes::from(vec![b'v'; n]));
        // Large charges may take three quarters of the budget: 3 MiB of 4.
        let (guard, mut bound) = bound(64 << 20, 4 << 20);
        let replies: Vec<Reply> = (0..5).map(|_| bound.within(bulk(1 << 20), false)).collect();
        assert!(replies[..3].iter().all(|r| matches!(r, Reply::Bulk(v) if v.len() == 1 << 20)));
        assert!(matches!(&replies[3], Reply::Error(e) if e.contains("--max-client-memory")), "{:?}", replies[3]);
        assert!(matches!(&replies[4], Reply::Error(_)));
        assert!(matches!(bound.within(bulk(10), false), Reply::Error(_)), "once refused, a small value too");
        assert!(matches!(bound.within(bulk(1 << 20), true), Reply::Bulk(_)), "taken out: sent");
        assert_eq!(guard.charged(), 4 << 20, "three values read and one taken out");
        drop(Held::charged(Reply::Array(replies), bound.charge));
        assert_eq!(guard.charged(), 0, "given back with the reply");
    }

    #[test]
    fn queued_commands_run_at_exec_in_order() {
        let mut tx = Transaction::default();
        assert!(matches!(queue(&mut tx, &["SET", "a", "1"], 1 << 20), Queue::Queued));
        assert!(matches!(queue(&mut tx, &["get", "a"], 1 << 20), Queue::Queued));
        let Ok(queued) = tx.exec() else { panic!("nothing refused") };
        let names: Vec<_> = queued.commands.iter().map(|(c, _)| *c).collect();
        assert_eq!(names, vec![Cmd::Set, Cmd::Get]);
    }

    /// As in Redis, a command refused while queued discards the whole transaction at `EXEC`.
    #[test]
    fn a_command_refused_while_queued_discards_the_transaction() {
        for bad in [&["GET"][..], &["FOO", "x"], &["SET", "a"], &["SET", "b", "1", "EX", "9", "nx"]] {
            let mut tx = Transaction::default();
            assert!(matches!(queue(&mut tx, &["SET", "a", "1"], 1 << 20), Queue::Queued));
            assert!(matches!(queue(&mut tx, bad, 1 << 20), Queue::Refused(Reply::Error(_))), "{bad:?}");
            match tx.exec() {
                Err(Reply::Error(e)) => assert!(e.starts_with("EXECABORT"), "{e}"),
                _ => panic!("{bad:?} must discard the transaction"),
            }
        }
    }

    /// A `SET` whose options are wrong is queued, and fails when it runs, as in Redis: only one
    /// dkv cannot honour is refused at once.
    #[test]
    fn a_set_with_wrong_options_is_queued() {
        let mut tx = Transaction::default();
        for set in [&["SET", "a", "1", "NX", "XX"][..], &["SET", "a", "1", "EX"], &["SET", "a", "1", "EX", "nx"]] {
            assert!(matches!(queue(&mut tx, set, 1 << 20), Queue::Queued), "{set:?}");
        }
        assert!(tx.exec().is_ok());
    }

    #[test]
    fn a_transaction_holds_at_most_its_bound() {
        let mut tx = Transaction::default();
        let big = "v".repeat(600);
        assert!(matches!(queue(&mut tx, &["SET", "a", &big], 1000), Queue::Queued));
        match queue(&mut tx, &["SET", "b", &big], 1000) {
            Queue::Refused(Reply::Error(e)) => assert!(e.contains("--max-query-buffer"), "{e}"),
            _ => panic!("over the bound"),
        }
        assert!(tx.exec().is_err());
    }

    /// What a transaction queues is charged to the client memory budget until it ends, and a
    /// command past the budget is refused and discards it.
    #[test]
    fn queued_commands_are_charged_to_the_client_memory_budget() {
        use crate::front::limits::ClientLimits;
        let guard = Arc::new(Guard::new(ClientLimits { max_client_memory: 4 << 20, ..ClientLimits::default() }));
        let mut tx = Transaction::charged(&guard);
        let big = "v".repeat(1 << 20);
        for key in ["a", "b"] {
            assert!(matches!(queue(&mut tx, &["SET", key, &big], 64 << 20), Queue::Queued));
        }
        assert!(guard.charged() > 2 << 20, "{}", guard.charged());
        match queue(&mut tx, &["SET", "c", &big], 64 << 20) {
            Queue::Refused(Reply::Error(e)) => assert!(e.contains("--max-client-memory"), "{e}"),
            _ => panic!("over the budget's three quarters"),
        }
        assert!(tx.exec().is_err(), "discarded");
        assert_eq!(guard.charged(), 0, "given back with the transaction");
        // Run at EXEC, the commands stay charged until they have run.
        let mut tx = Transaction::charged(&guard);
        assert!(matches!(queue(&mut tx, &["SET", "a", &big], 64 << 20), Queue::Queued));
        let Ok(queued) = tx.exec() else { panic!("queued") };
        assert!(guard.charged() > 1 << 20, "{}", guard.charged());
        drop(queued);
        assert_eq!(guard.charged(), 0);
    }
}
