//! Console tests in a real browser: headless Debian `chromium` through `chromedriver`
//! (WebDriver, fantoccini), against the real service and the simulator over 127.0.0.1.
//!
//! `cargo xtask test` installs the browser and runs them (`CCR_BROWSER_TESTS=required`);
//! a plain `cargo test` without the browser skips them with a notice. They run one at a
//! time (see `support::lock`). Screenshots land in `target/console-screenshots/`.
//! The page contract they test (ids, classes, routes) is the console's DOM contract.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod answers;
mod auth;
mod inbox;
mod phone;
mod screenshots;
mod viewer;
mod xss;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use ccr_sim::SimEvent;
use common::{Harness, Sess};
use serde_json::{json, Value};
use support::{Browser, Turn, DESKTOP};

/// This test's turn and a harness whose sessions are connected; `None` = browser tests skipped.
async fn start(sessions: Vec<Sess>) -> Option<(Turn, Harness, Instant)> {
    let turn = support::lock().await?;
    let started = Instant::now();
    let ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
    let mut h = Harness::start(sessions, &[]).await;
    for id in &ids {
        h.wait_sim_connected(id).await;
    }
    Some((turn, h, started))
}

/// The first answer the simulator received for `req`, waiting for it.
async fn wait_answer(h: &mut Harness, session: &str, req: &str) -> Value {
    loop {
        if let Some(f) = h.answers(session, req).into_iter().next() {
            return f;
        }
        // The recorded frames are the truth; an event only says "look again".
        h.wait_sim(|e| matches!(e, SimEvent::Received { .. })).await;
    }
}

/// Every answer frame for `req`, as the exact text the simulator received.
fn raw_answers(h: &Harness, session: &str, req: &str) -> Vec<String> {
    h.sim
        .received_raw(session)
        .into_iter()
        .filter(|t| {
            serde_json::from_str::<Value>(t).is_ok_and(|f| {
                f["type"] == "control_response" && f["response"]["request_id"] == req
            })
        })
        .collect()
}

/// After this, every frame the supervisor sent `session` earlier has reached the simulator:
/// a fresh prompt answered through the API, and its answer received (one ordered socket).
async fn barrier(h: &mut Harness, session: &str) {
    static N: AtomicU32 = AtomicU32::new(0);
    let req = format!("barrier-{}", N.fetch_add(1, Ordering::Relaxed));
    h.prompt(session, &req, "Read", json!({"file_path":"/dev/null"}))
        .await;
    let (status, body) = h.decide(session, &req, json!({"behavior":"allow"})).await;
    assert_eq!(status, 200, "{body}");
    wait_answer(h, session, &req).await;
}

/// The page's answer to `ui_req` reached the simulator exactly once, byte for byte what the
/// API sends for the same decision (`api_req`, a twin prompt answered with the bearer token).
async fn assert_same_bytes_once(h: &mut Harness, session: &str, ui_req: &str, api_req: &str) {
    wait_answer(h, session, ui_req).await;
    wait_answer(h, session, api_req).await;
    barrier(h, session).await;
    let ui = raw_answers(h, session, ui_req);
    let api = raw_answers(h, session, api_req);
    assert_eq!(
        ui.len(),
        1,
        "the page's answer reached the session once: {ui:?}"
    );
    assert_eq!(api.len(), 1, "{api:?}");
    assert_eq!(
        ui[0],
        api[0].replace(api_req, ui_req),
        "the page sent other bytes than the API"
    );
}

/// Answer `req` through the API as the admin (the twin of a page answer).
async fn api_decide(h: &Harness, session: &str, req: &str, body: Value) {
    let (status, r) = h.decide(session, req, body).await;
    assert_eq!(status, 200, "API answer to {req}: {r}");
}

/// CSS for the inbox row of `req`.
fn row(req: &str) -> String {
    format!(".prompt-row[data-session][data-request=\"{req}\"]")
}

/// Print a test's wall time (the suite's figures come from these lines).
fn done(name: &str, started: Instant) {
    eprintln!("console test {name}: {:?}", started.elapsed());
}

/// The harness itself: chromium reaches the service over 127.0.0.1 and can take a screenshot.
#[actix_rt::test]
async fn browser_reaches_the_service() {
    let Some((turn, h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.goto("/healthz").await;
    let text = b.js("return document.body.innerText").await;
    assert!(text.as_str().is_some_and(|t| t.contains("ok")), "{text}");
    let size = b.js("return [window.innerWidth, window.innerHeight]").await;
    assert_eq!(size, json!([DESKTOP.0, DESKTOP.1]));
    let png = b.screenshot("healthz").await;
    assert!(std::fs::metadata(png).expect("png").len() > 100);
    b.close().await;
    h.shutdown().await;
    done("browser_reaches_the_service", started);
}
