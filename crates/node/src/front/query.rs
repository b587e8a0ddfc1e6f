//! Parsing a request's query string. Keys are arbitrary bytes, so values are percent-decoded to
//! bytes, not to a `String` (form encoding: `+` is a space).
//!
//! Parsing is strict, because a lenient parser turns a client's mistake into a silent wrong
//! answer: `key=a&key=b` would read `a`, `wr=all` would write with the default quorum, and `%ZZ`
//! would be taken as three literal bytes. So every route names the parameters it takes, and a
//! parameter it does not take, one given twice, or an invalid percent-encoding is a `400` that
//! says which.

use bytes::Bytes;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::NodeError;
use crate::replication::consistency::Level;

/// Bytes left as they are in a key parameter; everything else is percent-encoded.
const KEY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `key` as the value of a `key=` query parameter.
pub fn encode_key(key: &[u8]) -> String {
    percent_encode(key, KEY_ESCAPE).to_string()
}

/// The decoded parameters of one request: each one the route takes, each at most once.
#[derive(Debug, Default)]
pub struct Params {
    given: Vec<(&'static str, Vec<u8>)>,
}

/// A value from the request as an error shows it: quoted, and past [`SHOWN`] bytes cut, saying
/// how long it was (a 60 KB parameter made a 60 KB error line: found by a hunt, 2026-12-07).
pub fn shown(raw: &[u8]) -> String {
    // Cut before a UTF-8 character that would not fit whole (its continuation bytes are 10xxxxxx).
    let mut cut = raw.len().min(SHOWN);
    while cut < raw.len() && cut > 0 && raw[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    let text = String::from_utf8_lossy(&raw[..cut]);
    match raw.len() > SHOWN {
        true => format!("{text:?}… ({} bytes)", raw.len()),
        false => format!("{text:?}"),
    }
}

/// The most of a request's value an error shows.
const SHOWN: usize = 64;

/// Parse `query` for the route `path`, which takes the parameters `accepted`.
pub fn parse(query: Option<&str>, path: &str, accepted: &[&'static str]) -> Result<Params, NodeError> {
    let mut params = Params::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(raw_name, "a parameter name")?;
        let Some(&known) = accepted.iter().find(|a| a.as_bytes() == name.as_slice()) else {
            let takes = match accepted {
                [] => "no parameters".to_string(),
                _ => format!("only {}", accepted.join(", ")),
            };
            return Err(NodeError::BadRequest(format!("unknown parameter {}: {path} takes {takes}", shown(&name))));
        };
        if params.get(known).is_some() {
            return Err(NodeError::BadRequest(format!("parameter {known} given twice: give it once")));
        }
        params.given.push((known, decode(raw_value, known)?));
    }
    Ok(params)
}

impl Params {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.given.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_slice())
    }

    /// The `key` parameter (taken out): present, not empty, at most `max` bytes.
    pub fn key(&mut self, max: usize) -> Result<Bytes, NodeError> {
        let key = self.given.iter_mut().find(|(n, _)| *n == "key").map(|(_, v)| std::mem::take(v));
        let key = key.ok_or_else(|| NodeError::BadRequest("missing key: add ?key=<url-encoded key>".into()))?;
        if key.is_empty() {
            return Err(NodeError::BadRequest("empty key: keys must be at least one byte".into()));
        }
        if key.len() > max {
            return Err(NodeError::TooLarge(format!("key of {} bytes is over the limit of {max} bytes", key.len())));
        }
        Ok(Bytes::from(key))
    }

    /// The `ready` parameter of `/health`: `1` or `true` asks whether the node serves clients,
    /// not only whether it is a normal member; `0`, `false` or none does not.
    pub fn ready(&self) -> Result<bool, NodeError> {
        match self.get("ready") {
            None | Some(b"0" | b"false") => Ok(false),
            Some(b"1" | b"true") => Ok(true),
            Some(other) => Err(NodeError::BadRequest(format!(
                "bad ready {}: give ready=1 (or true), or ready=0 (or false), or leave it out",
                shown(other)
            ))),
        }
    }

    /// The `ttl` parameter in milliseconds, if given: whole numbers of `ms`, `s`, `m`, `h` or `d`,
    /// such as `10s`, `500ms`, `1h` or `1h 30m` (see [`ttl_ms`]).
    pub fn ttl(&self) -> Result<Option<u64>, NodeError> {
        let Some(raw) = self.get("ttl") else { return Ok(None) };
        ttl_ms(raw).map(Some).map_err(|why| {
            NodeError::BadRequest(format!(
                "bad ttl {}: {why}; write a duration like 10s, 500ms, 1h or 1h 30m (units ms, s, m, h, d)",
                shown(raw)
            ))
        })
    }

    /// The raw bytes of parameter `name`, if given (a key prefix, a pattern).
    pub fn bytes(&self, name: &str) -> Option<Bytes> {
        self.get(name).map(Bytes::copy_from_slice)
    }

    /// Parameter `name` as a decimal number from `min` to `max`, if given.
    pub fn number(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, NodeError> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        // Digits only, with no leading zero: `parse` would also take `+5` and `05` (found by a
        // hunt, 2026-12-07, as `w=` and `r=` refuse them).
        let digits = !raw.is_empty() && raw.iter().all(u8::is_ascii_digit) && (raw.len() == 1 || raw[0] != b'0');
        match String::from_utf8_lossy(raw).parse::<u64>() {
            Ok(n) if digits && (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(NodeError::BadRequest(format!(
                "{name}= must be a whole number from {min} to {max}, with no leading zero; got {}",
                shown(raw)
            ))),
        }
    }

    /// The consistency level in parameter `name` (`w` or `r`), if given.
    pub fn level(&self, name: &str) -> Result<Option<Level>, NodeError> {
        self.get(name).map(|v| Level::parse(&String::from_utf8_lossy(v), name)).transpose()
    }
}

/// A TTL as `PUT /put` takes it, in milliseconds: parts of a number and a unit (`ms`, `s`, `m`,
/// `h`, `d`), one space or none between them, 64 characters at most. A number has no leading
/// zero and at most 15, 12, 10, 9 or 8 digits for those units, so a TTL is at least 1 ms and a
/// deadline always fits in 63 bits. This is exactly what the pattern of `ttl` in `openapi.json`
/// says, so a client can check a TTL before sending it (the CLI's `--ttl` is read by it too).
pub fn ttl_ms(text: &[u8]) -> Result<u64, &'static str> {
    if text.is_empty() {
        return Err("it is empty");
    }
    if text.len() > 64 {
        return Err("it is over 64 characters");
    }
    let (mut total, mut i) = (0u64, 0);
    loop {
        let digits = i;
        while text.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let number = &text[digits..i];
        let unit = i;
        while text.get(i).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
        }
        if number.is_empty() {
            return Err("each part is a number and a unit");
        }
        // Said apart, so a client learns which rule it broke (found by trying, 2026-12-06: `1h 0m`
        // and `99999999999999999ms` got the same words as `ten`).
        let (ms, max_digits, too_long) = match &text[unit..i] {
            b"ms" => (1, 15, "a part is at most 999999999999999ms"),
            b"s" => (1_000, 12, "a part is at most 999999999999s"),
            b"m" => (60_000, 10, "a part is at most 9999999999m"),
            b"h" => (3_600_000, 9, "a part is at most 999999999h"),
            b"d" => (86_400_000, 8, "a part is at most 99999999d"),
            // `1.5s`: the part after the point would be read as a number without its unit.
            b"" if text.get(i) == Some(&b'.') => return Err("a part is a whole number: write 1500ms, not 1.5s"),
            b"" => return Err("a number needs a unit"),
            _ => return Err("the units are ms, s, m, h and d, in lower case"),
        };
        if number[0] == b'0' {
            return Err("a part starts with a digit from 1: no zero parts, no leading zeros (1h 0m is 1h)");
        }
        if number.len() > max_digits {
            return Err(too_long);
        }
        let n: u64 = std::str::from_utf8(number).ok().and_then(|n| n.parse().ok()).ok_or("a number is digits")?;
        total = n.checked_mul(ms).and_then(|p| total.checked_add(p)).ok_or("it is too long")?;
        match text.get(i) {
            None => return Ok(total),
            Some(b' ') if text.get(i + 1).is_some_and(u8::is_ascii_digit) => i += 1,
            Some(c) if c.is_ascii_digit() => {}
            Some(_) => return Err("parts are separated by one space or none"),
        }
    }
}

/// Form decoding: `+` is a space and `%XX` a byte; a `%` not followed by two hex digits is an
/// error rather than a literal, so a client that forgot to encode one learns it.
fn decode(raw: &str, what: &str) -> Result<Vec<u8>, NodeError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                    let bad: String = raw[i..].chars().take(3).collect();
                    return Err(NodeError::BadRequest(format!(
                        "invalid percent-encoding {bad:?} in {what}: % must be followed by two hex digits (write a literal % as %25)"
                    )));
                };
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUT: &[&str] = &["key", "w"];

    fn key(query: Option<&str>, max: usize) -> Result<Bytes, NodeError> {
        parse(query, "/put", PUT)?.key(max)
    }

    fn bad_request(r: Result<impl std::fmt::Debug, NodeError>) -> String {
        match r {
            Err(NodeError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn decodes_bytes_and_rejects_bad_keys() {
        assert_eq!(key(Some("key=user_123"), 10).unwrap(), Bytes::from_static(b"user_123"));
        assert_eq!(key(Some("w=1&key=a%20b+c%FF"), 10).unwrap(), Bytes::from_static(b"a b c\xff"));
        assert_eq!(key(Some("k%65y=a%2b"), 10).unwrap(), Bytes::from_static(b"a+"), "names are decoded too");
        assert_eq!(key(Some("&key=a&"), 10).unwrap(), Bytes::from_static(b"a"), "empty pairs are ignored");
        assert!(matches!(key(None, 10), Err(NodeError::BadRequest(_))));
        assert!(matches!(key(Some("key="), 10), Err(NodeError::BadRequest(_))));
        assert!(matches!(key(Some("key"), 10), Err(NodeError::BadRequest(_))));
        assert!(matches!(key(Some("key=abcdefghijk"), 10), Err(NodeError::TooLarge(_))));
    }

    #[test]
    fn ready_is_one_or_true_or_left_out() {
        let ready = |q| parse(Some(q), "/health", &["ready"]).and_then(|p| p.ready());
        assert!(ready("ready=1").unwrap() && ready("ready=true").unwrap());
        assert!(!ready("").unwrap() && !ready("ready=0").unwrap() && !ready("ready=false").unwrap());
        let m = bad_request(ready("ready=yes"));
        assert!(m.contains("bad ready \"yes\": give ready=1"), "{m}");
        assert!(bad_request(ready("ready")).contains("bad ready \"\""), "a bare name is not a yes");
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        assert!(bad_request(key(Some("key=a&key=b"), 10)).contains("key given twice"));
        assert!(bad_request(key(Some("key=a&w=1&w=all"), 10)).contains("w given twice"));
        assert!(bad_request(key(Some("key=a&k%65y=a"), 10)).contains("key given twice"));
    }

    #[test]
    fn an_unknown_parameter_is_refused_with_what_the_route_takes() {
        let m = bad_request(key(Some("key=a&wr=all"), 10));
        assert!(m.contains("\"wr\"") && m.contains("/put takes only key, w"), "{m}");
        assert!(bad_request(key(Some("keys=a"), 10)).contains("unknown parameter"));
        assert!(bad_request(parse(Some("key=a&r=1"), "/put", PUT)).contains("\"r\""), "r is for reads");
        let m = bad_request(parse(Some("verbose"), "/cluster", &[]));
        assert!(m.contains("/cluster takes no parameters"), "{m}");
        assert!(parse(Some(""), "/cluster", &[]).is_ok());
        assert!(parse(None, "/cluster", &[]).is_ok());
    }

    #[test]
    fn an_invalid_percent_encoding_is_refused() {
        for q in ["key=%ZZ", "key=a%", "key=a%4", "key=%4g", "k%y=a", "key=a&w=%"] {
            let m = bad_request(key(Some(q), 10));
            assert!(m.contains("percent-encoding"), "{q}: {m}");
        }
        assert!(bad_request(key(Some("key=%ZZ"), 10)).contains("\"%ZZ\""));
    }

    #[test]
    fn levels_are_decoded_and_parsed() {
        let p = parse(Some("key=a&w=%61ll"), "/put", PUT).unwrap();
        assert_eq!(p.level("w").unwrap(), Some(Level::All));
        assert_eq!(parse(Some("key=a"), "/put", PUT).unwrap().level("w").unwrap(), None);
        assert!(parse(Some("w=most"), "/put", PUT).unwrap().level("w").is_err());
    }

    #[test]
    fn ttls_are_durations_of_a_millisecond_or_more() {
        let ttl = |q: &str| parse(Some(q), "/put", &["key", "w", "ttl"]).unwrap().ttl();
        assert_eq!(ttl("key=a").unwrap(), None);
        assert_eq!(ttl("key=a&ttl=10s").unwrap(), Some(10_000));
        assert_eq!(ttl("key=a&ttl=500ms").unwrap(), Some(500));
        assert_eq!(ttl("key=a&ttl=1h+30m").unwrap(), Some(5_400_000), "+ is a space");
        assert_eq!(ttl("key=a&ttl=1d2h3m4s5ms").unwrap(), Some(93_784_005));
        assert_eq!(ttl("key=a&ttl=999999999999999ms").unwrap(), Some(999_999_999_999_999));
        assert_eq!(ttl("key=a&ttl=99999999d").unwrap(), Some(99_999_999 * 86_400_000));
        let bad = "10|ten|-5s||0s|05s|10us|1M|1h++30m|+1h|1h+|1.5s|1000000000000000ms|100000000d|1S|1%0A|1s%20";
        for bad in bad.split('|') {
            let m = bad_request(ttl(&format!("key=a&ttl={bad}")));
            assert!(m.contains("ttl") && !m.contains('\n'), "{bad}: {m}");
        }
        let long = format!("key=a&ttl={}", ["1s"; 33].join("+"));
        assert!(bad_request(ttl(&long)).contains("bad ttl"), "over 64 characters");
        assert!(bad_request(ttl("key=a&ttl=10")).contains("write a duration like 10s"));
        for (bad, says) in [
            ("10", "needs a unit"),
            ("1.5s", "write 1500ms, not 1.5s"),
            ("1h+0m", "no zero parts"),
            ("01s", "leading zeros"),
            ("1000000000000000ms", "at most 999999999999999ms"),
            ("100000000d", "at most 99999999d"),
            ("10us", "units are ms"),
            ("1h++30m", "one space or none"),
            ("", "empty"),
        ] {
            let m = bad_request(ttl(&format!("key=a&ttl={bad}")));
            assert!(m.contains(says), "{bad}: {m}");
        }
        assert!(bad_request(parse(Some("key=a&ttl=1s"), "/get", &["key", "r"])).contains("\"ttl\""));
    }

    /// The grammar is the one openapi.json's pattern for `ttl` gives clients.
    #[test]
    fn the_ttl_grammar_is_the_described_pattern() {
        let spec: serde_json::Value = serde_json::from_str(crate::front::openapi::SPEC).unwrap();
        let schema = &spec["components"]["parameters"]["ttl"]["schema"];
        let part = r"([1-9][0-9]{0,14}ms|[1-9][0-9]{0,11}s|[1-9][0-9]{0,9}m|[1-9][0-9]{0,8}h|[1-9][0-9]{0,7}d)";
        assert_eq!(schema["pattern"], format!("^{part}( ?{part})*$"));
        assert_eq!(schema["maxLength"], 64);
    }

    #[test]
    fn numbers_are_decimal_and_in_range() {
        let p =
            parse(Some("count=10&cursor=18446744073709551615&prefix=a%FF"), "/scan", &["count", "cursor", "prefix"])
                .unwrap();
        assert_eq!(p.number("count", 1, 100).unwrap(), Some(10));
        assert_eq!(p.number("cursor", 0, u64::MAX).unwrap(), Some(u64::MAX));
        assert_eq!(p.number("other", 0, 1).unwrap(), None);
        assert_eq!(p.bytes("prefix").as_deref(), Some(&b"a\xff"[..]));
        for bad in ["count=0", "count=101", "count=-1", "count=ten", "count=", "count=%2B5", "count=1.0", "count=05"] {
            let m = bad_request(parse(Some(bad), "/scan", &["count"]).unwrap().number("count", 1, 100));
            assert!(m.contains("count= must be a whole number from 1 to 100"), "{bad}: {m}");
        }
        assert_eq!(parse(Some("cursor=0"), "/scan", &["cursor"]).unwrap().number("cursor", 0, 9).unwrap(), Some(0));
        // A long value is shown cut, with its length.
        let long = format!("count={}", "9".repeat(5000));
        let m = bad_request(parse(Some(&long), "/scan", &["count"]).unwrap().number("count", 1, 100));
        assert!(m.ends_with(&format!("got \"{}\"… (5000 bytes)", "9".repeat(SHOWN))), "{m}");
    }

    #[test]
    fn encoded_keys_decode_to_themselves() {
        let key: Vec<u8> = (0..=255u8).collect();
        let q = format!("key={}", encode_key(&key));
        assert_eq!(parse(Some(&q), "/get", &["key", "r"]).unwrap().key(1000).unwrap(), Bytes::from(key));
    }
}
