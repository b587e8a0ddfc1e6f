//! `GET /openapi.json`: the OpenAPI description of the public HTTP API, kept as a JSON file beside
//! the handlers and compiled into the binary.
//!
//! The file is written by hand, because what it must say (error bodies, limits, what each status
//! means) is not in the handlers' types. So that it cannot drift from the router silently, a unit
//! test reads the `.route(...)` calls of `http.rs` and checks that the description lists every
//! route with its methods, and no route the router lacks. `scripts/api-schema-test.sh` then runs
//! schemathesis against a live cluster to check that every answer matches the description.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The description, as served.
pub const SPEC: &str = include_str!("openapi.json");

pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], SPEC).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_matches_the_router_and_this_version() {
        let router = dkv_membership::openapi::routes_in_source(include_str!("http.rs"));
        assert!(
            router.iter().any(|(p, m)| (p.as_str(), m.as_str()) == ("/put", "put")),
            "the route scan found {router:?}"
        );
        let problems =
            dkv_membership::openapi::problems(SPEC, include_str!("http.rs"), "http.rs", env!("CARGO_PKG_VERSION"));
        assert!(problems.is_empty(), "openapi.json: {problems:#?}");
    }
}
