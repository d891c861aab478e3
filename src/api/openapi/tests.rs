//! The document against the route table: the same routes both ways, each with its role
//! and error codes; every error code documented; OpenAPI 3.1 whose every `$ref` resolves.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::api::table;

/// `(METHOD, path)` of every operation the document has.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

fn served() -> BTreeSet<(String, String)> {
    table::endpoints()
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_owned()))
        .collect()
}

fn doc() -> Value {
    serde_json::to_value(document()).unwrap()
}

#[test]
fn the_document_has_exactly_the_routes_of_the_table() {
    let (documented, served) = (documented(&doc()), served());
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes the document lacks: {undocumented:?}; documented routes not served: {unserved:?}"
    );
    assert_eq!(
        served.len(),
        table::endpoints().len(),
        "a route twice in the table"
    );
    assert!(served.contains(&("POST".into(), "/v1/decisions".into())));
    assert!(served.contains(&("GET".into(), "/healthz".into())));
}

#[test]
fn every_operation_states_its_role_security_and_errors() {
    let doc = doc();
    for e in table::endpoints() {
        let op = &doc["paths"][e.path][e.method.as_str().to_lowercase()];
        let what = format!("{} {}", e.method, e.path);
        let role = e.role.map_or("none", role_name);
        assert_eq!(op["x-required-role"], role, "{what}");
        match e.role {
            Some(_) => assert_eq!(
                op["security"],
                serde_json::json!([{ BEARER: [] }, { COOKIE: [] }]),
                "{what}: a bearer token OR the cookie"
            ),
            None => assert!(op.get("security").is_none(), "{what}"),
        }
        let mut codes: Vec<Code> = e.errors.to_vec();
        if e.role.is_some() {
            codes.extend([Code::Unauthorized, Code::Forbidden]);
        }
        for code in codes {
            let response = &op["responses"][code.status().to_string()];
            assert!(
                response["x-error-codes"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|c| c == code.name())),
                "{what}: {} not listed under {}",
                code.name(),
                code.status()
            );
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{what}"
            );
        }
        let success = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .any(|s| s.starts_with('2') || s == "101");
        assert!(success, "{what}: no success response");
    }
}

#[test]
fn every_error_code_is_documented() {
    let doc = doc();
    let listed: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op.get("responses")?.as_object())
        .flat_map(|r| r.values())
        .filter_map(|r| r["x-error-codes"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for code in Code::ALL {
        // Unknown routes and methods are answered by the fallbacks, which no operation has.
        if matches!(code, Code::NotFound | Code::MethodNotAllowed) {
            continue;
        }
        assert!(
            listed.contains(code.name()),
            "{} on no operation",
            code.name()
        );
    }
    let table = doc["x-error-codes"]
        .as_object()
        .expect("root x-error-codes");
    let enumerated = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"];
    for code in Code::ALL {
        assert_eq!(table[code.name()], code.status(), "{}", code.name());
        assert!(
            enumerated
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == code.name()),
            "{}",
            code.name()
        );
    }
}

/// Check `doc` is an OpenAPI 3.1 document: the version, the required objects, every
/// operation's responses and path parameters, the security schemes it names, and that every
/// `$ref` resolves. (utoipa 5 cannot read back its own any-value schemas, `{"description"}`
/// for a `serde_json::Value` field, valid in 3.1; so the check is structural.)
fn check_openapi_3_1(doc: &Value) {
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("schemes");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        assert!(path.starts_with('/'), "{path}");
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{what}");
            for (status, r) in responses {
                assert!(status.parse::<u16>().is_ok(), "{what}: {status}");
                assert!(r["description"].is_string(), "{what} {status}");
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for name in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                    "{what}: path parameter {name}"
                );
            }
            for requirement in op["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(scheme), "{what}: scheme {scheme}");
                }
            }
        }
    }
    let all = refs(doc);
    assert!(all.len() > 20, "refs: {all:?}");
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {r} does not resolve");
    }
}

#[test]
fn it_is_openapi_3_1_and_every_ref_resolves() {
    check_openapi_3_1(&doc());
}

#[test]
fn the_bodies_are_the_protocol_types() {
    let doc = doc();
    let body = |path: &str, method: &str| {
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .clone()
    };
    assert_eq!(
        body("/v1/decisions", "post"),
        "#/components/schemas/BulkDecisions"
    );
    assert_eq!(
        body("/v1/sessions/{id}/permissions/{request_id}", "post"),
        "#/components/schemas/RawDecision"
    );
    let item = &doc["components"]["schemas"]["BulkItem"];
    for field in [
        "session_id",
        "request_id",
        "behavior",
        "updated_input",
        "message",
    ] {
        assert!(item["properties"].get(field).is_some(), "BulkItem.{field}");
    }
}

/// The files of `dir`, recursively.
fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The table is the only way into the app: no other file of the API mounts a route
/// (which the document, checked against the table, could then miss).
#[test]
fn no_route_is_mounted_outside_the_table() {
    let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut files = Vec::new();
    sources(&api, &mut files);
    assert!(files.len() > 10, "{files:?}");
    let mounting = [
        "web::resource(",
        "web::scope(",
        ".service(",
        ".route(",
        "cfg.route(",
    ];
    for file in files {
        if file.ends_with("table.rs") || file.ends_with("openapi/tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for m in mounting {
            assert!(
                !text.contains(m),
                "{} mounts a route with {m}: add it to the route table (src/api/table.rs)",
                file.display()
            );
        }
    }
}
