//! The value parsers of the command line's flags: each checks a value and says what to write
//! instead, before anything starts (a duration below its floor, a size past its ceiling, a URL
//! with a query a command would append to, a secret with a trailing newline).

use std::time::Duration;

/// A `--watch` interval: a duration of at least 100 ms, so a refresh never runs back to back.
pub fn at_least_100ms(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s} is shorter than 100ms"));
    }
    Ok(d)
}

pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}: write durations like 200ms, 5s or 1m"))
}

/// A duration a process waits between steps or for an answer: at least 10 ms. `0s` made a
/// heartbeat loop spin on a core, every peer call fail at once ("no connection within 0 ms"), or a
/// leave end before it began (found by trying, 2026-12-06).
pub fn at_least_10ms(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(10) {
        return Err(format!("{s} is shorter than 10ms: give a duration like 100ms, 5s or 1m"));
    }
    Ok(d)
}

/// A count that must be at least one (`--limit 0` listed no member and said nothing of it).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("0 lists nothing: give at least 1, or --all".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// A RESP `--idle-timeout`: 0 (never), or at least a second, as Redis's `timeout` counts in
/// seconds. `1ms` was taken, and closed every client between two commands (found by trying,
/// 2026-12-06).
pub fn idle_timeout(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() || d >= Duration::from_secs(1) => Ok(d),
        _ => Err(format!("{s} is shorter than a second: give 0s (never) or a duration like 300s or 10m")),
    }
}

/// A seed's `--node-ttl`: at least 100 ms, the shortest heartbeat interval worth running under it.
pub fn node_ttl(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s} is shorter than 100ms: a node must heartbeat several times within it (default 15s)"));
    }
    Ok(d)
}

/// A key's `--ttl`: whole milliseconds, the node's unit, and at least one (`500us` became `0ms`
/// on the wire, and the node's refusal quoted a value the user never typed).
pub fn key_ttl(s: &str) -> Result<Duration, String> {
    // The node's own grammar (`ttl=` of `PUT /put`): `1.5s`, `1min` or `1y` were taken here
    // and refused over HTTP (found by a hunt, 2026-12-07).
    let ms = dkv_node::front::query::ttl_ms(s.as_bytes()).map_err(|why| {
        format!("{s:?} is not a TTL: {why}; write a duration like 10s, 500ms, 1h or 1h 30m (units ms, s, m, h, d)")
    })?;
    // Whatever a node takes: the client sends it in parts of at most MAX_TTL_DAYS days
    // (`client::ttl_text`), as a node reads them (a cap of 99999999d here refused `99999999d 24h`,
    // which a node takes: found by a hunt, 2026-12-07).
    Ok(Duration::from_millis(ms))
}

/// The most days a node takes in one part of a TTL (8 digits, `front/query.rs`); a TTL may have
/// several such parts.
pub const MAX_TTL_DAYS: u64 = 99_999_999;

/// A `--busy-poll` window: a duration of at most a second (a longer one keeps a core busy long
/// after the requests stopped, for no request's gain).
pub fn busy_poll_window(s: &str) -> Result<Duration, String> {
    let window = duration(s)?;
    if window > Duration::from_secs(1) {
        return Err(format!("{s} is longer than 1s: a busy-poll window is microseconds to milliseconds, e.g. 50us"));
    }
    Ok(window)
}

/// A cluster secret: printable ASCII, since it travels in an HTTP header (`x-dkv-secret`). One
/// with a control character (a trailing newline from `echo` into a file) was dropped from every
/// call to the seed, which then refused them all with a 403 that did not say why.
pub fn cluster_secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an empty cluster secret: give a non-empty one, or none".into());
    }
    if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "the cluster secret holds {c:?}: it must be printable ASCII (it travels in an HTTP header); \
             a trailing newline from `echo` into a file is the usual cause"
        ));
    }
    if s.trim() != s {
        // HTTP trims a header's value: the seed read another secret than the one given.
        return Err("the cluster secret begins or ends with a space: HTTP drops those from the header it travels in; \
                    give one without"
            .into());
    }
    Ok(s.to_string())
}

/// [`cluster_secret`] as clap's parser, whose error leaves the value out: clap's own says
/// `invalid value '<value>'`, and a secret refused at start went whole into the logs.
#[derive(Clone)]
pub struct SecretParser;

impl clap::builder::TypedValueParser for SecretParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refused = |why: String| {
            let text = format!("--cluster-secret (DKV_CLUSTER_SECRET) refused, its value not shown: {why}\n");
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, text).with_cmd(cmd)
        };
        let s = value.to_str().ok_or_else(|| refused("it is not UTF-8: it must be printable ASCII".into()))?;
        cluster_secret(s).map_err(refused)
    }
}

pub fn byte_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("{s:?} is not a size: write e.g. 8192, 8KiB or 16MiB"))?;
    // Units in any case, each a power of two (`1kB` was refused where `1KB` was taken, found by
    // trying, 2026-12-06): 8k, 8kb, 8KB and 8KiB are all 8 192 bytes.
    if unit.starts_with('.') {
        return Err(format!("{s:?} is not a size: a size is a whole number, as 1536 or 1536B for 1.5KiB"));
    }
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" | "kb" => 1 << 10,
        "mib" | "m" | "mb" => 1 << 20,
        "gib" | "g" | "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size unit {:?}: use B, K (KB, KiB), M (MB, MiB) or G (GB, GiB), each a power of two",
                unit.trim()
            ))
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s} is too large"))
}

/// A size that must hold at least a byte (`--max-value-size 0` refused every value but the empty one).
pub fn positive_size(s: &str) -> Result<usize, String> {
    match byte_size(s)? {
        0 => Err(format!("{s}: give at least 1 byte")),
        n => Ok(n),
    }
}

/// A `--move-rate`: 0 (no limit) or at least 64 KiB/s. `1` (a byte a second, for `1MiB`) let a join
/// copy its first batch and then stay at 100% for days, joining.
pub fn move_rate(s: &str) -> Result<usize, String> {
    // A rate may say so: `50MiB/s` (refused as an unknown unit, found by trying, 2026-12-06).
    let per_second = match s.len().checked_sub(2).filter(|&i| s.is_char_boundary(i)) {
        Some(i) if s[i..].eq_ignore_ascii_case("/s") => &s[..i],
        _ => s,
    };
    match byte_size(per_second)? {
        n @ 1..65_536 => Err(format!("{s} is {n} bytes a second: give 0 (no limit) or at least 64KiB, e.g. 50MiB")),
        n => Ok(n),
    }
}

/// A `host:port` other processes dial: a port from 1 to 65535, a host without spaces or slashes.
pub fn host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} has no port: give host:port, e.g. 10.0.0.5:9000"));
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{s:?}: the port is a number from 1 to 65535"));
    }
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(format!("{s:?}: give the host as a name or an address, e.g. 10.0.0.5:9000"));
    }
    Ok(())
}

/// A client's `--node`: `http://` or `https://` with a host and, if given, a port from 1 to
/// 65535, or a bare `host:port` (taken as `http://`). Anything else was dialed as it came: an
/// `ftp://` URL over HTTP, port 99999 as a refused connection (found by trying, 2026-12-06).
pub fn node_url(s: &str) -> Result<String, String> {
    server_url(s, "node", "e.g. http://127.0.0.1:8080")
}

/// `dkv remove --seed`: as [`node_url`], for the seed (it took `ftp://` as `http://`, and a bare
/// host as port 80, until 2026-12-06).
pub fn seed_url(s: &str) -> Result<String, String> {
    server_url(s, "seed", "e.g. 127.0.0.1:9000 or https://seed:9000")
}

/// A server's URL (`http://` or `https://` with a host, and a port from 1 to 65535 if one is
/// given) or a bare `host:port`: what `what` is told in an error that shows `example`.
///
/// A path may follow the host and port (a proxy's prefix), but no query or fragment: the
/// commands append their own path and query to it as text, so `--node
/// 'http://h:8080/delete?key=important#'` made `dkv del user_1` delete `important`, and exit 0
/// (found by a hunt, 2026-12-07).
pub fn server_url(s: &str, what: &str, example: &str) -> Result<String, String> {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, s),
    };
    if let Some(scheme) = scheme.filter(|s| *s != "http" && *s != "https") {
        return Err(format!("{s:?}: a {what} speaks http:// or https://, not {scheme}://: {example}"));
    }
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if let Some(at) = tail.find(['?', '#']) {
        return Err(format!(
            "{s:?}: a {what}'s URL takes no query or fragment ({:?}): the commands add their own; {example}",
            &tail[at..]
        ));
    }
    if authority.contains('@') {
        return Err(format!("{s:?}: a user or password does not go in the {what}'s URL: {example}"));
    }
    if scheme.is_none() {
        host_port(authority).map_err(|e| format!("{e} (or a URL, {example})"))?;
        return Ok(s.to_string());
    }
    let host = match authority.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((host, port)) if !port.contains(']') => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("{s:?}: the port is a number from 1 to 65535"));
            }
            host
        }
        _ => authority,
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{s:?}: give the {what}'s host, {example}"));
    }
    Ok(s.to_string())
}

/// A `--max-key-size`: a size no engine refuses.
pub fn key_size(s: &str) -> Result<usize, String> {
    let n = positive_size(s)?;
    if n > dkv_storage::MAX_KEY_BYTES {
        return Err(format!("{s} is over the largest key dkv stores, {} KiB", dkv_storage::MAX_KEY_BYTES >> 10));
    }
    Ok(n)
}
