//! `POST /v1/admin/reload`: admin only; an invalid file is 400 `invalid_config` with every
//! problem and changes nothing; a valid one is applied and answered with what changed.

use std::path::Path;

use ccr_sim::{Script, SimBuilder};
use ccr_supervisor::app;
use serde_json::{json, Value};

use crate::common::{client_with, ADMIN_TOKEN, APPROVER_TOKEN, TOKENS_TOML, VIEWER_TOKEN};

/// A complete config file for the simulator at `base`, with `sessions` and `extra` TOML.
fn config(base: &str, dir: &Path, sessions: &[&str], extra: &str) -> String {
    let mut toml = format!(
        "[api]\nbind = \"127.0.0.1:0\"\n{TOKENS_TOML}\n[ccr]\nbase_url = \"{base}\"\n\
         organization_uuid = \"org-test-1\"\n[reconnect]\ntransient_delay = \"30ms\"\n\
         backoff_initial = \"20ms\"\nbackoff_max = \"200ms\"\n[supervisor]\narbiters = 1\n\
         [ledger]\npath = \"{}\"\n",
        dir.join("ledger.db").display()
    );
    for id in sessions {
        toml.push_str(&format!(
            "[[sessions]]\nid = \"{id}\"\ntoken = \"tok-{id}\"\n"
        ));
    }
    toml.push_str(extra);
    toml
}

async fn post(token: &str, url: &str, body: &str) -> (u16, Value) {
    let mut resp = client_with(Some(token))
        .post(url)
        .content_type("application/json")
        .send_body(body.to_owned())
        .await
        .expect("POST");
    let bytes = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(token: &str, url: &str) -> (u16, Value) {
    let mut resp = client_with(Some(token)).get(url).send().await.expect("GET");
    let bytes = resp.body().limit(1 << 20).await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Sign in to the console with `token`: the `ccr_console` cookie's value.
async fn sign_in(api: &str, token: &str) -> String {
    let resp = awc::Client::builder()
        .disable_redirects()
        .finish()
        .post(format!("{api}/ui/sign-in"))
        .insert_header(("origin", api))
        .send_form(&[("token", token)])
        .await
        .expect("sign-in");
    assert_eq!(resp.status().as_u16(), 303);
    let line = resp.headers().get("set-cookie").expect("a cookie");
    line.to_str()
        .unwrap()
        .strip_prefix("ccr_console=")
        .and_then(|r| r.split(';').next())
        .expect("ccr_console cookie")
        .to_owned()
}

/// `GET /v1/sessions` signed in by the console cookie `cookie`: the status.
async fn with_cookie(api: &str, cookie: &str) -> u16 {
    awc::Client::new()
        .get(format!("{api}/v1/sessions"))
        .insert_header(("cookie", format!("ccr_console={cookie}")))
        .send()
        .await
        .expect("GET")
        .status()
        .as_u16()
}

const RULE: &str = "[[policy.rules]]\nid = \"keep\"\naction = \"allow\"\ntool = \"Read\"\n";

#[actix_rt::test]
async fn reload_route_is_admin_only_all_or_nothing_and_says_what_changed() {
    crate::common::logs::install();
    let sim = SimBuilder::new()
        .session("s1", "tok-s1", Script::empty())
        .session("s2", "tok-s2", Script::empty())
        .start()
        .await
        .expect("simulator starts");
    let dir = tempfile::tempdir().unwrap();
    let base = sim.base_url();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config(&base, dir.path(), &["s1"], RULE)).unwrap();
    let cfg = app::load_config(&path).expect("valid");
    let running = app::start_reloadable(cfg, path.clone())
        .await
        .expect("starts");
    let api = running.api_url();
    let url = format!("{api}/v1/admin/reload");

    let (status, body) = post(APPROVER_TOKEN, &url, "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = post(ADMIN_TOKEN, &url, r#"{"dry_run":true}"#).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{body}"
    );

    // Two problems: both reported, nothing applied (not s2, not the new rule, not the token).
    let bad = config(
        &base,
        dir.path(),
        &["s1", "s2"],
        &format!(
            "{RULE}[[policy.rules]]\nid = \"bad\"\naction = \"allow\"\ntool = \"Bash(\"\n\
             [[api.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken_env = \"CCR_RELOAD_TEST_UNSET\"\n"
        ),
    )
    ;
    std::fs::write(&path, bad.replace("arbiters = 1", "arbiters = \"many\"")).unwrap();
    let (status, body) = post(ADMIN_TOKEN, &url, "{}").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_config")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    for key in ["policy.rules[1].tool", "supervisor.arbiters"] {
        assert!(message.contains(key), "{key} in {message}");
    }
    let (_, sessions) = get(ADMIN_TOKEN, &format!("{api}/v1/sessions")).await;
    assert_eq!(
        sessions["sessions"].as_array().map(Vec::len),
        Some(1),
        "{sessions}"
    );
    let (_, policy) = get(ADMIN_TOKEN, &format!("{api}/v1/policy")).await;
    assert_eq!(
        policy["rules"].as_array().map(Vec::len),
        Some(1),
        "{policy}"
    );

    let approver_cookie = sign_in(&api, APPROVER_TOKEN).await;
    let viewer_cookie = sign_in(&api, VIEWER_TOKEN).await;
    assert_eq!(with_cookie(&api, &approver_cookie).await, 200);

    // Valid: s2 added, a rule added, the approver token removed, a key that needs a restart.
    let secret = "ops-secret-token-value";
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    };
    let approver = TOKENS_TOML
        .split("[[api.tokens]]")
        .find(|t| t.contains("\"approver\""))
        .map(|t| format!("[[api.tokens]]{t}"))
        .unwrap();
    let good = config(
        &base,
        dir.path(),
        &["s1", "s2"],
        &format!(
            "{RULE}[[policy.rules]]\nid = \"grep\"\naction = \"allow\"\ntool = \"Grep\"\n\
             [[api.tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"{digest}\"\n"
        ),
    )
    .replace(&approver, "")
    .replace("bind = \"127.0.0.1:0\"", "bind = \"127.0.0.1:1\"");
    std::fs::write(&path, good).unwrap();
    let (status, summary) = post(ADMIN_TOKEN, &url, "").await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        summary,
        json!({
            "sessions": {"added": ["s2"], "removed": [], "changed": []},
            "policy": {"rules_added": ["grep"], "rules_removed": [], "rules_changed": [],
                       "settings_changed": []},
            "tokens": {"added": ["ops"], "removed": ["approver"], "changed": []},
            "notify": {"added": [], "removed": [], "changed": []},
            "restart_needed": ["api.bind"]
        })
    );
    assert!(
        !summary.to_string().contains(&digest),
        "no digest in the reply"
    );
    assert_eq!(
        get(APPROVER_TOKEN, &format!("{api}/v1/sessions")).await.0,
        401
    );
    assert_eq!(
        with_cookie(&api, &approver_cookie).await,
        401,
        "its sign-in ended"
    );
    assert_eq!(
        with_cookie(&api, &viewer_cookie).await,
        200,
        "an unchanged token's stays"
    );
    let (status, policy) = get(secret, &format!("{api}/v1/policy")).await;
    assert_eq!(status, 200, "the new token works");
    assert_eq!(
        policy["rules"].as_array().map(Vec::len),
        Some(2),
        "{policy}"
    );
    let (_, sessions) = get(secret, &format!("{api}/v1/sessions/s2")).await;
    assert_eq!(sessions["id"], "s2", "{sessions}");

    // The same file again: nothing changes, and `{}` is a body as good as none.
    let (status, again) = post(secret, &url, "{}").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["sessions"],
        json!({"added": [], "removed": [], "changed": []})
    );
    assert_eq!(
        again["tokens"],
        json!({"added": [], "removed": [], "changed": []})
    );
    assert_eq!(
        again["restart_needed"],
        json!(["api.bind"]),
        "still not applied"
    );

    running.shutdown(std::time::Duration::from_secs(5)).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn a_reload_refused_by_a_stopping_supervisor_changes_nothing_and_says_so() {
    crate::common::logs::install();
    let sim = SimBuilder::new()
        .session("s1", "tok-s1", Script::empty())
        .start()
        .await
        .expect("simulator starts");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config(&sim.base_url(), dir.path(), &["s1"], RULE)).unwrap();
    let cfg = app::load_config(&path).expect("valid");
    let running = app::start_reloadable(cfg, path.clone())
        .await
        .expect("starts");
    let api = running.api_url();
    let more =
        format!("{RULE}[[policy.rules]]\nid = \"grep\"\naction = \"allow\"\ntool = \"Grep\"\n");
    std::fs::write(&path, config(&sim.base_url(), dir.path(), &["s1"], &more)).unwrap();
    running
        .supervisor
        .send(ccr_supervisor::supervisor::ShutdownSessions)
        .await
        .unwrap();
    let (status, body) = post(ADMIN_TOKEN, &format!("{api}/v1/admin/reload"), "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing changed"), "{message}");
    let (_, policy) = get(ADMIN_TOKEN, &format!("{api}/v1/policy")).await;
    assert_eq!(
        policy["rules"].as_array().map(Vec::len),
        Some(1),
        "{policy}"
    );
    running.shutdown(std::time::Duration::from_secs(5)).await;
    sim.stop().await;
}
