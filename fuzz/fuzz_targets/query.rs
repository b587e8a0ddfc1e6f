//! The HTTP API's query-string parsing (`dkv_node::front::query`): `parse` for a route and the
//! parameters it takes, then the `key` (percent-encoded bytes, `+` for a space) and the
//! consistency levels `w=` and `r=`.
//!
//! Input: one byte that picks the route and the key size limit, then a query string (inputs that
//! are not UTF-8 are used as a key's raw bytes only). Asserts, beyond "no panic":
//! * every failure is the client's (400, or 413 for a key over the limit), never a server error;
//! * a query that parses names only parameters the route takes, each at most once;
//! * a key that parses is 1 to `max` bytes, a level that parses is a valid one;
//! * what parsed, written back the way `dkv` and HTTP clients write it (`encode_key`, a level's
//!   canonical spelling), parses to the same key and level: the query round-trips;
//! * any byte string of a valid size, encoded with `encode_key`, parses back to itself, and its
//!   encoding holds only unreserved characters and `%XX`.

#![no_main]

use bytes::Bytes;
use dkv_node::error::NodeError;
use dkv_node::front::query;
use dkv_node::replication::consistency::Level;
use libfuzzer_sys::fuzz_target;

/// Routes as `front/http.rs` declares them: the path and the parameters it takes.
const ROUTES: [(&str, &[&str]); 4] =
    [("/kv", &["key", "r"]), ("/kv", &["key", "w"]), ("/admin", &[]), ("/any", &["key", "w", "r"])];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let max = [1, 8, 1024, 64 * 1024][pick as usize & 3];
    let (path, accepted) = ROUTES[(pick >> 2) as usize & 3];

    key_round_trips(rest, max);
    let Ok(q) = std::str::from_utf8(rest) else { return };
    let mut params = match query::parse(Some(q), path, accepted) {
        Ok(params) => params,
        Err(NodeError::BadRequest(_)) => return,
        Err(e) => panic!("{q:?} failed with more than a bad request: {e:?}"),
    };
    names_only_accepted_once(q, accepted);

    let key = match params.key(max) {
        Ok(key) => {
            assert!(!key.is_empty() && key.len() <= max, "key of {} bytes, limit {max}", key.len());
            Some(key)
        }
        Err(NodeError::BadRequest(_) | NodeError::TooLarge(_)) => None,
        Err(e) => panic!("{q:?}: the key failed with a server-side error: {e:?}"),
    };
    let mut levels = Vec::new();
    for name in accepted.iter().filter(|n| **n == "w" || **n == "r") {
        match params.level(name) {
            Ok(Some(level)) => levels.push((*name, level)),
            Ok(None) | Err(NodeError::BadRequest(_)) => {}
            Err(e) => panic!("{q:?}: {name} failed with more than a bad request: {e:?}"),
        }
    }
    round_trips(key, &levels, max, path, accepted);
});

/// Check against a plain reading of the query: a name written without any encoding is one the
/// route takes, and appears once.
fn names_only_accepted_once(q: &str, accepted: &[&str]) {
    let names: Vec<&str> =
        q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').map_or(p, |(n, _)| n)).collect();
    for name in names.iter().filter(|n| !n.contains(['%', '+'])) {
        assert!(accepted.contains(name), "{q:?} parsed with parameter {name:?}, not one of {accepted:?}");
        assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{q:?} parsed with {name:?} twice");
    }
}

/// The parsed key and levels, written canonically, parse to themselves.
fn round_trips(key: Option<Bytes>, levels: &[(&str, Level)], max: usize, path: &str, accepted: &[&'static str]) {
    let mut pairs: Vec<String> = levels.iter().map(|(name, level)| format!("{name}={}", spelled(*level))).collect();
    if let Some(key) = &key {
        pairs.push(format!("key={}", query::encode_key(key)));
    }
    let q = pairs.join("&");
    let mut params = query::parse(Some(&q), path, accepted).unwrap_or_else(|e| panic!("{q:?} refused: {e:?}"));
    if let Some(key) = key {
        assert_eq!(params.key(max).ok(), Some(key), "{q:?} parsed to another key");
    }
    for (name, level) in levels {
        assert_eq!(params.level(name).ok(), Some(Some(*level)), "{q:?} parsed to another {name}");
    }
}

fn spelled(level: Level) -> String {
    match level {
        Level::One => "one".into(),
        Level::Quorum => "quorum".into(),
        Level::All => "all".into(),
        Level::Count(k) => {
            assert!(k >= 1, "a count level of {k} parsed");
            k.to_string()
        }
    }
}

/// `key=<encode_key(key)>` parses to `key`, for any key of a valid size.
fn key_round_trips(key: &[u8], max: usize) {
    let encoded = query::encode_key(key);
    assert!(
        encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)),
        "encode_key wrote a reserved character: {encoded:?}"
    );
    let q = format!("key={encoded}");
    match query::parse(Some(&q), "/kv", &["key"]).and_then(|mut p| p.key(max)) {
        Ok(back) => assert_eq!(&back[..], key, "{q:?} parsed to another key"),
        Err(NodeError::BadRequest(_)) if key.is_empty() => {}
        Err(NodeError::TooLarge(_)) if key.len() > max => {}
        Err(e) => panic!("{q:?}, the encoding of a valid key, is refused: {e:?}"),
    }
}
