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
            return Err(NodeError::BadRequest(format!(
                "unknown parameter {:?}: {path} takes {takes}",
                String::from_utf8_lossy(&name)
            )));
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

    /// The consistency level in parameter `name` (`w` or `r`), if given.
    pub fn level(&self, name: &str) -> Result<Option<Level>, NodeError> {
        self.get(name).map(|v| Level::parse(&String::from_utf8_lossy(v), name)).transpose()
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
        let m = bad_request(parse(Some("verbose"), "/health", &[]));
        assert!(m.contains("/health takes no parameters"), "{m}");
        assert!(parse(Some(""), "/health", &[]).is_ok());
        assert!(parse(None, "/health", &[]).is_ok());
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
    fn encoded_keys_decode_to_themselves() {
        let key: Vec<u8> = (0..=255u8).collect();
        let q = format!("key={}", encode_key(&key));
        assert_eq!(parse(Some(&q), "/get", &["key", "r"]).unwrap().key(1000).unwrap(), Bytes::from(key));
    }
}
