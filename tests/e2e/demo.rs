//! The shipped `config.toml` (embedded simulator, demo sessions) works as the default run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{logs, wait_bus, WAIT};
use ccr_supervisor::events::Event;
use ccr_supervisor::{app, config};

#[actix_rt::test]
async fn shipped_config_runs_demo_sessions_that_produce_prompts() {
    logs::install();
    let toml = include_str!("../../config.toml");
    // Same file, but on a free port and with short pauses between demo turns.
    let data = tempfile::tempdir().unwrap();
    let ledger = data.path().join("ledger.db").display().to_string();
    let env: HashMap<String, String> = [
        ("CCR_SUPERVISOR__API__BIND", "127.0.0.1:0"),
        ("CCR_SUPERVISOR__SIM__TURN_PAUSE", "10ms"),
        ("CCR_SUPERVISOR__LEDGER__PATH", ledger.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let cfg = config::load_from_str(toml, env).expect("shipped config.toml is valid");
    assert!(cfg.sim.embedded);
    assert!(cfg.sessions.len() >= 3);
    let running = app::start(cfg).await.unwrap();
    let mut bus = running.bus.subscribe();
    let (session, request) =
        match wait_bus(&mut bus, |e| matches!(e, Event::PermissionRequested { .. })).await {
            Event::PermissionRequested {
                session_id,
                request_id,
                ..
            } => (session_id, request_id),
            _ => unreachable!(),
        };
    let url = format!(
        "{}/v1/sessions/{session}/permissions/{request}",
        running.api_url()
    );
    let mut resp = awc::Client::builder()
        .timeout(WAIT)
        .finish()
        .post(url)
        .insert_header(("authorization", "Bearer demo-approver-token"))
        .send_json(&serde_json::json!({"behavior":"allow"}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.body().await);
    // The demo session goes on with its turn: it ends with a `result` on that session.
    let session: Arc<str> = session;
    wait_bus(&mut bus, |e| {
        matches!(e, Event::SdkMessage { session_id, msg_type, .. } if *session_id == session && msg_type == "result")
    })
    .await;
    running.shutdown(Duration::from_secs(5)).await;
}
