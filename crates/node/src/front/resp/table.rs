//! The command table: every command this node knows, with how many arguments it takes and
//! whether it changes keys. A command's name is read once, into a [`Cmd`], and every place that
//! tells commands apart (the session commands, the read-only password, what a pipelined command
//! must wait for, running it) matches on that enum: no string comparisons per place, and the
//! compiler points at each place a new command must be added to.

/// How many arguments (after the name) a command takes.
#[derive(Clone, Copy, Debug)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
    AtMost(usize),
    /// Key and value pairs, at least one (`MSET`).
    Pairs,
    /// Any number: the command checks its own (`AUTH`, `HELLO`, `COMMAND`).
    Any,
}

impl Arity {
    pub fn allows(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
            Arity::AtMost(k) => n <= k,
            Arity::Pairs => n > 0 && n.is_multiple_of(2),
            Arity::Any => true,
        }
    }
}

/// Whether the read-only password may run a command: one that changes no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Reads,
    Writes,
}

/// Where a command's keys are among its arguments, as `COMMAND` tells clients: the first, the
/// last (`-1`: the last argument) and the step between two, counting the name as 0; all 0 for a
/// command of no keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPositions {
    pub first: i64,
    pub last: i64,
    pub step: i64,
}

const NO_KEYS: KeyPositions = KeyPositions { first: 0, last: 0, step: 0 };
const KEY: KeyPositions = KeyPositions { first: 1, last: 1, step: 1 };
const EVERY: KeyPositions = KeyPositions { first: 1, last: -1, step: 1 };
const PAIRED: KeyPositions = KeyPositions { first: 1, last: -1, step: 2 };

/// One row per command: its variant, its name in lower case, its arity, its effect, where its
/// keys are.
macro_rules! table {
    ($($cmd:ident $name:literal $arity:expr, $effect:ident, $keys:expr;)*) => {
        /// A command, by name; [`Cmd::Unknown`] for a name no command has.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Cmd {
            $($cmd,)*
            Unknown,
        }

        impl Cmd {
            /// How many commands the table knows (`COMMAND COUNT`).
            pub const KNOWN: usize = [$($name),*].len();

            fn of_lower(name: &str) -> Cmd {
                match name {
                    $($name => Cmd::$cmd,)*
                    _ => Cmd::Unknown,
                }
            }

            /// The name in lower case, as Redis's error texts give it; "" for an unknown one.
            pub fn name(self) -> &'static str {
                match self {
                    $(Cmd::$cmd => $name,)*
                    Cmd::Unknown => "",
                }
            }

            pub fn arity(self) -> Arity {
                match self {
                    $(Cmd::$cmd => $arity,)*
                    Cmd::Unknown => Arity::Any,
                }
            }

            /// Every command the table knows, in its order (`COMMAND`).
            pub const ALL: [Cmd; Cmd::KNOWN] = [$(Cmd::$cmd),*];

            pub fn keys(self) -> KeyPositions {
                match self {
                    $(Cmd::$cmd => $keys,)*
                    Cmd::Unknown => NO_KEYS,
                }
            }

            /// What it does to keys; an unknown command counts as a write (it is refused to
            /// the read-only password rather than told it does not exist).
            pub fn effect(self) -> Effect {
                match self {
                    $(Cmd::$cmd => Effect::$effect,)*
                    Cmd::Unknown => Effect::Writes,
                }
            }
        }
    };
}

use Arity::{AtLeast, AtMost, Exactly, Pairs};

table! {
    // Keys.
    Get "get" Exactly(1), Reads, KEY;
    Set "set" AtLeast(2), Writes, KEY;
    Del "del" AtLeast(1), Writes, EVERY;
    Exists "exists" AtLeast(1), Reads, EVERY;
    Mget "mget" AtLeast(1), Reads, EVERY;
    Mset "mset" Pairs, Writes, PAIRED;
    Getdel "getdel" Exactly(1), Writes, KEY;
    Strlen "strlen" Exactly(1), Reads, KEY;
    Getset "getset" Exactly(2), Writes, KEY;
    Unlink "unlink" AtLeast(1), Writes, EVERY;
    Touch "touch" AtLeast(1), Reads, EVERY;
    Type "type" Exactly(1), Reads, KEY;
    Memory "memory" AtLeast(1), Reads, NO_KEYS;
    Getrange "getrange" Exactly(3), Reads, KEY;
    Substr "substr" Exactly(3), Reads, KEY;
    // Expiry (`expiry.rs`).
    Getex "getex" AtLeast(1), Writes, KEY;
    Setex "setex" Exactly(3), Writes, KEY;
    Psetex "psetex" Exactly(3), Writes, KEY;
    Expire "expire" AtLeast(2), Writes, KEY;
    Pexpire "pexpire" AtLeast(2), Writes, KEY;
    Expireat "expireat" AtLeast(2), Writes, KEY;
    Pexpireat "pexpireat" AtLeast(2), Writes, KEY;
    Persist "persist" Exactly(1), Writes, KEY;
    Ttl "ttl" Exactly(1), Reads, KEY;
    Pttl "pttl" Exactly(1), Reads, KEY;
    Expiretime "expiretime" Exactly(1), Reads, KEY;
    Pexpiretime "pexpiretime" Exactly(1), Reads, KEY;
    // The keyspace (`scan.rs`).
    Dbsize "dbsize" Exactly(0), Reads, NO_KEYS;
    Scan "scan" AtLeast(1), Reads, NO_KEYS;
    Keys "keys" Exactly(1), Reads, NO_KEYS;
    // The server.
    Ping "ping" AtMost(1), Reads, NO_KEYS;
    Echo "echo" Exactly(1), Reads, NO_KEYS;
    Command "command" Arity::Any, Reads, NO_KEYS;
    Info "info" Arity::Any, Reads, NO_KEYS;
    Select "select" Exactly(1), Reads, NO_KEYS;
    Time "time" Exactly(0), Reads, NO_KEYS;
    // The connection's session.
    Auth "auth" AtLeast(1), Reads, NO_KEYS;
    Hello "hello" Arity::Any, Reads, NO_KEYS;
    Quit "quit" Arity::Any, Reads, NO_KEYS;
    Client "client" AtLeast(1), Reads, NO_KEYS;
    Reset "reset" Exactly(0), Reads, NO_KEYS;
    // Transactions (`multi.rs`): the commands they queue are judged one by one.
    Multi "multi" Exactly(0), Reads, NO_KEYS;
    Exec "exec" Exactly(0), Reads, NO_KEYS;
    Discard "discard" Exactly(0), Reads, NO_KEYS;
    Watch "watch" AtLeast(1), Reads, EVERY;
    Unwatch "unwatch" Exactly(0), Reads, NO_KEYS;
}

/// Longer than any command name in the table.
const NAME_MAX: usize = 16;

impl Cmd {
    /// The command `name` names, in any case, without allocating.
    pub fn of(name: &[u8]) -> Cmd {
        let mut lowered = [0; NAME_MAX];
        lower(name, &mut lowered).map_or(Cmd::Unknown, Cmd::of_lower)
    }
}

/// Why dkv refuses a Redis command it knows of but cannot honour, by name in any case; `None`
/// for any other name. Each of them reads a key and writes it back changed (or only if it is
/// absent), and is worth something only if no other write can come between the two: that takes
/// a compare-and-set across replicas, which a leaderless store does not have. Telling the
/// client so beats "unknown command", which reads like a missing feature of the client.
///
/// With the reason comes the command's arity in Redis, checked first as Redis checks it: `INCR a
/// b` is Redis's arity error, not this refusal (found by the hunt of 2026-12-07).
pub fn cannot_honour(name: &[u8]) -> Option<(&'static str, Arity)> {
    const CAS: &str = "it has no atomic compare-and-set across replicas";
    const RMW: &str = "it has no atomic read-modify-write across replicas";
    let mut lowered = [0; NAME_MAX];
    Some(match lower(name, &mut lowered)? {
        "setnx" => (CAS, Arity::Exactly(2)),
        "msetnx" => (CAS, Arity::Pairs),
        "incr" | "decr" => (RMW, Arity::Exactly(1)),
        "incrby" | "incrbyfloat" | "decrby" | "append" => (RMW, Arity::Exactly(2)),
        "setrange" => (RMW, Arity::Exactly(3)),
        _ => return None,
    })
}

/// Whether a command named `name` is the first line of an HTTP request (`POST / HTTP/1.1`) or one
/// of its headers (`Host:`): a web page made a browser send an HTTP request to this port, which
/// a browser lets any page do with a `text/plain` body, and the lines of that body would run as
/// commands (cross-protocol scripting). As Redis does, the connection is closed at once, before
/// anything after it runs (until 2026-12-06 the headers were answered as unknown commands and
/// the body ran: a page could write any key of a node without a password, found by trying).
pub fn is_http(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:")
}

/// `name` in lower case in `into`, if it can be a command's name (letters, at most `NAME_MAX`).
fn lower<'a>(name: &[u8], into: &'a mut [u8; NAME_MAX]) -> Option<&'a str> {
    if name.len() > NAME_MAX || !name.iter().all(u8::is_ascii_alphabetic) {
        return None; // every command's name is letters
    }
    for (b, c) in into.iter_mut().zip(name) {
        *b = c.to_ascii_lowercase();
    }
    // SAFETY: every byte is an ASCII letter (checked above), so the bytes are valid UTF-8.
    // (The checked conversion cost more instructions than the rest of the lookup.)
    Some(unsafe { std::str::from_utf8_unchecked(&into[..name.len()]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_in_any_case_and_only_whole() {
        assert_eq!(Cmd::of(b"GET"), Cmd::Get);
        assert_eq!(Cmd::of(b"pExpireAt"), Cmd::Pexpireat);
        for unknown in [&b"GETS"[..], b"ge", b"", b"g\xc3\xa9t", b"get ", b"flushall", b"expiretimeexpiretime"] {
            assert_eq!(Cmd::of(unknown), Cmd::Unknown, "{}", unknown.escape_ascii());
        }
    }

    #[test]
    fn names_read_back_as_themselves() {
        for name in ["get", "set", "mset", "client", "pexpiretime", "command"] {
            assert_eq!(Cmd::of(name.as_bytes()).name(), name);
        }
        assert_eq!(Cmd::KNOWN, 46);
    }

    #[test]
    fn commands_that_need_an_atomic_step_are_refused_by_name() {
        assert_eq!(cannot_honour(b"INCR").map(|c| c.0), Some("it has no atomic read-modify-write across replicas"));
        assert_eq!(cannot_honour(b"setNX").map(|c| c.0), Some("it has no atomic compare-and-set across replicas"));
        let arity = |name: &[u8]| cannot_honour(name).expect("refused").1;
        assert!(arity(b"incr").allows(1) && !arity(b"incr").allows(2));
        assert!(arity(b"SETRANGE").allows(3) && !arity(b"SETRANGE").allows(2));
        assert!(arity(b"msetnx").allows(4) && !arity(b"msetnx").allows(3));
        for other in [&b"GET"[..], b"incrs", b"", b"flushall", b"incr "] {
            assert!(cannot_honour(other).is_none(), "{}", other.escape_ascii());
        }
    }

    #[test]
    fn arities_and_effects_are_those_of_redis() {
        assert!(Cmd::Get.arity().allows(1) && !Cmd::Get.arity().allows(0) && !Cmd::Get.arity().allows(2));
        assert!(Cmd::Mset.arity().allows(4) && !Cmd::Mset.arity().allows(3) && !Cmd::Mset.arity().allows(0));
        assert!(Cmd::Ping.arity().allows(0) && Cmd::Ping.arity().allows(1) && !Cmd::Ping.arity().allows(2));
        assert!(Cmd::Setex.arity().allows(3) && !Cmd::Setex.arity().allows(2));
        assert_eq!(Cmd::Getdel.effect(), Effect::Writes);
        assert_eq!(Cmd::Unlink.effect(), Effect::Writes);
        assert_eq!(Cmd::Touch.effect(), Effect::Reads);
        assert_eq!(Cmd::Scan.effect(), Effect::Reads);
        assert_eq!(Cmd::Unknown.effect(), Effect::Writes, "refused to the read-only password");
    }
}
