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
    use std::collections::BTreeSet;

    /// The `(path, method)` pairs a router's source registers with `.route("path", method(handler))`,
    /// methods in lower case. (The seed's `openapi.rs` has the same check for its router.)
    fn routes_in_source(source: &str) -> Vec<(String, String)> {
        const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];
        let mut routes = Vec::new();
        for call in source.split(".route(\"").skip(1) {
            let Some((path, rest)) = call.split_once('"') else { continue };
            // The method router runs to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let method_router = &rest[..end];
            for m in METHODS {
                let called = method_router
                    .match_indices(&format!("{m}("))
                    .any(|(i, _)| i == 0 || !method_router[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
                if called {
                    routes.push((path.to_string(), m.to_string()));
                }
            }
        }
        routes
    }

    /// The `(path, method)` pairs an OpenAPI description lists, methods in lower case.
    fn routes_in_spec(spec: &serde_json::Value) -> Vec<(String, String)> {
        let mut routes = Vec::new();
        for (path, item) in spec["paths"].as_object().expect("paths is an object") {
            for method in item.as_object().expect("a path item is an object").keys() {
                if ["get", "post", "put", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                    routes.push((path.clone(), method.clone()));
                }
            }
        }
        routes
    }

    fn spec() -> serde_json::Value {
        serde_json::from_str(SPEC).expect("openapi.json is valid JSON")
    }

    #[test]
    fn the_description_lists_exactly_the_routes_of_the_router() {
        let router: BTreeSet<_> = routes_in_source(include_str!("http.rs")).into_iter().collect();
        assert!(router.contains(&("/put".into(), "put".into())), "the route scan found {router:?}");
        let described: BTreeSet<_> = routes_in_spec(&spec()).into_iter().collect();
        let undescribed: Vec<_> = router.difference(&described).collect();
        assert!(undescribed.is_empty(), "routes of http.rs missing from openapi.json: {undescribed:?}");
        let stale: Vec<_> = described.difference(&router).collect();
        assert!(stale.is_empty(), "openapi.json describes routes http.rs does not have: {stale:?}");
    }

    #[test]
    fn the_description_is_openapi_3_of_this_version_with_resolvable_references() {
        let spec = spec();
        assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "an OpenAPI 3.x document");
        assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"), "info.version follows the crate");
        let text = SPEC;
        for r in text.split("\"$ref\": \"").skip(1) {
            let target = r.split('"').next().unwrap_or_default();
            let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{target} is not a local $ref"));
            assert!(spec.pointer(pointer).is_some(), "$ref {target} points at nothing");
        }
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().map_or(0, |r| r.len());
                assert!(responses > 0, "{method} {path} documents no response");
            }
        }
    }

    #[test]
    fn the_route_scan_reads_chained_method_routers() {
        let src = r#"Router::new().route("/a", get(x).post(y)).route("/b", delete(widget(budget)))
            .route("/c", put(forget_it))"#;
        let found = routes_in_source(src);
        let want: Vec<(String, String)> = [("/a", "get"), ("/a", "post"), ("/b", "delete"), ("/c", "put")]
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(found, want);
    }
}
