//! Checks shared by the node's and the seed's OpenAPI descriptions (`front/openapi.rs` in the
//! node, `openapi.rs` in the seed): both are JSON written by hand beside their router, and their
//! unit tests use [`problems`] so that neither can drift from its router silently.

use std::collections::BTreeSet;

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

/// What is wrong with the description `spec` (JSON text) of the router whose source is
/// `router_source` (named `router_file` in the messages), for a crate of version `version`;
/// empty when nothing is.
pub fn problems(spec: &str, router_source: &str, router_file: &str, version: &str) -> Vec<String> {
    let parsed: serde_json::Value = match serde_json::from_str(spec) {
        Ok(v) => v,
        Err(e) => return vec![format!("openapi.json is not valid JSON: {e}")],
    };
    let mut found = Vec::new();
    if !parsed["openapi"].as_str().is_some_and(|v| v.starts_with("3.")) {
        found.push("not an OpenAPI 3.x document".to_string());
    }
    if parsed["info"]["version"] != version {
        found.push(format!("info.version is {}, the crate is {version}", parsed["info"]["version"]));
    }
    for r in spec.split("\"$ref\": \"").skip(1) {
        let target = r.split('"').next().unwrap_or_default();
        match target.strip_prefix('#') {
            Some(pointer) if parsed.pointer(pointer).is_some() => {}
            _ => found.push(format!("$ref {target} points at nothing in this file")),
        }
    }
    let router = routes_in_source(router_source);
    if router.is_empty() {
        found.push(format!("no .route(...) call found in {router_file}"));
    }
    let described = routes_in_spec(&parsed);
    for (path, method) in router.difference(&described) {
        found.push(format!("{method} {path} of {router_file} is missing from openapi.json"));
    }
    for (path, method) in described.difference(&router) {
        found.push(format!("openapi.json describes {method} {path}, which {router_file} does not have"));
    }
    for (path, method) in &described {
        if parsed["paths"][path][method]["responses"].as_object().is_none_or(|r| r.is_empty()) {
            found.push(format!("{method} {path} documents no response"));
        }
    }
    found
}

/// The `(path, method)` pairs a router's source registers with `.route("path", method(..))`,
/// methods in lower case.
pub fn routes_in_source(source: &str) -> BTreeSet<(String, String)> {
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

/// The `(path, method)` pairs an OpenAPI description lists, methods in lower case.
fn routes_in_spec(spec: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            if METHODS.contains(&method.as_str()) || method == "trace" {
                routes.insert((path.clone(), method.clone()));
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_scan_reads_chained_method_routers() {
        let src = r#"Router::new().route("/a", get(x).post(y)).route("/b", delete(widget(budget)))
            .route("/c", put(forget_it))"#;
        let want: BTreeSet<(String, String)> = [("/a", "get"), ("/a", "post"), ("/b", "delete"), ("/c", "put")]
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(routes_in_source(src), want);
    }

    #[test]
    fn drift_either_way_is_reported() {
        let spec = r##"{"openapi": "3.1.0", "info": {"version": "1"}, "paths": {
            "/a": {"get": {"responses": {"200": {"$ref": "#/components/x"}}}},
            "/gone": {"post": {"responses": {}}}}, "components": {"x": {}}}"##;
        let found = problems(spec, r#".route("/a", get(a)).route("/new", put(n))"#, "r.rs", "1");
        assert_eq!(
            found,
            [
                "put /new of r.rs is missing from openapi.json",
                "openapi.json describes post /gone, which r.rs does not have",
                "post /gone documents no response",
            ]
        );
        let fine = r##"{"openapi": "3.1.0", "info": {"version": "1"}, "paths": {
            "/a": {"get": {"responses": {"200": {"$ref": "#/components/x"}}}}}, "components": {"x": {}}}"##;
        assert!(problems(fine, r#".route("/a", get(a))"#, "r.rs", "1").is_empty());
        assert_eq!(problems(fine, r#".route("/a", get(a))"#, "r.rs", "2").len(), 1, "the version");
    }
}
