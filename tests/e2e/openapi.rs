//! `GET /v1/openapi.json` against the running app: served without a token, OpenAPI 3.1 with
//! every `$ref` resolving, and the same routes as the app serves, both ways: every
//! documented operation reaches a handler (not the JSON 404 / 405 fallbacks) with the
//! documented role, and every route the app mounts is documented.

use std::collections::BTreeSet;

use crate::common::{client_with, Harness, Sess, ADMIN_TOKEN, APPROVER_TOKEN, VIEWER_TOKEN};
use ccr_supervisor::api::{openapi, table};
use serde_json::Value;

/// `(status, error code)` of `method path` sent with `token`.
async fn probe(h: &Harness, token: Option<&str>, method: &str, path: &str) -> (u16, String) {
    let url = format!("{}{path}", h.api);
    let c = client_with(token);
    let req = match method {
        "get" => c.get(url),
        "post" => c.post(url),
        "delete" => c.delete(url),
        "put" => c.put(url),
        "patch" => c.patch(url),
        other => panic!("no probe for {other}"),
    }
    // JSON is refused by the event stream (406) before it would start streaming.
    .insert_header(("accept", "application/json"));
    let mut resp = match method {
        "post" | "put" | "patch" => req
            .insert_header(("content-type", "application/json"))
            .send_body("{}"),
        _ => req.send(),
    }
    .await
    .expect("probe");
    let status = resp.status().as_u16();
    let body: Value =
        serde_json::from_slice(&resp.body().await.unwrap_or_default()).unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// Every documented operation: `(method, path template, x-required-role)`.
fn operations(doc: &Value) -> Vec<(String, String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let role = op["x-required-role"].as_str().expect("x-required-role");
            ops.push((method.clone(), path.clone(), role.to_owned()));
        }
    }
    ops
}

/// A concrete path for a template: path parameters name nothing that exists.
fn concrete(template: &str) -> String {
    template
        .replace("{id}", "probe-no-such-session")
        .replace("{request_id}", "probe-no-such-request")
}

#[actix_rt::test]
async fn the_document_is_served_without_a_token_as_openapi_3_1() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    let mut resp = client_with(None)
        .get(format!("{}/v1/openapi.json", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let doc: Value = resp.json().limit(8 << 20).await.unwrap();
    assert_eq!(doc, serde_json::to_value(openapi::document()).unwrap());
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let all = openapi::refs(&doc);
    assert!(all.len() > 20, "{all:?}");
    for r in all {
        let pointer = r.strip_prefix('#').expect("a local $ref");
        assert!(doc.pointer(pointer).is_some(), "$ref {r} does not resolve");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(
        (
            &schemes["cookie"]["type"],
            &schemes["cookie"]["in"],
            &schemes["cookie"]["name"]
        ),
        (
            &Value::from("apiKey"),
            &Value::from("cookie"),
            &Value::from("ccr_console")
        )
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn every_documented_route_is_served_with_its_role_and_every_served_route_is_documented() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    let (status, doc) = h.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let ops = operations(&doc);
    assert!(ops.len() >= 20, "{ops:?}");

    // The probe tells the fallbacks apart from handlers.
    assert_eq!(
        probe(&h, Some(ADMIN_TOKEN), "get", "/v1/no-such-route").await,
        (404, "not_found".into())
    );
    assert_eq!(
        probe(&h, Some(ADMIN_TOKEN), "put", "/v1/sessions").await,
        (405, "method_not_allowed".into())
    );

    let below = |role: &str| match role {
        "viewer" => None,
        "approver" => Some(VIEWER_TOKEN),
        "admin" => Some(APPROVER_TOKEN),
        other => panic!("unknown role {other}"),
    };
    let at = |role: &str| match role {
        "viewer" => VIEWER_TOKEN,
        "approver" => APPROVER_TOKEN,
        _ => ADMIN_TOKEN,
    };
    for (method, template, role) in &ops {
        let path = concrete(template);
        let what = format!("{method} {template} ({role})");
        let (status, code) = match role.as_str() {
            "none" => probe(&h, None, method, &path).await,
            role => {
                let refused = probe(&h, below(role), method, &path).await;
                let expected = match below(role) {
                    None => (401, "unauthorized".to_owned()),
                    Some(_) => (403, "forbidden".to_owned()),
                };
                assert_eq!(refused, expected, "{what}: one role below");
                probe(&h, Some(at(role)), method, &path).await
            }
        };
        assert!(
            !matches!(code.as_str(), "not_found" | "method_not_allowed"),
            "{what}: answered by the fallback ({status} {code})"
        );
        assert!(
            !matches!(status, 401 | 403),
            "{what}: refused at its documented role ({status} {code})"
        );
    }

    // Every route the app mounts (its route table) is documented, with the same role.
    let documented: BTreeSet<(String, String, String)> = ops.into_iter().collect();
    for e in table::endpoints() {
        let role = e.role.map_or("none", openapi::role_name).to_owned();
        let key = (e.method.as_str().to_lowercase(), e.path.to_owned(), role);
        assert!(
            documented.contains(&key),
            "{key:?} is served but not documented"
        );
    }
    assert_eq!(documented.len(), table::endpoints().len());
    h.shutdown().await;
}
