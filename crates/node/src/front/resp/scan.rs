//! `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]` and `KEYS pattern`, over the cluster-wide
//! scan of `replication/scan.rs`.
//!
//! The cursor is the decimal hash position where the next page starts, `0` at the start and
//! once done, as Redis clients expect (`redis-cli --scan` reads it as an unsigned 64-bit
//! number). `COUNT` is, as in Redis, how much work a page does (entries looked at, at most
//! 10 000); with `MATCH` a page may come back with few keys or none, and a cursor to go on with.
//! There are only strings, so `TYPE string` scans and any other type finds nothing.
//!
//! `KEYS` walks every key, so it is refused on a cluster of more than `--keys-limit` keys
//! (10 000 by default), with an error that points to `SCAN`, as production Redis setups
//! disable it; below that it answers every match.

use bytes::Bytes;

use super::frame::Reply;
use crate::life::state::Node;
use crate::replication::scan::MAX_COUNT;
use crate::transport::wire::KeyFilter;

/// Redis's default `COUNT`.
const DEFAULT_COUNT: usize = 10;

/// What `SCAN`'s arguments ask for.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    cursor: u64,
    pattern: Option<Bytes>,
    count: usize,
    /// `TYPE` named something other than `string`: nothing can match.
    other_type: bool,
}

fn parse(a: &[Bytes]) -> Result<Args, Reply> {
    let cursor = std::str::from_utf8(&a[0])
        .ok()
        // A negative one wraps, as C's `strtoul` does in Redis: `SCAN -1` is 2^64 − 1.
        .and_then(|s| s.parse::<u64>().ok().or_else(|| s.parse::<i64>().ok().map(|c| c as u64)))
        .ok_or_else(|| Reply::err("invalid cursor"))?;
    let mut args = Args { cursor, pattern: None, count: DEFAULT_COUNT, other_type: false };
    let mut rest = a[1..].iter();
    while let Some(opt) = rest.next() {
        let value = rest.next().ok_or_else(|| Reply::err("syntax error"))?;
        match opt.to_ascii_uppercase().as_slice() {
            b"MATCH" => args.pattern = Some(value.clone()),
            b"COUNT" => {
                let n = super::frame::integer(value).ok_or_else(super::frame::not_an_integer)?;
                if n < 1 {
                    return Err(Reply::err("syntax error"));
                }
                args.count = (n as u64).min(MAX_COUNT as u64) as usize;
            }
            b"TYPE" => args.other_type = !value.eq_ignore_ascii_case(b"string"),
            _ => return Err(Reply::err("syntax error")),
        }
    }
    Ok(args)
}

fn page(cursor: u64, keys: Vec<Bytes>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(cursor.to_string())),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ])
}

/// `SCAN` (arity checked by the caller: at least the cursor).
pub async fn scan(node: &Node, a: &[Bytes]) -> Reply {
    let args = match parse(a) {
        Ok(args) => args,
        Err(e) => return e,
    };
    if args.other_type {
        return page(0, Vec::new());
    }
    let filter = KeyFilter { prefix: Bytes::new(), pattern: args.pattern };
    match node.scan(args.cursor, args.count, &filter).await {
        Ok(p) => page(p.cursor, p.keys),
        Err(e) => Reply::err(e),
    }
}

/// `KEYS pattern`: the members' counts first (one `/stats` each), so that a cluster well over
/// the limit refuses without a walk.
pub async fn keys(node: &Node, pattern: &Bytes) -> Reply {
    let count = super::info::cluster_keys(node).await;
    let counted = count.unanswered.is_empty().then_some(count.keys);
    match node.all_keys(pattern, node.config.keys_limit, counted).await {
        Ok(keys) => Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
        Err(e) => Reply::err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    fn error(r: Result<Args, Reply>) -> String {
        match r {
            Err(Reply::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn scan_arguments_as_redis_takes_them() {
        let a = parse(&args("0")).unwrap();
        assert_eq!(a, Args { cursor: 0, pattern: None, count: 10, other_type: false });
        let a = parse(&args("18446744073709551615 match user:* COUNT 100 type STRING")).unwrap();
        assert_eq!(
            (a.cursor, a.pattern.as_deref(), a.count, a.other_type),
            (u64::MAX, Some(&b"user:*"[..]), 100, false)
        );
        assert_eq!(parse(&args("5 COUNT 1000000")).unwrap().count, MAX_COUNT, "COUNT is capped");
        assert!(parse(&args("0 TYPE hash")).unwrap().other_type);
        assert_eq!(error(parse(&args("abc"))), "ERR invalid cursor");
        assert_eq!(parse(&args("-1")).unwrap().cursor, u64::MAX, "as Redis's strtoul reads it");
        assert_eq!(error(parse(&args("-x"))), "ERR invalid cursor");
        assert_eq!(error(parse(&args("99999999999999999999"))), "ERR invalid cursor");
        assert_eq!(error(parse(&args("0 COUNT"))), "ERR syntax error");
        assert_eq!(error(parse(&args("0 COUNT 0"))), "ERR syntax error");
        assert_eq!(error(parse(&args("0 COUNT x"))), "ERR value is not an integer or out of range");
        assert_eq!(error(parse(&args("0 LIMIT 5"))), "ERR syntax error");
    }
}
