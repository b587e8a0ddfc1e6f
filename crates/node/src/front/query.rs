//! Parsing the `key` query parameter. Keys are arbitrary bytes, so they are percent-decoded to
//! bytes, not to a `String` (form encoding: `+` is a space).

use bytes::Bytes;
use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::NodeError;
use crate::replication::consistency::Level;

/// Bytes left as they are in a key parameter; everything else is percent-encoded.
const KEY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `key` as the value of a `key=` query parameter.
pub fn encode_key(key: &[u8]) -> String {
    percent_encode(key, KEY_ESCAPE).to_string()
}

pub fn key(query: Option<&str>, max: usize) -> Result<Bytes, NodeError> {
    let raw = param(query.unwrap_or(""), "key")
        .ok_or_else(|| NodeError::BadRequest("missing key: add ?key=<url-encoded key>".into()))?;
    let key: Vec<u8> = if raw.contains('+') {
        percent_decode(raw.replace('+', " ").as_bytes()).collect()
    } else {
        percent_decode(raw.as_bytes()).collect()
    };
    if key.is_empty() {
        return Err(NodeError::BadRequest("empty key: keys must be at least one byte".into()));
    }
    if key.len() > max {
        return Err(NodeError::TooLarge(format!("key of {} bytes is over the limit of {max} bytes", key.len())));
    }
    Ok(Bytes::from(key))
}

/// The consistency level in parameter `name` (`w` or `r`), if given.
pub fn level(query: Option<&str>, name: &str) -> Result<Option<Level>, NodeError> {
    param(query.unwrap_or(""), name).map(|v| Level::parse(v, name)).transpose()
}

/// The raw (still encoded) value of the first `name=` parameter.
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bytes_and_rejects_bad_keys() {
        assert_eq!(key(Some("key=user_123"), 10).unwrap(), Bytes::from_static(b"user_123"));
        assert_eq!(key(Some("x=1&key=a%20b+c%FF"), 10).unwrap(), Bytes::from_static(b"a b c\xff"));
        assert!(matches!(key(None, 10), Err(NodeError::BadRequest(_))));
        assert!(matches!(key(Some("keys=a"), 10), Err(NodeError::BadRequest(_))));
        assert!(matches!(key(Some("key="), 10), Err(NodeError::BadRequest(_))));
        assert!(matches!(key(Some("key"), 10), Err(NodeError::BadRequest(_))));
        assert!(matches!(key(Some("key=abcdefghijk"), 10), Err(NodeError::TooLarge(_))));
    }
}
