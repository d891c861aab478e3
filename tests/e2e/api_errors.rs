//! Every API error status with its stable JSON code.

use crate::common::{Harness, Sess};
use serde_json::json;

#[actix_rt::test]
async fn every_error_status_and_code() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_state("s1", "connected").await;
    h.prompt("s1", "e1", "Bash", json!({"command":"ls"})).await;
    let cases: Vec<(&str, &str, Option<&str>, u16, &str)> = vec![
        ("GET", "/v1/sessions/nope", None, 404, "unknown_session"),
        (
            "GET",
            "/v1/permissions?session_id=nope",
            None,
            404,
            "unknown_session",
        ),
        ("GET", "/v1/permissions?bogus=1", None, 400, "invalid_query"),
        ("GET", "/v1/nothing-here", None, 404, "not_found"),
        ("GET", "/v1/cluster", None, 404, "cluster_off"),
        ("DELETE", "/v1/sessions", None, 405, "method_not_allowed"),
        (
            "POST",
            "/v1/sessions/nope/permissions/e1",
            Some(r#"{"behavior":"allow"}"#),
            404,
            "unknown_session",
        ),
        (
            "POST",
            "/v1/sessions/s1/permissions/zzz",
            Some(r#"{"behavior":"allow"}"#),
            404,
            "unknown_prompt",
        ),
        (
            "POST",
            "/v1/sessions/s1/permissions/e1",
            Some("{not json"),
            400,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/sessions/s1/permissions/e1",
            Some(r#"{"behavior":"maybe"}"#),
            400,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/sessions/s1/permissions/e1",
            Some(r#"{"behavior":"allow","updated_input":"rm"}"#),
            400,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/sessions/s1/permissions/e1",
            Some(r#"{"behavior":"deny","message":""}"#),
            400,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/sessions/s1/messages",
            Some(r#"{"content":""}"#),
            400,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/sessions/s1/messages",
            Some(r#"{"text":"x"}"#),
            400,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/sessions/nope/messages",
            Some(r#"{"content":"x"}"#),
            404,
            "unknown_session",
        ),
        (
            "POST",
            "/v1/sessions/nope/interrupt",
            Some("{}"),
            404,
            "unknown_session",
        ),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let url = format!("{}{path}", h.api);
        let req = match method {
            "GET" => h.http.get(url),
            "POST" => h.http.post(url),
            _ => h.http.delete(url),
        };
        let mut resp = match body {
            Some(b) => {
                req.content_type("application/json")
                    .send_body(b.to_owned())
                    .await
            }
            None => req.send().await,
        }
        .unwrap();
        let bytes = resp.body().await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{method} {path}: body is not JSON: {bytes:?}"));
        assert_eq!(resp.status().as_u16(), want_status, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], want_code, "{method} {path}: {v}");
        assert!(v["error"]["message"].is_string(), "{method} {path}: {v}");
    }
    // None of the refused answers reached the session.
    assert!(h.answers("s1", "e1").is_empty());
    // 409s are covered with the lifecycle; this one closes the table.
    assert_eq!(
        h.decide("s1", "e1", json!({"behavior":"allow"})).await.0,
        200
    );
    let (status, v) = h.decide("s1", "e1", json!({"behavior":"allow"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("already_answered"))
    );
    h.shutdown().await;
}
