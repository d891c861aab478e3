//! The console over plain HTTP (the browser tests in tests/console drive a real Chromium):
//! sign-in and its cookie, the cookie on the API with its Origin check, sign-out, the
//! security headers, and hostile session content rendered inert.

use crate::common::{logs, Harness, Sess, APPROVER_TOKEN, VIEWER_TOKEN};
use serde_json::json;

mod export;

/// A client that follows no redirects and sends no token.
fn browser() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .timeout(crate::common::WAIT)
        .finish()
}

/// Sign in with `token`; the `ccr_console` cookie's value and the whole Set-Cookie line.
async fn sign_in(h: &Harness, token: &str) -> (String, String) {
    let resp = browser()
        .post(format!("{}/ui/sign-in", h.api))
        .insert_header(("origin", h.api.as_str()))
        .send_form(&[("token", token)])
        .await
        .expect("sign-in");
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers().get("location").unwrap(), "/");
    let line = resp
        .headers()
        .get("set-cookie")
        .expect("a cookie")
        .to_str()
        .unwrap()
        .to_owned();
    let value = line
        .strip_prefix("ccr_console=")
        .and_then(|r| r.split(';').next())
        .expect("ccr_console cookie")
        .to_owned();
    (value, line)
}

async fn get_page(
    h: &Harness,
    path: &str,
    cookie: Option<&str>,
) -> (u16, String, awc::http::header::HeaderMap) {
    let mut req = browser().get(format!("{}{path}", h.api));
    if let Some(c) = cookie {
        req = req.insert_header(("cookie", format!("ccr_console={c}")));
    }
    let mut resp = req.send().await.expect("GET");
    let body = resp.body().limit(8 << 20).await.expect("body");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
        resp.headers().clone(),
    )
}

async fn post_with_cookie(
    h: &Harness,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut req = browser()
        .post(format!("{}{path}", h.api))
        .insert_header(("cookie", format!("ccr_console={cookie}")));
    if let Some(o) = origin {
        req = req.insert_header(("origin", o));
    }
    let mut resp = req.send_json(&body).await.expect("POST");
    let bytes = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

#[actix_rt::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_the_token_goes_nowhere() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    // Not signed in: every page sends the browser to the sign-in form.
    let (status, _, headers) = get_page(&h, "/", None).await;
    assert_eq!(status, 303);
    assert_eq!(headers.get("location").unwrap(), "/ui/sign-in");
    let (status, form, _) = get_page(&h, "/ui/sign-in", None).await;
    assert_eq!(status, 200);
    assert!(form.contains(r#"id="sign-in""#) && form.contains(r#"type="password""#));

    // A wrong token: the form again, 401, no cookie.
    let resp = browser()
        .post(format!("{}/ui/sign-in", h.api))
        .insert_header(("origin", h.api.as_str()))
        .send_form(&[("token", "not-a-token")])
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get("set-cookie").is_none());

    let (cookie, line) = sign_in(&h, APPROVER_TOKEN).await;
    let lower = line.to_ascii_lowercase();
    for attr in ["httponly", "samesite=strict", "path=/", "max-age=43200"] {
        assert!(lower.contains(attr), "{line}");
    }
    assert!(!lower.contains("secure"), "plain http: not Secure ({line})");
    assert_eq!(cookie.len(), 64);
    assert!(!line.contains(APPROVER_TOKEN));

    let (status, page, headers) = get_page(&h, "/", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"data-role="approver""#));
    assert!(
        !page.contains(APPROVER_TOKEN),
        "the token is never on a page"
    );
    let csp = headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
    assert!(
        !logs::all().contains(APPROVER_TOKEN),
        "the token is never logged"
    );

    // Behind a TLS proxy the cookie is Secure.
    let resp = browser()
        .post(format!("{}/ui/sign-in", h.api))
        .insert_header(("origin", "https://ccr.example.com"))
        .insert_header(("x-forwarded-proto", "https"))
        .insert_header(("x-forwarded-host", "ccr.example.com"))
        .send_form(&[("token", APPROVER_TOKEN)])
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let line = resp.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(line.to_ascii_lowercase().contains("secure"), "{line}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn the_cookie_answers_only_from_the_consoles_own_origin() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let (cookie, _) = sign_in(&h, APPROVER_TOKEN).await;
    let path = "/v1/sessions/s1/permissions/r1";
    h.prompt("s1", "r1", "Bash", json!({"command": "ls"})).await;

    // Reads work with the cookie alone.
    let (status, body, _) = get_page(&h, "/v1/permissions", Some(&cookie)).await;
    assert_eq!(status, 200, "{body}");

    // A forged cross-site POST: no Origin, or another one, is refused before anything.
    for origin in [None, Some("http://evil.example"), Some("null")] {
        let (status, body) =
            post_with_cookie(&h, path, &cookie, origin, json!({"behavior": "allow"})).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("cross_origin")),
            "{origin:?}"
        );
    }
    assert!(h.answers("s1", "r1").is_empty());

    // From the console's origin it answers, once.
    let (status, body) = post_with_cookie(
        &h,
        path,
        &cookie,
        Some(&h.api),
        json!({"behavior": "allow"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decided_by"], "approver");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_viewer_sees_no_controls_and_is_refused_anyway() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "r1", "Bash", json!({"command": "ls"})).await;
    let (cookie, _) = sign_in(&h, VIEWER_TOKEN).await;
    let (status, page, _) = get_page(&h, "/", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"data-request="r1""#),
        "the viewer sees the prompt"
    );
    for control in [
        r#"class="allow""#,
        r#"class="deny""#,
        "bulk-allow",
        "input class=\"select\"",
    ] {
        assert!(!page.contains(control), "viewer page has {control}");
    }
    let (_, prompt_page, _) = get_page(&h, "/ui/prompts/s1/r1", Some(&cookie)).await;
    assert!(!prompt_page.contains(r#"id="allow""#));
    let (status, body) = post_with_cookie(
        &h,
        "/v1/sessions/s1/permissions/r1",
        &cookie,
        Some(&h.api),
        json!({"behavior": "allow"}),
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));
    assert!(h.answers("s1", "r1").is_empty());
    h.shutdown().await;
}

#[actix_rt::test]
async fn sign_out_ends_the_cookie_on_the_server() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    let (cookie, _) = sign_in(&h, APPROVER_TOKEN).await;
    assert_eq!(get_page(&h, "/v1/sessions", Some(&cookie)).await.0, 200);
    // Sign-out is itself Origin-checked (no forced sign-out from another site).
    let forged = browser()
        .post(format!("{}/ui/sign-out", h.api))
        .insert_header(("cookie", format!("ccr_console={cookie}")))
        .insert_header(("origin", "http://evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(get_page(&h, "/v1/sessions", Some(&cookie)).await.0, 200);

    let resp = browser()
        .post(format!("{}/ui/sign-out", h.api))
        .insert_header(("cookie", format!("ccr_console={cookie}")))
        .insert_header(("origin", h.api.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let cleared = resp.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cleared.starts_with("ccr_console=;"), "{cleared}");
    // The old value is dead even if a browser kept it.
    assert_eq!(get_page(&h, "/v1/sessions", Some(&cookie)).await.0, 401);
    let (status, _, headers) = get_page(&h, "/ui/inbox/rows", Some(&cookie)).await;
    assert_eq!(status, 303);
    assert_eq!(headers.get("hx-redirect").unwrap(), "/ui/sign-in");
    h.shutdown().await;
}

#[actix_rt::test]
async fn hostile_session_content_is_escaped_everywhere() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let hostile = r#"<script>window.__xss=1</script><img src=x onerror="window.__xss=2"><a href="javascript:alert(1)">x</a>"#;
    let terminal = "\u{1b}]0;pwned\u{7}\u{1b}[2Jclear";
    h.prompt(
        "s1",
        "r1",
        "Bash",
        json!({"command": format!("{hostile}{terminal}")}),
    )
    .await;
    h.prompt(
        "s1",
        "r2",
        "Edit",
        json!({"file_path": "<b>f</b>", "old_string": hostile, "new_string": "safe"}),
    )
    .await;
    let (cookie, _) = sign_in(&h, APPROVER_TOKEN).await;
    for path in [
        "/",
        "/ui/inbox/rows",
        "/ui/prompts/s1/r1",
        "/ui/prompts/s1/r2",
        "/ui/sessions/s1",
        "/ui/sessions/s1/transcript",
        "/ui/audit",
    ] {
        let (status, page, _) = get_page(&h, path, Some(&cookie)).await;
        assert_eq!(status, 200, "{path}");
        for raw in [
            "<script>window",
            "<img src=x",
            "<a href=\"javascript:",
            "<b>f</b>",
        ] {
            assert!(!page.contains(raw), "{path} has {raw} unescaped");
        }
        assert!(!page.contains('\u{1b}'), "{path} has a terminal escape");
        if path.starts_with("/ui/prompts/s1/r1") {
            assert!(
                page.contains("&lt;script&gt;window.__xss=1&lt;/script&gt;"),
                "{page}"
            );
            assert!(page.contains("clear"));
        }
    }
    h.shutdown().await;
}

#[actix_rt::test]
async fn console_config_sets_the_public_origin_and_bounds_sign_ins() {
    let h = Harness::start_with(
        vec![Sess::new("s1")],
        &[],
        "[console]\npublic_url = \"https://ccr.example.com/\"\nmax_sessions = 1\n",
    )
    .await;
    // The public URL's origin is the console's too (a proxy in front rewrote the host).
    let resp = browser()
        .post(format!("{}/ui/sign-in", h.api))
        .insert_header(("origin", "https://ccr.example.com"))
        .send_form(&[("token", APPROVER_TOKEN)])
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let line = resp.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        line.to_ascii_lowercase().contains("secure"),
        "https public_url: Secure ({line})"
    );
    let first = line
        .strip_prefix("ccr_console=")
        .and_then(|r| r.split(';').next())
        .unwrap()
        .to_owned();
    assert_eq!(get_page(&h, "/v1/sessions", Some(&first)).await.0, 200);
    // One sign-in at most: the next one pushes the first out.
    let (second, _) = sign_in(&h, VIEWER_TOKEN).await;
    assert_eq!(get_page(&h, "/v1/sessions", Some(&first)).await.0, 401);
    assert_eq!(get_page(&h, "/v1/sessions", Some(&second)).await.0, 200);
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_websocket_from_another_origin_cannot_ride_the_cookie() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    let (cookie, _) = sign_in(&h, VIEWER_TOKEN).await;
    let ws_url = format!("{}/v1/events", h.api.replacen("http", "ws", 1));
    // Another port's page on the same host: same site, so the cookie goes along.
    let refused = awc::Client::new()
        .ws(&ws_url)
        .origin("http://127.0.0.1:1")
        .header("cookie", format!("ccr_console={cookie}"))
        .connect()
        .await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 403)
        }
        other => panic!(
            "a foreign-origin upgrade was not refused: {:?}",
            other.map(|r| r.0.status())
        ),
    }
    // The console's own page may.
    let (resp, _socket) = awc::Client::new()
        .ws(&ws_url)
        .origin(h.api.as_str())
        .header("cookie", format!("ccr_console={cookie}"))
        .connect()
        .await
        .expect("own-origin upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    h.shutdown().await;
}

#[actix_rt::test]
async fn with_auth_disabled_another_origin_cannot_change_anything() {
    let mut h = Harness::start(
        vec![Sess::new("s1")],
        &[("CCR_SUPERVISOR__API__AUTH", "disabled")],
    )
    .await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "r1", "Bash", json!({"command": "ls"})).await;
    let forged = browser()
        .post(format!("{}/v1/sessions/s1/permissions/r1", h.api))
        .insert_header(("origin", "http://evil.example"))
        .send_json(&json!({"behavior": "allow"}))
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert!(h.answers("s1", "r1").is_empty());
    // Without an Origin (curl, ctl) it still answers, as auth = "disabled" means.
    let resp = browser()
        .post(format!("{}/v1/sessions/s1/permissions/r1", h.api))
        .send_json(&json!({"behavior": "allow"}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    h.shutdown().await;
}
