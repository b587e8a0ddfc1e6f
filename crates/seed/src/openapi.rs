//! `GET /openapi.json`: the OpenAPI description of the seed's API, kept as a JSON file beside the
//! routes and compiled into the binary.
//!
//! The file is written by hand (error bodies, limits and the registry's rules are not in the
//! types). A unit test reads the `.route(...)` calls of `server.rs` and checks that the
//! description lists exactly those routes and methods, so the two cannot drift apart silently;
//! `scripts/api-schema-test.sh` runs schemathesis against a live seed to check every answer.

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
        let router = dkv_membership::openapi::routes_in_source(include_str!("server.rs"));
        assert!(
            router.iter().any(|(p, m)| (p.as_str(), m.as_str()) == ("/register", "post")),
            "the route scan found {router:?}"
        );
        let problems =
            dkv_membership::openapi::problems(SPEC, include_str!("server.rs"), "server.rs", env!("CARGO_PKG_VERSION"));
        assert!(problems.is_empty(), "openapi.json: {problems:#?}");
    }
}
