//! Client authentication: who may read and who may write through the public listeners.
//!
//! Off by default, as in Redis. With `--client-password` every key operation needs that password:
//! RESP clients send `AUTH [user] password` (or `HELLO 2 AUTH user password`) once per
//! connection, HTTP clients send it with every request as `Authorization: Bearer <password>` or
//! Basic (`curl -u user:password`). The password alone says what a client may do: over HTTP the
//! user name is not checked; over RESP it must be `default`, Redis's one user without ACLs (any
//! other is Redis's `WRONGPASS`, since 2026-12-07). A second password,
//! `--client-readonly-password`, reads but never writes, for dashboards and reporting jobs.
//!
//! The client passwords are not the cluster secret: they are handed to applications, the secret
//! stays with the members and the seed. A password is compared in time that depends on neither
//! where it differs nor its length (the given one is never compared with a shorter loop), and
//! both passwords are always compared, so timing tells nothing of which one nearly matched.
//!
//! Every refusal is counted by API and reason, `dkv_auth_failures_total{api,reason}`. What each
//! protocol answers is Redis's own words (`-NOAUTH Authentication required.`, `-WRONGPASS …`,
//! `-NOPERM …`) and, over HTTP, `401` with `WWW-Authenticate` or `403` for a read-only password
//! that tried to write ([`http_check`]).
//!
//! Which HTTP paths need a password: all but those in [`OPEN_PATHS`] — `/health` (load
//! balancers and container health checks carry no credentials), `/metrics`, `/stats`,
//! `/cluster` (counts, states and member addresses, as `/metrics` already shows them: what
//! monitoring reads, never a key or a value) and `/openapi.json`. The admin endpoints keep the
//! cluster secret instead. A path added later needs the password unless it is listed here.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use dkv_transport::same_secret;

use crate::front::guesses::Guesses;
use crate::life::metrics::Api;

/// A password, kept out of `Debug` output (the node's configuration is logged on errors).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    pub fn new(p: impl Into<Vec<u8>>) -> Password {
        Password(p.into())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The client passwords (`--client-password`, `--client-readonly-password`); none by default.
#[derive(Clone, Debug, Default)]
pub struct ClientAuth {
    /// May read and write. `None`: clients need no password.
    pub password: Option<Password>,
    /// May read only. Only meaningful with `password`.
    pub readonly_password: Option<Password>,
}

/// What a client has proved it may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Nothing yet (RESP: before `AUTH`).
    #[default]
    None,
    ReadOnly,
    Full,
}

/// Why a client was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A request without a password.
    Missing,
    /// A password that is neither of the two.
    Wrong,
    /// A write with the read-only password.
    ReadOnly,
    /// A password not checked: its source gave a wrong one lately and waits (`guesses.rs`).
    TooSoon,
}

impl Failure {
    const ALL: [Failure; 4] = [Failure::Missing, Failure::Wrong, Failure::ReadOnly, Failure::TooSoon];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Wrong => "wrong_password",
            Failure::ReadOnly => "read_only",
            Failure::TooSoon => "too_soon",
        }
    }
}

/// What a password given from an address came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    Granted(Access),
    /// Neither password (counted, and its source waits).
    Wrong,
    /// Not checked: its source must wait this long more (counted).
    TooSoon(Duration),
}

/// The passwords and the count of refusals; one per node.
#[derive(Debug)]
pub struct Auth {
    config: ClientAuth,
    failures: [[AtomicU64; Failure::ALL.len()]; 2],
    guesses: Guesses,
}

impl Auth {
    pub fn new(config: ClientAuth) -> Auth {
        Auth { config, failures: Default::default(), guesses: Guesses::default() }
    }

    /// What `password`, sent over `api` from `from`, grants: checked only when its source may be
    /// checked now (`guesses.rs`); `from` is `None` where no address is known (never held up).
    pub fn check_from(&self, api: Api, from: Option<IpAddr>, password: &[u8]) -> Checked {
        let now = Instant::now();
        let turn = match from.map(|ip| (ip, self.guesses.may_check(ip, now))) {
            Some((_, Err(left))) => {
                self.refused(api, Failure::TooSoon);
                return Checked::TooSoon(left);
            }
            Some((ip, Ok(turn))) => Some((ip, turn)),
            None => None,
        };
        let checked = self.check(password);
        if let Some((ip, turn)) = turn {
            self.guesses.checked(ip, turn, checked.is_some(), now);
        }
        match checked {
            Some(access) => Checked::Granted(access),
            None => {
                self.refused(api, Failure::Wrong);
                Checked::Wrong
            }
        }
    }

    /// Whether clients must authenticate at all.
    pub fn required(&self) -> bool {
        self.config.password.is_some()
    }

    /// What `password` grants; `None` for a wrong one (or when no password is configured).
    pub fn check(&self, password: &[u8]) -> Option<Access> {
        let full = self.config.password.as_ref().is_some_and(|p| same_secret(&p.0, password));
        let readonly = self.config.readonly_password.as_ref().is_some_and(|p| same_secret(&p.0, password));
        match (full, readonly) {
            (true, _) => Some(Access::Full),
            (false, true) => Some(Access::ReadOnly),
            _ => None,
        }
    }

    pub fn refused(&self, api: Api, why: Failure) {
        self.failures[api_index(api)][why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals so far, for `/metrics`.
    pub fn failures(&self) -> impl Iterator<Item = (Api, Failure, u64)> + '_ {
        [Api::Http, Api::Resp].into_iter().flat_map(move |api| {
            Failure::ALL
                .into_iter()
                .map(move |f| (api, f, self.failures[api_index(api)][f as usize].load(Ordering::Relaxed)))
        })
    }
}

fn api_index(api: Api) -> usize {
    match api {
        Api::Http => 0,
        Api::Resp => 1,
    }
}

// ---------------------------------------------------------------------------------------- RESP

/// Redis's words, which client libraries recognise.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// The line for a password not checked because its source waits (RESP's, after `-ERR `; HTTP's).
pub fn too_soon(from: Option<IpAddr>, left: Duration) -> String {
    let from = from.map_or_else(|| "this address".to_string(), |ip| ip.to_string());
    format!(
        "too many wrong passwords from {from} lately: none is checked for the next {} ms; retry then",
        left.as_millis().max(1)
    )
}

pub fn noperm(cmd: &str) -> String {
    format!("NOPERM this user has no permissions to run the '{cmd}' command: the read-only password may not write")
}

// ---------------------------------------------------------------------------------------- HTTP

/// Paths any client may call without a password (see the module note for why).
pub const OPEN_PATHS: &[&str] = &["/health", "/metrics", "/stats", "/cluster", "/openapi.json"];

/// The password an `Authorization` header carries: `Bearer <password>`, or `Basic` with
/// base64 `user:password` (any user). `None` when the header is neither.
pub fn header_password(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

/// The middleware in front of every route: the password, where one is needed.
pub async fn http_check(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let from = req.extensions().get::<ClientAddr>().map(|a| a.0);
    match http_refusal(&auth, from, req.method(), req.uri().path(), req.headers()) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// The answer that refuses a request to `path` for want of the right password; `None` lets it
/// through. Writes (any method but GET, HEAD and OPTIONS) need the full password.
pub fn http_refusal(
    auth: &Auth,
    from: Option<IpAddr>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    if !auth.required() || OPEN_PATHS.contains(&path) || path.starts_with("/admin/") {
        return None;
    }
    let given = headers.get(header::AUTHORIZATION).map(|v| header_password(v.as_bytes()));
    let access = match given {
        None => {
            auth.refused(Api::Http, Failure::Missing);
            return Some(unauthorized(
                "authentication required: send the client password as Authorization: Bearer <password> or Basic (curl -u default:<password>)\n",
            ));
        }
        // A header that carries no password (another scheme, Basic that is not base64 of
        // `user:password`) guesses none: refused as missing, it does not start the back-off on
        // its address, as a wrong password does (it did until 2026-12-07: found by a hunt).
        Some(None) => {
            auth.refused(Api::Http, Failure::Missing);
            return Some(unauthorized(
                "the Authorization header carries no password: send Bearer <password>, or Basic with base64 of user:password (curl -u default:<password>)\n",
            ));
        }
        Some(Some(p)) => auth.check_from(Api::Http, from, &p),
    };
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    match access {
        Checked::Granted(Access::Full) => None,
        Checked::Granted(Access::ReadOnly) if reads => None,
        Checked::Granted(_) => {
            auth.refused(Api::Http, Failure::ReadOnly);
            let line = format!("the read-only password may not write: {method} {path} needs the client password\n");
            Some((StatusCode::FORBIDDEN, line).into_response())
        }
        Checked::Wrong => Some(unauthorized("invalid username-password pair: wrong client password\n")),
        Checked::TooSoon(left) => {
            let retry = HeaderValue::from(left.as_secs() + u64::from(left.subsec_nanos() > 0));
            let line = format!("{}\n", too_soon(from, left));
            Some((StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry)], line).into_response())
        }
    }
}

/// The address an HTTP request came from, for the password check (`guesses.rs`): put in the
/// extensions of the requests the router serves (`http.rs`; the key endpoints pass it along).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

fn unauthorized(line: &'static str) -> Response {
    let challenge = HeaderValue::from_static("Basic realm=\"dkv\", charset=\"UTF-8\", Bearer realm=\"dkv\"");
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], line).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(full: &str, ro: Option<&str>) -> Auth {
        Auth::new(ClientAuth { password: Some(Password::new(full)), readonly_password: ro.map(Password::new) })
    }

    #[test]
    fn each_password_grants_its_access_and_nothing_else_does() {
        let a = auth("s3cret", Some("look"));
        assert_eq!(a.check(b"s3cret"), Some(Access::Full));
        assert_eq!(a.check(b"look"), Some(Access::ReadOnly));
        for wrong in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"lookk", b"\0"] {
            assert_eq!(a.check(wrong), None, "{wrong:?}");
        }
        let off = Auth::new(ClientAuth::default());
        assert!(!off.required());
        assert_eq!(off.check(b""), None, "no password configured: AUTH is an error, as in Redis");
    }

    #[test]
    fn comparison_is_exact_whatever_the_lengths() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"", b"a"));
        assert!(same_secret(b"", b""));
        // A given byte that equals `!e` where `given` ran out must not make a short one match.
        assert!(!same_secret(&[0xff], &[]));
    }

    #[test]
    fn bearer_and_basic_headers_carry_the_password() {
        assert_eq!(header_password(b"Bearer s3cret"), Some(b"s3cret".to_vec()));
        assert_eq!(header_password(b"bearer  s3cret "), Some(b"s3cret".to_vec()));
        // curl -u default:pa:ss → base64("default:pa:ss"): the password may hold colons.
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("default:pa:ss"));
        assert_eq!(header_password(basic.as_bytes()), Some(b"pa:ss".to_vec()));
        assert_eq!(header_password(b"Basic !!notbase64"), None);
        assert_eq!(header_password(b"Digest x"), None);
        assert_eq!(header_password(b"Bearer"), None);
    }

    #[test]
    fn refusals_are_counted_by_api_and_reason() {
        let a = auth("p", None);
        a.refused(Api::Resp, Failure::Wrong);
        a.refused(Api::Resp, Failure::Wrong);
        a.refused(Api::Http, Failure::Missing);
        let counts: Vec<_> = a.failures().filter(|(_, _, n)| *n > 0).collect();
        assert_eq!(counts, vec![(Api::Http, Failure::Missing, 1), (Api::Resp, Failure::Wrong, 2)]);
    }
}
