//! RESP2 framing, without I/O: parse commands out of a read buffer, encode replies into a write
//! buffer.
//!
//! A command is either a RESP array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or an
//! inline line (`GET k\r\n`, what a person types into telnet). [`parse`] consumes bytes only when
//! a whole command is there, so pipelined commands are taken one after the other from one buffer.
//! Nothing is allocated from a length the peer claims: lengths are checked against [`Limits`] and
//! the data must actually be in the buffer before it is sliced out.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

/// A command's name and arguments, slices of the frame they came in. Up to three (`GET k`,
/// `SET k v`) sit in place, so the usual command costs no allocation of its own.
pub type Args = SmallVec<[Bytes; 3]>;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest bulk string (a key or a value).
    pub max_bulk: usize,
    /// Most arguments in one command.
    pub max_args: usize,
    /// Longest inline command line.
    pub max_inline: usize,
}

/// A malformed frame: the connection answers with the error and closes, as Redis does.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

/// Longest `*<n>` or `$<n>` header line accepted.
const MAX_HEADER: usize = 32;

/// An integer argument, as Redis reads one (`string2ll`): `0`, or an optional `-` and digits
/// without a leading zero, within 64 bits. `+5`, `05`, `-0` and ` 5` are not integers.
pub fn integer(arg: &[u8]) -> Option<i64> {
    let digits = arg.strip_prefix(b"-").unwrap_or(arg);
    let canonical = arg == b"0" || digits.first().is_some_and(|d| (b'1'..=b'9').contains(d));
    if !canonical || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Redis's error for an argument that is not an [`integer`].
pub fn not_an_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// The next complete command in `buf`, removing it; `Ok(None)` when more bytes are needed. An
/// empty command (a blank inline line, `*0`) is returned as an empty vector.
pub fn parse(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Args>, ProtocolError> {
    parse_resuming(buf, limits, &mut Resume::default())
}

/// Where the parse of a command of many arguments, not yet whole, stopped: the next read goes
/// on from there. Parsed again from its start at every read, a command of 65 536 arguments sent
/// a few at a time cost the square of its length: about 2·10⁹ headers read for one command, a
/// core's worth for each such client (found by reading, 2026-12-06). Commands of a few
/// arguments are parsed again whole, which costs less than keeping their place.
#[derive(Debug, Default)]
pub struct Resume {
    /// The command's argument count (0: nothing to resume).
    count: usize,
    /// Where the next argument's header starts.
    at: usize,
    /// Where each argument read so far is.
    spans: Vec<(usize, usize)>,
}

/// [`parse`], going on from where the last call stopped (`resume`, kept by the caller with the
/// buffer, and valid while nothing but this takes bytes from its front).
pub fn parse_resuming(buf: &mut BytesMut, limits: &Limits, resume: &mut Resume) -> Result<Option<Args>, ProtocolError> {
    let was = std::mem::take(resume);
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf, limits);
    }
    let (count, mut at, mut more) = match was.count {
        0 => match header(buf, 0, b'*', limits.max_args)? {
            Some((count, at)) => (count, at, Vec::new()),
            None => return Ok(None),
        },
        count => (count, was.at, was.spans),
    };
    // Where each argument is: on the stack for the usual few; in a vector not sized from
    // `count` for more (that is the client's claim, and most of it may never come).
    let mut few = [(0, 0); FEW];
    let mut wait = |at: usize, more: Vec<(usize, usize)>| {
        if count > FEW {
            *resume = Resume { count, at, spans: more };
        }
        Ok(None)
    };
    for i in more.len()..count {
        if at >= buf.len() {
            return wait(at, more);
        }
        if buf[at] != b'$' {
            return Err(ProtocolError(format!("expected '$', got '{}'", buf[at].escape_ascii())));
        }
        let Some((len, data)) = header(buf, at, b'$', limits.max_bulk)? else { return wait(at, more) };
        let end = data + len;
        if buf.len() < end + 2 {
            return wait(at, more);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not followed by CRLF".into()));
        }
        match few.get_mut(i).filter(|_| count <= FEW) {
            Some(span) => *span = (data, len),
            None => more.push((data, len)),
        }
        at = end + 2;
    }
    let frame = buf.split_to(at).freeze();
    let spans = if count <= FEW { &few[..count] } else { &more[..] };
    let mut args = Args::with_capacity(count);
    for &(start, len) in spans {
        args.push(frame.slice(start..start + len));
    }
    Ok(Some(args))
}

/// Arguments whose places [`parse`] keeps on the stack.
const FEW: usize = 8;

/// How many bytes the command starting `buf` takes in all, as far as its headers announce it
/// (an array command whose next bulk string has not fully arrived); `None` when that is not
/// known (an inline command, or not even the array header is there). A caller may size its
/// buffer to it at once, charging the size first, rather than growing it step by step: a
/// megabyte value then costs one allocation instead of a ladder of them.
pub fn announced(buf: &[u8], limits: &Limits) -> Option<usize> {
    announced_from(buf, limits, &Resume::default())
}

/// [`announced`], from where the last parse stopped (see [`Resume`]).
pub fn announced_from(buf: &[u8], limits: &Limits, resume: &Resume) -> Option<usize> {
    if buf.first() != Some(&b'*') {
        return None;
    }
    let (count, mut at, done) = match resume.count {
        0 => match header(buf, 0, b'*', limits.max_args) {
            Ok(Some((count, at))) => (count, at, 0),
            _ => return None,
        },
        count => (count, resume.at, resume.spans.len()),
    };
    for _ in done..count {
        if at >= buf.len() || buf[at] != b'$' {
            return Some(at);
        }
        let Ok(Some((len, data))) = header(buf, at, b'$', limits.max_bulk) else { return Some(at) };
        at = data + len + 2;
        if at > buf.len() {
            return Some(at);
        }
    }
    Some(at)
}

/// Parse `<kind><number>\r\n` at `at`: the number (0..=max) and where the data after it starts.
/// Every argument of every command has such a header, so the usual one (digits, no sign, whole
/// and within `max`) is read here in a few instructions; anything else, [`header_in_full`].
#[inline]
fn header(buf: &[u8], at: usize, kind: u8, max: usize) -> Result<Option<(usize, usize)>, ProtocolError> {
    let rest = &buf[at + 1..];
    // At most 18 digits: their number fits a u64 without checks.
    let (mut digits, mut n) = (0, 0u64);
    while digits < rest.len().min(18) {
        let d = rest[digits].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        n = n * 10 + u64::from(d);
        digits += 1;
    }
    if digits > 0
        && (digits == 1 || rest[0] != b'0')
        && n <= max as u64
        && rest.get(digits..digits + 2) == Some(b"\r\n")
    {
        return Ok(Some((n as usize, at + 1 + digits + 2)));
    }
    header_in_full(buf, at, kind, max)
}

/// [`header`] for every case: a sign, a number over `max`, a line not yet whole, or not a
/// number at all. One pass over the bytes, reading the number as it looks for the line's end.
#[cold]
#[inline(never)]
fn header_in_full(buf: &[u8], at: usize, kind: u8, max: usize) -> Result<Option<(usize, usize)>, ProtocolError> {
    let rest = &buf[at + 1..];
    let what = || ProtocolError(format!("invalid {}", if kind == b'*' { "multibulk length" } else { "bulk length" }));
    // As Redis reads them (`string2ll`): no `+`, no leading zero, no `-0`.
    let negative = rest.first() == Some(&b'-');
    let start = usize::from(negative);
    let (mut i, mut n) = (start, 0u64);
    while let Some(d) = rest.get(i).filter(|d| d.is_ascii_digit()) {
        // Saturating: a number this large is over any limit, and refused below.
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        i += 1;
    }
    if i >= MAX_HEADER {
        return Err(ProtocolError("header line too long".into()));
    }
    if i + 2 > rest.len() {
        return match rest.get(i) {
            None | Some(b'\r') => Ok(None),
            Some(_) => Err(what()),
        };
    }
    if rest[i] != b'\r' || i == start || (rest[start] == b'0' && (i - start > 1 || negative)) {
        return Err(what());
    }
    if rest[i + 1] != b'\n' {
        return Err(ProtocolError("header not ended by CRLF".into()));
    }
    let data = at + 1 + i + 2;
    match (negative, n) {
        // `*-1` (a null array) carries no command; treat it like `*0`, and any other negative
        // count that `string2ll` reads as Redis does (`*-5` closed the connection here, found by
        // the hunt of 2026-12-07).
        (true, n) if kind == b'*' && n <= 1 << 63 => Ok(Some((0, data))),
        (true, _) => Err(what()),
        // Redis's words, then the limit: the client may show them to a person. The count as sent
        // (under MAX_HEADER digits): past u64 it was shown saturated, as 18446744073709551615
        // (found by a hunt, 2026-12-07).
        (false, n) if n > max as u64 => {
            let n = String::from_utf8_lossy(&rest[start..i]);
            Err(ProtocolError(match kind {
                b'*' => format!("invalid multibulk length ({n} arguments, at most {max})"),
                _ => format!("invalid bulk length ({n} bytes: a string is at most {max} bytes here)"),
            }))
        }
        (false, n) => Ok(Some((n as usize, data))),
    }
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Args>, ProtocolError> {
    let Some(nl) = buf.iter().take(limits.max_inline + 1).position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline {
            return Err(ProtocolError("too big inline request".into()));
        }
        return Ok(None);
    };
    let line = buf.split_to(nl + 1).freeze();
    let text = line.slice(..nl);
    let text = text.strip_suffix(b"\r").map_or(text.clone(), |t| text.slice(..t.len()));
    let args: Args = if text.iter().any(|&b| b == b'"' || b == b'\'') {
        split_quoted(&text)
            .ok_or_else(|| ProtocolError("unbalanced quotes in request".into()))?
            .into_iter()
            .map(Bytes::from)
            .collect()
    } else {
        text.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).map(|w| text.slice_ref(w)).collect()
    };
    if args.len() > limits.max_args {
        return Err(ProtocolError("too many arguments".into()));
    }
    Ok(Some(args))
}

/// An inline line's words as Redis splits them (`sdssplitargs`): `"…"` with the escapes `\xHH`,
/// `\n`, `\r`, `\t`, `\b`, `\a` and `\` before any other byte, `'…'` with `\'`, and a closing
/// quote followed by a space or the end; `None` for quotes that do not close so (Redis's
/// "unbalanced quotes"). A quote inside a word opens a quoted part of that word, as in Redis
/// (`SET in"l" v` names the key `inl`; it was `in"l"` until 2026-12-06, found by trying).
/// `SET "a b" 'it''s'` was three words too many before that morning.
fn split_quoted(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // What ends a word is what is skipped before one, as where the line has no quote: a byte
    // that ended a word but was not skipped (Redis's NUL) began an empty word forever.
    let space = |b: &u8| b.is_ascii_whitespace() || *b == 0x0b;
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(space) {
            i += 1;
        }
        if i == line.len() {
            return Some(words);
        }
        let mut word = Vec::new();
        while let Some(&b) = line.get(i).filter(|b| !space(b)) {
            let quoted = match b {
                b'"' => Some(double_quoted(line, i + 1, &mut word)?),
                b'\'' => Some(single_quoted(line, i + 1, &mut word)?),
                _ => None,
            };
            let Some(after) = quoted else {
                word.push(b);
                i += 1;
                continue;
            };
            // A closing quote must end the word.
            if line.get(after).is_some_and(|b| !space(b)) {
                return None;
            }
            i = after;
            break;
        }
        words.push(word);
    }
}

/// The bytes of a `"…"` part from `i` (after its opening quote) into `word`; where its closing
/// quote ends, or `None` without one.
fn double_quoted(line: &[u8], mut i: usize, word: &mut Vec<u8>) -> Option<usize> {
    let at = |i: usize| line.get(i).copied();
    loop {
        match (at(i)?, at(i + 1)) {
            (b'\\', Some(b'x'))
                if at(i + 2).is_some_and(|h| h.is_ascii_hexdigit())
                    && at(i + 3).is_some_and(|h| h.is_ascii_hexdigit()) =>
            {
                let hex = std::str::from_utf8(&line[i + 2..i + 4]).ok()?;
                word.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            (b'\\', Some(c)) => {
                word.push(match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                i += 2;
            }
            (b'"', _) => return Some(i + 1),
            (b, _) => {
                word.push(b);
                i += 1;
            }
        }
    }
}

/// [`double_quoted`] for a `'…'` part, where `\'` is the one escape.
fn single_quoted(line: &[u8], mut i: usize, word: &mut Vec<u8>) -> Option<usize> {
    loop {
        match (*line.get(i)?, line.get(i + 1)) {
            (b'\\', Some(b'\'')) => {
                word.push(b'\'');
                i += 2;
            }
            (b'\'', _) => return Some(i + 1),
            (b, _) => {
                word.push(b);
                i += 1;
            }
        }
    }
}

/// A reply, encoded as RESP2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(&'static str),
    /// The text after `-`: starts with an error code such as `ERR`.
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK")
    }

    pub fn err(text: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {text}"))
    }

    /// The bytes of the values it carries.
    pub fn value_bytes(&self) -> usize {
        match self {
            Reply::Bulk(b) => b.len(),
            Reply::Array(items) => items.iter().map(Reply::value_bytes).sum(),
            _ => 0,
        }
    }

    pub fn write(&self, out: &mut BytesMut) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            // An error text must stay on one line.
            Reply::Error(e) => line(out, b'-', e.replace(['\r', '\n'], " ").as_bytes()),
            Reply::Int(n) => line(out, b':', itoa::Buffer::new().format(*n).as_bytes()),
            Reply::Bulk(b) => {
                out.reserve(b.len() + 16);
                line(out, b'$', itoa::Buffer::new().format(b.len()).as_bytes());
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Reply::Nil => out.put_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                line(out, b'*', itoa::Buffer::new().format(items.len()).as_bytes());
                for item in items {
                    item.write(out);
                }
            }
        }
    }
}

fn line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.put_u8(kind);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

/// Drop the bytes of a connection that is being closed for a protocol error.
pub fn discard(buf: &mut BytesMut) {
    buf.advance(buf.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Redis's `string2ll`: `SELECT 00`, `SCAN 0 COUNT +5` and `CLIENT KILL ID 05` were
    /// taken here and refused by Redis (found by trying, 2026-12-06).
    #[test]
    fn integers_are_read_as_redis_reads_them() {
        for (arg, want) in [("0", Some(0)), ("7", Some(7)), ("-12", Some(-12)), ("9223372036854775807", Some(i64::MAX))]
        {
            assert_eq!(integer(arg.as_bytes()), want, "{arg}");
        }
        for loose in ["00", "05", "+5", "-0", " 5", "5 ", "", "-", "1e3", "9223372036854775808", "0x10"] {
            assert_eq!(integer(loose.as_bytes()), None, "{loose:?}");
        }
        assert_eq!(integer(b"-9223372036854775808"), Some(i64::MIN));
    }

    const L: Limits = Limits { max_bulk: 16, max_args: 4, max_inline: 32 };

    fn args(v: &[&str]) -> Args {
        v.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    #[test]
    fn inline_words_in_quotes_are_split_as_redis_splits_them() {
        let words = |line: &str| {
            split_quoted(line.as_bytes())
                .map(|w| w.into_iter().map(|w| String::from_utf8_lossy(&w).into_owned()).collect::<Vec<_>>())
        };
        assert_eq!(words(r#"SET "a b" 'c\'d'"#), Some(vec!["SET".into(), "a b".into(), "c'd".into()]));
        assert_eq!(words(r#"GET "\x41\n\q""#), Some(vec!["GET".into(), "A\nq".into()]));
        assert_eq!(words(r#"SET "" x"#), Some(vec!["SET".into(), "".into(), "x".into()]));
        // A quote inside a word opens a quoted part of it, as in Redis.
        assert_eq!(words(r#"SET in"l" x"y""#), Some(vec!["SET".into(), "inl".into(), "xy".into()]));
        assert_eq!(words(r#"SET k a"b c""#), Some(vec!["SET".into(), "k".into(), "ab c".into()]));
        assert_eq!(words("SET k a'b'\tz"), Some(vec!["SET".into(), "k".into(), "ab".into(), "z".into()]));
        assert_eq!(words("SET \0k\x0b'v'\x0c\0"), Some(vec!["SET".into(), "\0k".into(), "v".into(), "\0".into()]));
        for unbalanced in [r#"GET "open"#, r#"GET 'open"#, r#"GET "a"b"#, r#"GET "a\"#, r#"SET a"b c"#, r#"GET x"y"z"#]
        {
            assert_eq!(words(unbalanced), None, "{unbalanced}");
        }
        let mut buf = BytesMut::from(&b"SET \"a b\" v\r\nGET \"x\r\n"[..]);
        assert_eq!(parse(&mut buf, &L).unwrap().unwrap().len(), 3);
        assert!(parse(&mut buf, &L).unwrap_err().0.contains("unbalanced quotes"));
    }

    #[test]
    fn pipelined_arrays_and_inline_commands_come_out_one_by_one() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n  SET  a b \n*0\r\n*3\r\n$3\r\nSET"[..]);
        assert_eq!(parse(&mut buf, &L).unwrap(), Some(args(&["GET", "k"])));
        assert_eq!(parse(&mut buf, &L).unwrap(), Some(args(&["PING"])));
        assert_eq!(parse(&mut buf, &L).unwrap(), Some(args(&["SET", "a", "b"])));
        assert_eq!(parse(&mut buf, &L).unwrap(), Some(Args::new()));
        assert_eq!(parse(&mut buf, &L).unwrap(), None, "incomplete: wait for more");
        buf.extend_from_slice(b"\r\n$1\r\nk\r\n$2\r\n\r\n\r\n");
        assert_eq!(parse(&mut buf, &L).unwrap(), Some(args(&["SET", "k", "\r\n"])), "binary-safe bulk");
        assert!(buf.is_empty());
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more() {
        let frame = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
        for cut in 1..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(parse(&mut buf, &L).unwrap(), None, "prefix of {cut} bytes");
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn malformed_or_oversized_frames_are_errors_without_allocating() {
        for bad in [
            &b"*1\r\n$99999999999\r\n"[..],
            b"*1\r\n$17\r\n",
            b"*5\r\n",
            b"*-99999999999999999999\r\n",
            b"*x\r\n",
            b"*1\r\n+OK\r\n",
            b"*1\r\n$1\r\nab\r\n",
            b"*1\r\n$1\rx",
            b"*11111111111111111111111111111111111111\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(parse(&mut buf, &L).is_err(), "{:?}", bad.escape_ascii().to_string());
        }
        let mut long = BytesMut::from(&[b'a'; 40][..]);
        assert!(parse(&mut long, &L).is_err(), "inline line over the limit");
        let mut many = BytesMut::from(&b"a b c d e\r\n"[..]);
        assert!(parse(&mut many, &L).is_err());
    }

    #[test]
    fn a_bulk_string_on_its_way_is_announced_whole() {
        let big = Limits { max_bulk: 1 << 20, ..L };
        assert_eq!(announced(b"*2\r\n$3\r\nSET\r\n$1000\r\nxx", &big), Some(4 + 9 + 7 + 1000 + 2));
        assert_eq!(announced(b"*2\r\n$3\r\nSET\r\n", &big), Some(4 + 9), "the next header is not there yet");
        assert_eq!(announced(b"*2\r\n$3\r\nSE", &big), Some(4 + 9));
        assert_eq!(announced(b"GET k", &big), None, "inline");
        assert_eq!(announced(b"*2", &big), None);
        let mut whole = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n"[..]);
        assert_eq!(announced(&whole, &big), Some(whole.len()));
        assert!(parse(&mut whole, &big).unwrap().is_some());
    }

    #[test]
    fn headers_read_their_number_and_refuse_what_is_not_one() {
        let h = |text: &str| header(text.as_bytes(), 0, b'$', 100);
        assert_eq!(h("$0\r\n"), Ok(Some((0, 4))));
        assert_eq!(h("$42\r\nxx"), Ok(Some((42, 5))));
        assert_eq!(header(b"*-1\r\n", 0, b'*', 100), Ok(Some((0, 5))), "a null array");
        assert_eq!(header(b"*-5\r\n", 0, b'*', 100), Ok(Some((0, 5))), "no command, as in Redis");
        assert!(header(b"*-99999999999999999999\r\n", 0, b'*', 100).is_err(), "past what Redis reads");
        assert!(header(b"$-5\r\n", 0, b'$', 100).is_err(), "a bulk's length is refused");
        for more in ["$", "$1", "$12\r", "$-", "$0"] {
            assert_eq!(h(more), Ok(None), "{more:?} may go on");
        }
        for bad in [
            "$-1\r\n",
            "$101\r\n",
            "$1x\r\n",
            "$ 1\r\n",
            "$\r\n",
            "$-\r\n",
            "$--1\r\n",
            "$1\rx",
            "$99999999999999999999999\r\n",
            // As Redis reads numbers: no sign, no leading zero (found by trying, 2026-12-06).
            "$+7\r\n",
            "$+",
            "$-0\r\n",
            "$07\r\n",
            "$00\r\n",
        ] {
            assert!(h(bad).is_err(), "{bad:?}");
        }
        assert!(h(&format!("${}", "1".repeat(40))).is_err(), "a header line with no end in sight");
        // A count past u64 is shown as sent, not saturated.
        let err = header(b"*99999999999999999999\r\n", 0, b'*', 100).unwrap_err().0;
        assert!(err.contains("(99999999999999999999 arguments, at most 100)"), "{err}");
    }

    #[test]
    fn the_quick_header_reads_every_line_as_the_full_reader_does() {
        // Every line of up to five characters over digits, signs, CR, LF and a letter.
        let alphabet = b"019-+\r\nx";
        let (mut lines, mut longest): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (vec![Vec::new()], vec![Vec::new()]);
        for _ in 0..5 {
            longest = longest.iter().flat_map(|l| alphabet.iter().map(move |&c| [&l[..], &[c]].concat())).collect();
            lines.extend(longest.iter().cloned());
        }
        let digits = ["9".repeat(17), "9".repeat(18), "9".repeat(19), "1".repeat(20)];
        lines.extend(digits.iter().map(|d| format!("{d}\r\n").into_bytes()));
        for line in &lines {
            let text = [&b"$"[..], line].concat();
            for max in [0, 10, 100, usize::MAX] {
                let (quick, full) = (header(&text, 0, b'$', max), header_in_full(&text, 0, b'$', max));
                assert_eq!(quick, full, "{:?} within {max}", text.escape_ascii().to_string());
            }
        }
        assert!(lines.len() > 30_000, "{} lines", lines.len());
    }

    /// A command of 20 arguments `a0` to `a19`, as a frame, and its arguments.
    fn twenty_arguments() -> (String, Vec<String>) {
        let words: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
        let mut frame = format!("*{}\r\n", words.len());
        for w in &words {
            frame += &format!("${}\r\n{w}\r\n", w.len());
        }
        (frame, words)
    }

    #[test]
    fn commands_with_many_arguments_keep_them_all_in_order() {
        let big = Limits { max_bulk: 16, max_args: 64, max_inline: 32 };
        let (frame, words) = twenty_arguments();
        let mut buf = BytesMut::from(frame.as_bytes());
        let want: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(parse(&mut buf, &big).unwrap(), Some(args(&want)));
    }

    /// Fed a byte at a time, a command of many arguments parses where the last read stopped,
    /// and comes out the same; so does the room it announces; a bad byte after a resumed part
    /// is still an error, and leaves nothing to resume.
    #[test]
    fn a_long_command_arriving_in_pieces_is_parsed_on_from_where_it_stopped() {
        let big = Limits { max_bulk: 16, max_args: 64, max_inline: 32 };
        let (frame, words) = twenty_arguments();
        let want: Vec<&str> = words.iter().map(String::as_str).collect();
        let mut buf = BytesMut::new();
        let mut resume = Resume::default();
        for (i, &b) in frame.as_bytes().iter().enumerate() {
            buf.extend_from_slice(&[b]);
            assert_eq!(announced_from(&buf, &big, &resume), announced(&buf, &big), "after {} bytes", i + 1);
            let got = parse_resuming(&mut buf, &big, &mut resume).unwrap();
            if i + 1 < frame.len() {
                assert_eq!(got, None, "after {} bytes", i + 1);
            } else {
                assert_eq!(got, Some(args(&want)));
            }
        }
        assert!(buf.is_empty() && resume.count == 0);
        let cut = frame.find("$2\r\na5").expect("the sixth argument");
        let mut buf = BytesMut::from(&frame.as_bytes()[..cut + 3]);
        assert_eq!(parse_resuming(&mut buf, &big, &mut resume).unwrap(), None);
        assert!(resume.count == 20 && resume.spans.len() == 5, "{resume:?}");
        buf.extend_from_slice(b"xx\r\n");
        assert!(parse_resuming(&mut buf, &big, &mut resume).is_err(), "a bulk string not ended by CRLF");
        assert_eq!(resume.count, 0);
    }

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = BytesMut::new();
        Reply::Array(vec![Reply::ok(), Reply::Int(-3), Reply::Bulk(Bytes::from_static(b"v")), Reply::Nil])
            .write(&mut out);
        Reply::err("bad\r\nthing").write(&mut out);
        assert_eq!(&out[..], b"*4\r\n+OK\r\n:-3\r\n$1\r\nv\r\n$-1\r\n-ERR bad  thing\r\n");
    }
}
