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
    use std::collections::BTreeSet;

    const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

    /// The `(path, method)` pairs a router's source registers with `.route("path", method(..))`.
    /// (The node's `front/openapi.rs` has the same check for its router.)
    fn routes_in_source(source: &str) -> BTreeSet<(String, String)> {
        let mut routes = BTreeSet::new();
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
                    routes.insert((path.to_string(), m.to_string()));
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
        let router = routes_in_source(include_str!("server.rs"));
        assert!(router.contains(&("/register".into(), "post".into())), "the route scan found {router:?}");
        let mut described = BTreeSet::new();
        for (path, item) in spec()["paths"].as_object().expect("paths is an object") {
            for method in item.as_object().expect("a path item is an object").keys() {
                if METHODS.contains(&method.as_str()) || method == "trace" {
                    described.insert((path.clone(), method.clone()));
                }
            }
        }
        let undescribed: Vec<_> = router.difference(&described).collect();
        assert!(undescribed.is_empty(), "routes of server.rs missing from openapi.json: {undescribed:?}");
        let stale: Vec<_> = described.difference(&router).collect();
        assert!(stale.is_empty(), "openapi.json describes routes server.rs does not have: {stale:?}");
    }

    #[test]
    fn the_description_is_openapi_3_of_this_version_with_resolvable_references() {
        let spec = spec();
        assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "an OpenAPI 3.x document");
        assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"), "info.version follows the crate");
        for r in SPEC.split("\"$ref\": \"").skip(1) {
            let target = r.split('"').next().unwrap_or_default();
            let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{target} is not a local $ref"));
            assert!(spec.pointer(pointer).is_some(), "$ref {target} points at nothing");
        }
    }

    #[test]
    fn the_route_scan_reads_chained_method_routers() {
        let src = r#"Router::new().route("/a", get(x).post(y)).route("/b", delete(widget(budget)))"#;
        let want: BTreeSet<(String, String)> = [("/a", "get"), ("/a", "post"), ("/b", "delete")]
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(routes_in_source(src), want);
    }
}
