//! What every HTTP answer of a node carries, whoever wrote it: a handler, axum or hyper.
//!
//! * **Who answered.** Every answer has `x-dkv-node: <node id>`. A `404` from `/get` means "no
//!   such key" only when a node says it: any web server answers `404` to a path it does not
//!   have. With the header a client tells a node from the seed (which sends `x-dkv-seed`) or from
//!   whatever else listens on the port, and says so instead of reporting a missing key.
//! * **Why it failed.** Every error answer has a one-line text body that says what to do.
//!   Handlers write their own; an error answer with an empty body (what axum and tower produce
//!   on their own) gets one here from its status. Hyper answers a request it cannot parse (a URL
//!   over 64 KiB, headers over its buffer, garbage) before the router runs, with an empty body;
//!   [`parse_errors`](super::parse_errors) gives those their line and the header.
//! * **Where to go.** Every endpoint is listed once, in [`ENDPOINTS`]: an unknown path gets
//!   `404` with the list, a method a path does not take gets `405` naming the one it does, and a
//!   query parameter the endpoint does not take is a `400` (the key endpoints parse theirs in
//!   `http.rs`; the others take none, which [`no_parameters`] checks).

use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::front::query;

/// One endpoint of the public API.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    /// The query parameters it takes.
    pub params: &'static [&'static str],
    /// How to call it, for hints: the path with its parameters.
    pub usage: &'static str,
}

/// Every endpoint the router serves (`http.rs`; a unit test checks that the two agree).
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint { method: Method::PUT, path: "/put", params: &["key", "w", "ttl"], usage: "/put?key=K[&w=W][&ttl=10s]" },
    Endpoint { method: Method::GET, path: "/get", params: &["key", "r"], usage: "/get?key=K[&r=R]" },
    Endpoint { method: Method::DELETE, path: "/delete", params: &["key", "w"], usage: "/delete?key=K[&w=W]" },
    Endpoint { method: Method::GET, path: "/ttl", params: &["key", "r"], usage: "/ttl?key=K[&r=R]" },
    Endpoint {
        method: Method::GET,
        path: "/scan",
        params: &["cursor", "count", "prefix", "match"],
        usage: "/scan[?cursor=C&count=N&prefix=P&match=GLOB]",
    },
    Endpoint { method: Method::GET, path: "/local", params: &["key"], usage: "/local?key=K" },
    Endpoint { method: Method::GET, path: "/health", params: &["ready"], usage: "/health[?ready=1]" },
    Endpoint { method: Method::GET, path: "/cluster", params: &[], usage: "/cluster" },
    Endpoint { method: Method::GET, path: "/stats", params: &[], usage: "/stats" },
    Endpoint { method: Method::GET, path: "/metrics", params: &[], usage: "/metrics" },
    Endpoint { method: Method::GET, path: "/openapi.json", params: &[], usage: "/openapi.json" },
    Endpoint { method: Method::POST, path: "/admin/leave", params: &[], usage: "/admin/leave" },
    Endpoint { method: Method::POST, path: "/admin/stop", params: &[], usage: "/admin/stop" },
];

fn endpoints() -> impl Iterator<Item = &'static Endpoint> {
    ENDPOINTS.iter()
}

/// The query parameters the endpoint at `path` takes (none for an unknown path).
pub fn params(path: &str) -> &'static [&'static str] {
    endpoints().find(|e| e.path == path).map_or(&[], |e| e.params)
}

/// The `x-dkv-node` header's name, made once: inserting it by its text copies the name into a
/// new allocation for every answer (`http` keeps only its standard names static).
pub static NODE_HEADER: header::HeaderName = header::HeaderName::from_static(dkv_membership::api::NODE_HEADER);

/// The `x-dkv-node` value of node `id`.
pub fn node_header(id: impl std::fmt::Display) -> HeaderValue {
    HeaderValue::from_str(&id.to_string()).unwrap_or_else(|_| HeaderValue::from_static("node"))
}

/// The outermost layer: sign every answer and give an empty error answer its line.
pub async fn stamp(State(node): State<HeaderValue>, req: Request, next: Next) -> Response {
    let mut answer = next.run(req).await;
    let status = answer.status();
    if (status.is_client_error() || status.is_server_error()) && answer.body().size_hint().exact() == Some(0) {
        let headers = std::mem::take(answer.headers_mut());
        answer = (status, explain(status)).into_response();
        for (name, value) in headers.iter() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                answer.headers_mut().insert(name.clone(), value.clone());
            }
        }
    }
    answer.headers_mut().insert(NODE_HEADER.clone(), node);
    answer
}

/// Refuse any query parameter on an endpoint that takes none.
pub async fn no_parameters(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if params(path).is_empty() {
        if let Err(e) = query::parse(req.uri().query(), path, &[]) {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// `404` for a path the node does not serve. A request with no path at all (`CONNECT host:port`,
/// `OPTIONS *`) is named whole: "no such path :" said nothing (found by trying, 2026-12-07).
pub async fn unknown_path(method: Method, uri: Uri) -> Response {
    let all: Vec<String> = endpoints().map(|e| format!("{} {}", e.method, e.usage)).collect();
    let what = match uri.path() {
        "" | "*" => format!("{method} {uri} names no path (a node is not a proxy)"),
        path => format!("no such path {path}"),
    };
    let text = format!("{what}: a node serves {}\n", all.join(", "));
    (StatusCode::NOT_FOUND, text).into_response()
}

/// `405` for a method the path does not take.
pub async fn wrong_method(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let right: Vec<String> =
        endpoints().filter(|e| e.path == path).map(|e| format!("{} {}", e.method, e.usage)).collect();
    let text = match right.is_empty() {
        true => format!("method {method} not allowed on {path}\n"),
        false => format!("method {method} not allowed on {path}: use {}\n", right.join(" or ")),
    };
    (StatusCode::METHOD_NOT_ALLOWED, text).into_response()
}

/// The line for an error answer that came without one.
pub fn explain(status: StatusCode) -> String {
    let what = match status.as_u16() {
        400 => "malformed request: check it against the HTTP API (see the README or GET /openapi.json)",
        408 => "the request did not arrive in time: send it whole, without pauses",
        411 => "a body needs a Content-Length or chunked transfer encoding",
        413 => "request too large: keys and values have size limits (--max-key-size, --max-value-size)",
        414 => {
            "URL too long: over 64 KiB, the most HTTP takes here; its query holds a key (at most --max-key-size, \
             8 KiB by default, but percent-encoded a byte may take 3: a key over about 21 KiB may not fit in a URL, \
             and goes over RESP), a prefix or a pattern; send a shorter one"
        }
        415 => "unsupported content type",
        431 => "request headers too large: send fewer or smaller headers",
        s if s >= 500 => "the node could not answer: retry shortly, and see the node's log if it persists",
        _ => "the request was refused: check it against the HTTP API (see the README or GET /openapi.json)",
    };
    format!("{} {what}\n", status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_endpoint_list_matches_the_router() {
        // The routes `http.rs` registers as `.route("/path", method(handler))`.
        let source = include_str!("http.rs");
        let mut routes = BTreeSet::new();
        for call in source.split(".route(\"").skip(1) {
            let (path, rest) = call.split_once('"').expect("a quoted path");
            let method = rest.trim_start_matches([',', ' ']).split('(').next().expect("a method");
            routes.insert((path.to_string(), method.to_uppercase()));
        }
        let listed: BTreeSet<(String, String)> =
            endpoints().map(|e| (e.path.to_string(), e.method.to_string())).collect();
        assert_eq!(listed, routes);
    }

    #[tokio::test]
    async fn hints_name_the_right_methods() {
        let body = |r: Response| async move {
            String::from_utf8(http_body_util::BodyExt::collect(r.into_body()).await.unwrap().to_bytes().to_vec())
                .unwrap()
        };
        let text = body(unknown_path(Method::GET, Uri::from_static("/nope")).await).await;
        assert!(text.starts_with("no such path /nope: a node serves "), "{text}");
        assert!(text.contains("PUT /put?key=K") && text.contains("GET /get?key=K"), "{text}");
        assert!(text.contains("DELETE /delete?key=K") && !text.contains("GET /put"), "{text}");
        assert_eq!(text.lines().count(), 1);
        let text = body(unknown_path(Method::CONNECT, Uri::from_static("example.com:443")).await).await;
        assert!(text.starts_with("CONNECT example.com:443 names no path (a node is not a proxy): "), "{text}");
        let text = body(wrong_method(Method::GET, Uri::from_static("/put?key=a")).await).await;
        assert!(text.contains("method GET not allowed on /put: use PUT /put?key=K"), "{text}");
    }

    #[test]
    fn every_error_status_has_a_line() {
        for code in [400u16, 404, 405, 408, 413, 414, 431, 500, 502, 503] {
            let status = StatusCode::from_u16(code).unwrap();
            let line = explain(status);
            assert!(line.len() > 5 && line.ends_with('\n') && line.lines().count() == 1, "{code}");
        }
    }
}
