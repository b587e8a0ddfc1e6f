//! `COMMAND`: what the command table ([`super::table`]) says about each command, in Redis 7's
//! shapes, for clients that ask before they send. Cluster-aware clients and proxies read where a
//! command's keys are (`COMMAND INFO`, `COMMAND GETKEYS`) to route it; redis-cli completes names
//! from `COMMAND DOCS`. `COMMAND INFO` answered an empty array whatever it was asked, which a
//! client pairing names with entries by position misread (found by trying, 2026-12-06).
//!
//! An entry has Redis's ten fields: name, arity (the name counted; negative: at least that
//! many), flags (`write` or `readonly` for commands of keys), first key, last key, step, ACL
//! categories, and empty tips, key specifications and subcommands. `COMMAND DOCS` answers no
//! documentation (an empty map): the README and the errors are where dkv explains itself.

use bytes::Bytes;

use super::frame::Reply;
use super::table::{Arity, Cmd, Effect};

/// `COMMAND [COUNT | INFO [name ...] | LIST | GETKEYS command arg ... | DOCS [name ...]]`.
pub fn command(a: &[Bytes]) -> Reply {
    // Uppercased only if it is short enough to be one (as in `CLIENT`).
    let sub = match a.first() {
        None => return Reply::Array(Cmd::ALL.iter().map(|&c| entry(c)).collect()),
        Some(s) if s.len() <= 7 => s.to_ascii_uppercase(),
        Some(s) => return super::commands::unknown_subcommand("COMMAND", s),
    };
    let rest = &a[1..];
    match sub.as_slice() {
        b"COUNT" if rest.is_empty() => Reply::Int(Cmd::KNOWN as i64),
        b"LIST" if rest.is_empty() => Reply::Array(Cmd::ALL.iter().map(|c| bulk(c.name())).collect()),
        // Redis's `FILTERBY` options: not served.
        b"LIST" => Reply::err("syntax error"),
        b"INFO" if rest.is_empty() => Reply::Array(Cmd::ALL.iter().map(|&c| entry(c)).collect()),
        b"INFO" => Reply::Array(rest.iter().map(|name| known(name).map_or(Reply::Nil, entry)).collect()),
        b"DOCS" => Reply::Array(Vec::new()),
        b"HELP" if rest.is_empty() => Reply::Array(HELP.iter().map(|&l| Reply::Simple(l)).collect()),
        b"GETKEYS" if rest.len() >= 2 => getkeys(rest),
        b"COUNT" | b"GETKEYS" | b"HELP" => {
            let sub = String::from_utf8_lossy(&sub).to_ascii_lowercase();
            Reply::err(format!("wrong number of arguments for 'command|{sub}' command"))
        }
        _ => super::commands::unknown_subcommand("COMMAND", &a[0]),
    }
}

const HELP: [&str; 12] = [
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all commands dkv serves.",
    "COUNT",
    "    Return the number of commands dkv serves.",
    "GETKEYS <full-command>",
    "    Return the keys from a full command line.",
    "INFO [<command-name> ...]",
    "    Return details about the named commands (nil for one dkv does not serve), or all of them.",
    "LIST",
    "    Return the names of all commands dkv serves.",
    "DOCS: answered with no documentation; see dkv's README.",
];

fn known(name: &[u8]) -> Option<Cmd> {
    Some(Cmd::of(name)).filter(|&c| c != Cmd::Unknown)
}

fn bulk(s: &'static str) -> Reply {
    Reply::Bulk(Bytes::from_static(s.as_bytes()))
}

/// One command's entry, as `COMMAND INFO` gives it.
fn entry(cmd: Cmd) -> Reply {
    let keys = cmd.keys();
    // Commands that read the keyspace without naming keys in fixed places are `readonly` too.
    let reads_data = keys.first > 0 || matches!(cmd, Cmd::Dbsize | Cmd::Scan | Cmd::Keys | Cmd::Memory);
    let (flags, categories): (&[&'static str], &[&'static str]) = match (cmd.effect(), reads_data, cmd) {
        (Effect::Writes, _, _) => (&["write"], &["@write", "@keyspace"]),
        (Effect::Reads, true, _) => (&["readonly"], &["@read", "@keyspace"]),
        (_, _, Cmd::Info) => (&[], &["@slow", "@dangerous"]),
        (_, _, Cmd::Time) => (&[], &["@fast"]),
        (Effect::Reads, false, _) => (&[], &["@connection"]),
    };
    let simple = |s: &[&'static str]| Reply::Array(s.iter().map(|&s| Reply::Simple(s)).collect());
    Reply::Array(vec![
        bulk(cmd.name()),
        Reply::Int(arity(cmd.arity())),
        simple(flags),
        Reply::Int(keys.first),
        Reply::Int(keys.last),
        Reply::Int(keys.step),
        simple(categories),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// Redis's arity: the arguments with the name, negative for "at least".
fn arity(a: Arity) -> i64 {
    match a {
        Arity::Exactly(n) => n as i64 + 1,
        Arity::AtLeast(n) => -(n as i64 + 1),
        Arity::Pairs => -3,
        Arity::AtMost(_) | Arity::Any => -1,
    }
}

/// `COMMAND GETKEYS cmd arg ...`: the keys of that command line, where the table says they are.
fn getkeys(line: &[Bytes]) -> Reply {
    let Some(cmd) = known(&line[0]) else { return Reply::err("Invalid command specified") };
    // `MEMORY USAGE key`: the key of a subcommand, as Redis's key specifications place it.
    if cmd == Cmd::Memory && line.len() >= 3 && line[1].eq_ignore_ascii_case(b"usage") {
        return Reply::Array(vec![Reply::Bulk(line[2].clone())]);
    }
    let keys = cmd.keys();
    if keys.first == 0 {
        return Reply::err("The command has no key arguments");
    }
    if !cmd.arity().allows(line.len() - 1) {
        return Reply::err("Invalid number of arguments specified for command");
    }
    let last = if keys.last < 0 { line.len() as i64 + keys.last } else { keys.last };
    let picked = (keys.first..=last).step_by(keys.step as usize).map(|i| Reply::Bulk(line[i as usize].clone()));
    Reply::Array(picked.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Bytes> {
        a.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    fn names(r: &Reply) -> Vec<String> {
        let Reply::Array(items) = r else { panic!("{r:?}") };
        items
            .iter()
            .map(|i| match i {
                Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                Reply::Array(e) => names(&Reply::Array(vec![e[0].clone()])).remove(0),
                Reply::Nil => "nil".into(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// As Redis 7.0.15 answers: one entry per name asked, nil for one it does not know.
    #[test]
    fn info_answers_each_name_in_place() {
        let r = command(&args(&["INFO", "get", "nosuch", "MSET"]));
        assert_eq!(names(&r), ["get", "nil", "mset"]);
        let Reply::Array(items) = r else { unreachable!() };
        let Reply::Array(get) = &items[0] else { panic!() };
        assert_eq!(get.len(), 10);
        assert_eq!(get[1], Reply::Int(2), "GET's arity, with its name");
        assert_eq!(get[2], Reply::Array(vec![Reply::Simple("readonly")]));
        assert_eq!(get[3..6], [Reply::Int(1), Reply::Int(1), Reply::Int(1)]);
        let Reply::Array(mset) = &items[2] else { panic!() };
        assert_eq!(
            mset[1..6],
            [Reply::Int(-3), Reply::Array(vec![Reply::Simple("write")]), Reply::Int(1), Reply::Int(-1), Reply::Int(2)]
        );
        assert_eq!(names(&command(&[])).len(), Cmd::KNOWN, "COMMAND: every command");
        assert_eq!(names(&command(&args(&["list"]))).len(), Cmd::KNOWN);
    }

    #[test]
    fn getkeys_finds_the_keys_where_the_table_says() {
        assert_eq!(names(&command(&args(&["GETKEYS", "MSET", "a", "1", "b", "2"]))), ["a", "b"]);
        assert_eq!(names(&command(&args(&["GETKEYS", "del", "a", "b", "c"]))), ["a", "b", "c"]);
        assert_eq!(names(&command(&args(&["GETKEYS", "SET", "k", "v", "EX", "10"]))), ["k"]);
        let err = |a: &[&str]| match command(&args(a)) {
            Reply::Error(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(&["GETKEYS", "PING", "x"]), "ERR The command has no key arguments");
        assert_eq!(err(&["GETKEYS", "nosuch", "k"]), "ERR Invalid command specified");
        assert_eq!(err(&["GETKEYS", "GET", "a", "b"]), "ERR Invalid number of arguments specified for command");
        assert_eq!(err(&["GETKEYS"]), "ERR wrong number of arguments for 'command|getkeys' command");
        assert_eq!(err(&["GETKEYS", "GET"]), "ERR wrong number of arguments for 'command|getkeys' command");
        assert_eq!(err(&["LIST", "x"]), "ERR syntax error");
        assert_eq!(names(&command(&args(&["GETKEYS", "MEMORY", "USAGE", "k"]))), ["k"]);
        assert_eq!(err(&["COUNT", "x"]), "ERR wrong number of arguments for 'command|count' command");
        assert!(err(&["NOPE"]).starts_with("ERR unknown subcommand 'NOPE'"));
    }
}
