//! The Redis commands that set, read and drop a key's expiry: `SET … EX|PX|EXAT|PXAT|KEEPTTL`,
//! `SETEX`, `PSETEX`, `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` (with `NX|XX|GT|LT`), `TTL`,
//! `PTTL`, `EXPIRETIME`, `PEXPIRETIME`, `PERSIST` and `GETEX`, with Redis's replies and error
//! texts.
//!
//! A deadline is stored with the value (see `replication/expiry.rs`), so changing it is a write
//! of the whole value under a new version: `EXPIRE`, `PERSIST`, `GETEX` with an option and
//! `SET … KEEPTTL` read the key, then write it back with the new deadline. Each step is a quorum
//! operation, but the pair is not atomic, as `SET … GET` is not: a write of the key by another
//! client between the two steps can be overwritten by the value read before it. A deadline
//! already past deletes the key, as in Redis. Relative times count from the cluster's clock as
//! this node knows it (`Node::cluster_wall_ms`: its own, unless it is judged off).
//!
//! The parsing is pure (explicit `now`), so it is tested without a cluster.

use bytes::Bytes;

use super::frame::{self, Reply};
use super::table::Cmd;
use crate::life::metrics::Api;
use crate::life::state::Node;
use crate::replication::expiry::MAX_DEADLINE_MS;
use crate::transport::wire::Found;

/// How an expiry argument is written: seconds or milliseconds, from now or since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Form {
    seconds: bool,
    relative: bool,
}

/// `EX`, `PX`, `EXAT` or `PXAT`, in any case.
fn form(option: &[u8]) -> Option<Form> {
    match option.to_ascii_uppercase().as_slice() {
        b"EX" => Some(Form { seconds: true, relative: true }),
        b"PX" => Some(Form { seconds: false, relative: true }),
        b"EXAT" => Some(Form { seconds: true, relative: false }),
        b"PXAT" => Some(Form { seconds: false, relative: false }),
        _ => None,
    }
}

fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

fn invalid_time(cmd: &str) -> Reply {
    Reply::err(format!("invalid expire time in '{cmd}' command"))
}

fn integer(arg: &[u8]) -> Result<i64, Reply> {
    frame::integer(arg).ok_or_else(frame::not_an_integer)
}

/// The deadline (ms since the epoch) of `SET`'s and `GETEX`'s expiry argument: a positive time
/// whose deadline fits in 63 bits, else Redis's "invalid expire time".
fn option_deadline(arg: &[u8], form: Form, now_ms: u64, cmd: &str) -> Result<u64, Reply> {
    let n = integer(arg)?;
    if n <= 0 {
        return Err(invalid_time(cmd));
    }
    let ms = if form.seconds { n.checked_mul(1000).ok_or_else(|| invalid_time(cmd))? } else { n };
    let base = if form.relative { now_ms } else { 0 };
    (ms as u64).checked_add(base).filter(|&t| t <= MAX_DEADLINE_MS).ok_or_else(|| invalid_time(cmd))
}

/// The deadline of an `EXPIRE`-family argument, in ms since the epoch: any integer, so it may be
/// in the past (negative, even), which deletes the key.
fn expire_deadline(arg: &[u8], form: Form, now_ms: u64, cmd: &str) -> Result<i64, Reply> {
    let n = integer(arg)?;
    let ms = if form.seconds { n.checked_mul(1000).ok_or_else(|| invalid_time(cmd))? } else { n };
    let base = if form.relative { now_ms as i64 } else { 0 };
    ms.checked_add(base).ok_or_else(|| invalid_time(cmd))
}

/// `EXPIRE`'s conditions on the deadline the key has now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Condition {
    /// Only if it has none.
    nx: bool,
    /// Only if it has one.
    xx: bool,
    /// Only if the new one is later (no deadline counts as infinitely late).
    gt: bool,
    /// Only if the new one is earlier.
    lt: bool,
}

impl Condition {
    fn parse(options: &[Bytes]) -> Result<Condition, Reply> {
        let mut c = Condition::default();
        for o in options {
            match o.to_ascii_uppercase().as_slice() {
                b"NX" => c.nx = true,
                b"XX" => c.xx = true,
                b"GT" => c.gt = true,
                b"LT" => c.lt = true,
                _ => return Err(Reply::err(format!("Unsupported option {}", String::from_utf8_lossy(o)))),
            }
        }
        if c.nx && (c.xx || c.gt || c.lt) {
            return Err(Reply::err("NX and XX, GT or LT options at the same time are not compatible"));
        }
        if c.gt && c.lt {
            return Err(Reply::err("GT and LT options at the same time are not compatible"));
        }
        Ok(c)
    }

    /// Whether a key whose deadline is `current` takes the deadline `new`.
    fn allows(self, current: Option<u64>, new: i64) -> bool {
        let current = current.map(|c| c as i64);
        !((self.nx && current.is_some())
            || (self.xx && current.is_none())
            || (self.gt && current.is_none_or(|c| new <= c))
            || (self.lt && current.is_some_and(|c| new >= c)))
    }
}

/// `SET`'s options once parsed.
#[derive(Debug, PartialEq, Eq)]
struct SetOptions {
    /// `GET`: answer the value the key had.
    get: bool,
    /// `KEEPTTL`: keep the deadline the key had.
    keep: bool,
    /// `EX`/`PX`/`EXAT`/`PXAT`: the deadline.
    expires: Option<u64>,
}

/// Whether `SET`'s options (`a[3..]`) name `NX` and `XX`, skipping the times of `EX` and the
/// like.
fn nx_xx(options: &[Bytes]) -> (bool, bool) {
    let (mut nx, mut xx) = (false, false);
    let mut rest = options.iter();
    while let Some(o) = rest.next() {
        if o.eq_ignore_ascii_case(b"NX") {
            nx = true;
        } else if o.eq_ignore_ascii_case(b"XX") {
            xx = true;
        } else if form(o).is_some() {
            rest.next(); // its time, whatever it says
        }
    }
    (nx, xx)
}

/// The refusal of a `SET` whose options ask for `NX` or `XX`, a compare-and-set, which dkv
/// cannot honour. Checked when a `SET` is queued in a transaction too, as `SETNX` is: refused
/// only when `EXEC` ran it, it let the transaction's other writes through where Redis would
/// have run them all (found by trying, 2026-12-06). Both at once are a syntax error when it
/// runs, as in Redis.
pub fn cannot_honour_set(options: &[Bytes]) -> Option<Reply> {
    match nx_xx(options) {
        (true, false) | (false, true) => {
            Some(Reply::err("dkv cannot honour SET NX/XX: it has no atomic compare-and-set across replicas"))
        }
        _ => None,
    }
}

fn set_options(options: &[Bytes], now_ms: u64) -> Result<SetOptions, Reply> {
    if nx_xx(options) == (true, true) {
        return Err(syntax_error());
    }
    if let Some(refusal) = cannot_honour_set(options) {
        return Err(refusal);
    }
    let (mut get, mut keep, mut expiry) = (false, false, None);
    let mut rest = options.iter();
    while let Some(o) = rest.next() {
        match o.to_ascii_uppercase().as_slice() {
            b"GET" => get = true,
            b"KEEPTTL" if expiry.is_none() => keep = true,
            // The same form again is Redis's too (`EX 10 EX 20`): the last one counts.
            _ => match (form(o), rest.as_slice().first()) {
                (Some(f), Some(arg)) if !keep && expiry.is_none_or(|(was, _)| was == f) => {
                    expiry = Some((f, arg));
                    rest.next();
                }
                _ => return Err(syntax_error()),
            },
        }
    }
    let expires = expiry.map(|(f, arg)| option_deadline(arg, f, now_ms, "set")).transpose()?;
    Ok(SetOptions { get, keep, expires })
}

/// What `GETEX` does to the deadline.
#[derive(Debug, PartialEq, Eq)]
enum GetEx {
    /// No option: a plain `GET`.
    Leave,
    Persist,
    At(u64),
}

/// The option of a `GETEX`: a syntax error at once (the outer error), an invalid time only
/// once the key turns out to exist (the inner one), as in Redis, where `GETEX missing EX 0`
/// answers nil. An option given again counts once (`PERSIST PERSIST`), a time given again in
/// the same form counts the last (`EX 10 EX 30`), as in Redis; two kinds are a syntax error.
fn getex_option(options: &[Bytes], now_ms: u64) -> Result<Result<GetEx, Reply>, Reply> {
    let (mut persist, mut expiry) = (false, None);
    let mut rest = options.iter();
    while let Some(o) = rest.next() {
        match (form(o), rest.as_slice().first()) {
            (None, _) if o.eq_ignore_ascii_case(b"PERSIST") && expiry.is_none() => persist = true,
            (Some(f), Some(arg)) if !persist && expiry.is_none_or(|(was, _)| was == f) => {
                expiry = Some((f, arg));
                rest.next();
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(match (persist, expiry) {
        (true, _) => Ok(GetEx::Persist),
        (false, Some((f, arg))) => option_deadline(arg, f, now_ms, "getex").map(GetEx::At),
        (false, None) => Ok(GetEx::Leave),
    })
}

async fn read(node: &Node, key: &Bytes) -> Result<Option<Found>, Reply> {
    node.read(Api::Resp, key.clone(), None).await.map_err(Reply::err)
}

/// Write `value` under `key` until `expires`; a deadline already past deletes the key.
async fn write(node: &Node, key: &Bytes, value: &Bytes, expires: Option<u64>) -> Result<(), Reply> {
    // The value is a slice of the connection's read buffer: whatever keeps it beyond the request
    // (the engine, replica calls, a hint) keeps a copy.
    node.put_expiring(Api::Resp, key.clone(), value.clone(), expires, None).await.map_err(Reply::err)
}

/// `SET key value [GET] [EX s|PX ms|EXAT ts|PXAT ts-ms|KEEPTTL]`.
pub async fn set(node: &Node, a: &[Bytes]) -> Reply {
    let (key, value) = (&a[0], &a[1]);
    // The clock only for options that need it: a plain SET reads none.
    let now = if a.len() > 2 { node.cluster_wall_ms() } else { 0 };
    let opts = match set_options(&a[2..], now) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let old = match opts.get || opts.keep {
        true => match read(node, key).await {
            Ok(found) => found,
            Err(e) => return e,
        },
        false => None,
    };
    let expires = if opts.keep { old.as_ref().and_then(|f| f.expires) } else { opts.expires };
    match write(node, key, value, expires).await {
        Err(e) => e,
        Ok(()) if opts.get => old.map_or(Reply::Nil, |f| Reply::Bulk(f.value)),
        Ok(()) => Reply::ok(),
    }
}

/// `SETEX key seconds value` and `PSETEX key milliseconds value`: `SET key value EX|PX time`.
pub async fn setex(node: &Node, cmd: Cmd, a: &[Bytes]) -> Reply {
    let form = Form { seconds: cmd == Cmd::Setex, relative: true };
    match option_deadline(&a[1], form, node.cluster_wall_ms(), cmd.name()) {
        Ok(deadline) => write(node, &a[0], &a[2], Some(deadline)).await.map_or_else(|e| e, |()| Reply::ok()),
        Err(e) => e,
    }
}

/// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT key time [NX|XX|GT|LT]`: 1 if the deadline was
/// set (or the key deleted, for a time already past), 0 if the key is absent or a condition
/// did not hold.
pub async fn expire(node: &Node, cmd: Cmd, a: &[Bytes]) -> Reply {
    let form = match cmd {
        Cmd::Expire => Form { seconds: true, relative: true },
        Cmd::Pexpire => Form { seconds: false, relative: true },
        Cmd::Expireat => Form { seconds: true, relative: false },
        _ => Form { seconds: false, relative: false },
    };
    let condition = match Condition::parse(&a[2..]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let now = node.cluster_wall_ms();
    let when = match expire_deadline(&a[1], form, now, cmd.name()) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let key = &a[0];
    let found = match read(node, key).await {
        Ok(Some(f)) => f,
        Ok(None) => return Reply::Int(0),
        Err(e) => return e,
    };
    if !condition.allows(found.expires, when) {
        return Reply::Int(0);
    }
    let result = match u64::try_from(when) {
        Ok(t) if t > now => write(node, key, &found.value, Some(t)).await,
        _ => node.delete(Api::Resp, key.clone(), None).await.map_err(Reply::err),
    };
    result.map_or_else(|e| e, |()| Reply::Int(1))
}

/// `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME key`: -2 for an absent key, -1 for one without a
/// deadline, else the time left (or the deadline), in seconds rounded as Redis does, or in ms.
pub async fn ttl(node: &Node, cmd: Cmd, key: &Bytes) -> Reply {
    // Only the deadline is needed: the value stays on the replicas.
    let found = match super::commands::length(node, key).await {
        Ok(Some(f)) => f,
        Ok(None) => return Reply::Int(-2),
        Err(e) => return e,
    };
    let Some(deadline) = found.expires else { return Reply::Int(-1) };
    let absolute = matches!(cmd, Cmd::Expiretime | Cmd::Pexpiretime);
    let ms = if absolute { deadline } else { deadline.saturating_sub(node.cluster_wall_ms()) };
    let millis = matches!(cmd, Cmd::Pttl | Cmd::Pexpiretime);
    Reply::Int(if millis { ms } else { ms.saturating_add(500) / 1000 } as i64)
}

/// `PERSIST key`: 1 if the key's deadline was removed, 0 if it is absent or has none.
pub async fn persist(node: &Node, key: &Bytes) -> Reply {
    match read(node, key).await {
        Ok(Some(Found { value, expires: Some(_) })) => {
            write(node, key, &value, None).await.map_or_else(|e| e, |()| Reply::Int(1))
        }
        Ok(_) => Reply::Int(0),
        Err(e) => e,
    }
}

/// `GETEX key [EX s|PX ms|EXAT ts|PXAT ts-ms|PERSIST]`: the value, its deadline changed.
pub async fn getex(node: &Node, a: &[Bytes]) -> Reply {
    let key = &a[0];
    let option = match getex_option(&a[1..], node.cluster_wall_ms()) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let found = match read(node, key).await {
        Ok(Some(f)) => f,
        Ok(None) => return Reply::Nil,
        Err(e) => return e,
    };
    let option = match option {
        Ok(o) => o,
        Err(e) => return e,
    };
    let result = match option {
        GetEx::Leave => Ok(()),
        GetEx::Persist if found.expires.is_none() => Ok(()),
        GetEx::Persist => write(node, key, &found.value, None).await,
        GetEx::At(t) => write(node, key, &found.value, Some(t)).await,
    };
    result.map_or_else(|e| e, |()| Reply::Bulk(found.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split_whitespace().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    fn error(r: Result<impl std::fmt::Debug, Reply>) -> String {
        match r {
            Err(Reply::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn set_options_parse_as_redis_does() {
        let set = |s: &str| set_options(&args(s), NOW);
        assert_eq!(set("").unwrap(), SetOptions { get: false, keep: false, expires: None });
        assert_eq!(set("ex 10").unwrap().expires, Some(NOW + 10_000));
        assert_eq!(set("PX 1500 GET").unwrap(), SetOptions { get: true, keep: false, expires: Some(NOW + 1500) });
        assert_eq!(set("EXAT 1800000000").unwrap().expires, Some(1_800_000_000_000));
        assert_eq!(set("pxat 5").unwrap().expires, Some(5), "a deadline in the past is allowed (it deletes)");
        assert_eq!(set("KEEPTTL GET").unwrap(), SetOptions { get: true, keep: true, expires: None });
        for bad in ["EX", "EX 10 PX 10", "KEEPTTL EX 10", "EX 10 KEEPTTL", "FOO", "EX 10 10", "EX 10 EXAT 10"] {
            assert_eq!(error(set(bad)), "ERR syntax error", "{bad}");
        }
        // An option given again, as Redis 7.0.15 takes it: the last time counts.
        assert_eq!(set("EX 10 EX 20").unwrap().expires, Some(NOW + 20_000));
        assert_eq!(
            set("EX 0 EX 20 GET GET").unwrap(),
            SetOptions { get: true, keep: false, expires: Some(NOW + 20_000) }
        );
        assert_eq!(set("KEEPTTL KEEPTTL").unwrap(), SetOptions { get: false, keep: true, expires: None });
        for bad in ["EX 0", "EX -1", "PX 0", "EXAT 0", "EX 9223372036854775", "PX 9223372036854775807"] {
            assert_eq!(error(set(bad)), "ERR invalid expire time in 'set' command", "{bad}");
        }
        for bad in ["EX ten", "EX 1.5", "PX +5", "EX 99999999999999999999", "EX 010", "EX -0", "EX 1e3", "EX -"] {
            assert_eq!(error(set(bad)), "ERR value is not an integer or out of range", "{bad}");
        }
        assert!(error(set("NX")).contains("cannot honour SET NX/XX"));
        assert!(error(set("xx EX 10")).contains("cannot honour SET NX/XX"));
        assert!(error(set("NX XX")).contains("syntax error"), "both at once, as in Redis");
    }

    #[test]
    fn expire_arguments_and_conditions_parse_as_redis_does() {
        let f = |seconds, relative| Form { seconds, relative };
        assert_eq!(expire_deadline(b"10", f(true, true), NOW, "expire").unwrap(), (NOW + 10_000) as i64);
        assert_eq!(expire_deadline(b"-5", f(false, true), NOW, "pexpire").unwrap(), NOW as i64 - 5);
        assert_eq!(expire_deadline(b"-5", f(true, false), NOW, "expireat").unwrap(), -5000);
        assert_eq!(
            error(expire_deadline(b"9223372036854775", f(true, true), NOW, "expire")),
            "ERR invalid expire time in 'expire' command"
        );
        assert_eq!(
            error(expire_deadline(b"9223372036854775000", f(false, true), NOW, "pexpire")),
            "ERR invalid expire time in 'pexpire' command"
        );
        assert!(error(expire_deadline(b"x", f(true, true), NOW, "expire")).contains("not an integer"));

        let c = |s: &str| Condition::parse(&args(s));
        assert_eq!(error(c("NX XX")), "ERR NX and XX, GT or LT options at the same time are not compatible");
        assert_eq!(error(c("GT LT")), "ERR GT and LT options at the same time are not compatible");
        assert_eq!(error(c("SOON")), "ERR Unsupported option SOON");
        let (none, at100) = (None, Some(100));
        assert!(c("").unwrap().allows(none, 5) && c("").unwrap().allows(at100, 5));
        assert!(c("nx").unwrap().allows(none, 5) && !c("NX").unwrap().allows(at100, 5));
        assert!(!c("XX").unwrap().allows(none, 5) && c("XX").unwrap().allows(at100, 5));
        assert!(!c("GT").unwrap().allows(none, 500), "no deadline is later than any");
        assert!(c("GT").unwrap().allows(at100, 101) && !c("GT").unwrap().allows(at100, 100));
        assert!(c("LT").unwrap().allows(none, 500) && c("LT").unwrap().allows(at100, 99));
        assert!(!c("LT").unwrap().allows(at100, 100));
        assert!(!c("XX GT").unwrap().allows(none, 500) && c("XX GT").unwrap().allows(at100, 500));
    }

    #[test]
    fn getex_takes_one_kind_of_option() {
        let g = |s: &str| getex_option(&args(s), NOW);
        assert_eq!(g("").unwrap().unwrap(), GetEx::Leave);
        assert_eq!(g("persist").unwrap().unwrap(), GetEx::Persist);
        assert_eq!(g("EX 2").unwrap().unwrap(), GetEx::At(NOW + 2000));
        assert_eq!(g("PXAT 7").unwrap().unwrap(), GetEx::At(7));
        for bad in ["PERSIST EX 1", "EX 1 PERSIST", "EX", "EX 1 PX 1", "KEEPTTL", "FOO 1"] {
            assert_eq!(error(g(bad)), "ERR syntax error", "{bad}");
        }
        assert_eq!(g("PERSIST persist").unwrap().unwrap(), GetEx::Persist);
        assert_eq!(g("EX 10 EX 30").unwrap().unwrap(), GetEx::At(NOW + 30_000), "the last time counts");
        // An invalid time is said only once the key is found (the inner error).
        assert_eq!(error(g("EX 0").unwrap()), "ERR invalid expire time in 'getex' command");
    }
}
