//! Authentication and roles on every route: 401 / 403 / 2xx table, and who decided.

use crate::common::{client_with, logs, Harness, Sess, ADMIN_TOKEN, APPROVER_TOKEN, VIEWER_TOKEN};
use serde_json::json;

#[actix_rt::test]
async fn each_role_on_each_route() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_state("s1", "connected").await;
    // (method, path, body, minimum role: 0 viewer, 1 approver, 2 admin)
    let routes: Vec<(&str, &str, Option<serde_json::Value>, usize)> = vec![
        ("GET", "/v1/sessions", None, 0),
        ("GET", "/v1/sessions/s1", None, 0),
        ("GET", "/v1/permissions", None, 0),
        ("GET", "/v1/sessions/s1/messages", None, 0),
        (
            "POST",
            "/v1/sessions/s1/permissions/nope",
            Some(json!({"behavior":"allow"})),
            1,
        ),
        (
            "POST",
            "/v1/sessions/s1/messages",
            Some(json!({"content":"hi"})),
            1,
        ),
    ];
    let tokens = [
        None,
        Some("wrong-token"),
        Some(VIEWER_TOKEN),
        Some(APPROVER_TOKEN),
        Some(ADMIN_TOKEN),
    ];
    for (method, path, body, min_role) in &routes {
        for (i, token) in tokens.iter().enumerate() {
            let c = client_with(*token);
            let url = format!("{}{path}", h.api);
            let req = if *method == "GET" {
                c.get(url)
            } else {
                c.post(url)
            };
            let mut resp = match body {
                Some(b) => req.send_json(b).await,
                None => req.send().await,
            }
            .unwrap();
            let status = resp.status().as_u16();
            let v: serde_json::Value =
                serde_json::from_slice(&resp.body().await.unwrap()).unwrap_or_default();
            let want: &[u16] = match i {
                0 | 1 => &[401],
                n if n - 2 < *min_role => &[403],
                // allowed: the route's own answer (404 for the unknown prompt is fine)
                _ => &[200, 404],
            };
            assert!(
                want.contains(&status),
                "{method} {path} token#{i}: {status} {v}"
            );
            match status {
                401 => assert_eq!(v["error"]["code"], "unauthorized"),
                403 => assert_eq!(v["error"]["code"], "forbidden"),
                _ => {}
            }
            for t in tokens.iter().flatten() {
                assert!(!v.to_string().contains(t), "token echoed in an API error");
            }
        }
    }
    h.shutdown().await;
    let logs = logs::all();
    for t in tokens.iter().flatten() {
        assert!(!logs.contains(t), "operator token {t:?} reached the logs");
    }
}

#[actix_rt::test]
async fn token_name_is_recorded_as_who_decided() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "w1", "Bash", json!({"command":"ls"})).await;
    let mut resp = client_with(Some(APPROVER_TOKEN))
        .post(format!("{}/v1/sessions/s1/permissions/w1", h.api))
        .send_json(&json!({"behavior":"allow"}))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&resp.body().await.unwrap()).unwrap();
    assert_eq!(v["decided_by"], "approver", "{v}");
    h.shutdown().await;
}

/// RFC 7235: the auth scheme is case-insensitive. Every spelling of `Bearer` works on a
/// plain route, the SSE event stream and the WebSocket event stream; other schemes do not.
#[actix_rt::test]
async fn bearer_scheme_is_case_insensitive() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    let with = |value: String| {
        awc::Client::builder()
            .timeout(crate::common::WAIT)
            .add_default_header(("authorization", value))
            .finish()
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let c = with(format!("{scheme} {VIEWER_TOKEN}"));
        let resp = c
            .get(format!("{}/v1/sessions", h.api))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{scheme}: plain route");
        let resp = c
            .get(format!("{}/v1/events", h.api))
            .insert_header(("accept", "text/event-stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{scheme}: SSE stream");
        drop(resp);
        let (resp, _ws) = awc::Client::new()
            .ws(format!("{}/v1/events", h.api))
            .header("authorization", format!("{scheme} {VIEWER_TOKEN}"))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{scheme}: WebSocket stream: {e}"));
        assert_eq!(resp.status().as_u16(), 101, "{scheme}: WebSocket stream");
    }
    for bad in [
        format!("Basic {VIEWER_TOKEN}"),
        format!("Bearer{VIEWER_TOKEN}"),
        format!("Bearerx {VIEWER_TOKEN}"),
        VIEWER_TOKEN.to_owned(),
    ] {
        let resp = with(bad.clone())
            .get(format!("{}/v1/sessions", h.api))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{bad:?}");
    }
    h.shutdown().await;
}
