//! The shipped `config.toml` (embedded simulator, demo sessions) works as the default run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{logs, wait_bus, WAIT};
use ccr_sim::SimEvent;
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

/// Issue 23.3: the demo's sessions outlive a restart like real CCR sessions, so after a
/// restart every prompt the demo shows is one a demo session still waits on (confirmed),
/// and answering it reaches that session.
#[actix_rt::test]
async fn after_a_restart_every_demo_prompt_shown_is_still_waited_on() {
    logs::install();
    let toml = include_str!("../../config.toml");
    let data = tempfile::tempdir().unwrap();
    let ledger = data.path().join("ledger.db").display().to_string();
    let env = || -> HashMap<String, String> {
        [
            ("CCR_SUPERVISOR__API__BIND", "127.0.0.1:0"),
            ("CCR_SUPERVISOR__SIM__TURN_PAUSE", "10ms"),
            ("CCR_SUPERVISOR__LEDGER__PATH", ledger.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let first = app::start(config::load_from_str(toml, env()).unwrap())
        .await
        .unwrap();
    let mut bus = first.bus.subscribe();
    // Let every demo session ask something, then stop with their prompts unanswered.
    let mut asked = std::collections::HashSet::new();
    while asked.len() < 3 {
        if let Event::PermissionRequested { session_id, .. } =
            wait_bus(&mut bus, |e| matches!(e, Event::PermissionRequested { .. })).await
        {
            asked.insert(session_id);
        }
    }
    first.shutdown(Duration::from_secs(5)).await;

    let second = app::start(config::load_from_str(toml, env()).unwrap())
        .await
        .unwrap();
    let url = second.api_url();
    let client = awc::Client::builder().timeout(WAIT).finish();
    // Every prompt restored from the ledger is re-sent by its (still waiting) demo session.
    let mut confirmations = second.bus.subscribe();
    let listed = loop {
        let mut resp = client
            .get(format!("{url}/v1/permissions"))
            .insert_header(("authorization", "Bearer demo-viewer-token"))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = resp.json().limit(64 << 20).await.unwrap();
        let prompts = body["permissions"].as_array().cloned().unwrap_or_default();
        if !prompts.is_empty() && prompts.iter().all(|p| p["confirmed"] == true) {
            break prompts;
        }
        // Subscribed before looking: a confirmation after the look wakes us.
        wait_bus(&mut confirmations, |e| {
            matches!(
                e,
                Event::PermissionConfirmed { .. } | Event::PermissionRequested { .. }
            )
        })
        .await;
    };
    // "Allow the first pending prompt": the demo session waiting on it gets the answer.
    let first_pending = &listed[0];
    let session = first_pending["session_id"].as_str().unwrap().to_owned();
    let request = first_pending["request_id"].as_str().unwrap().to_owned();
    let mut sim_events = second.sim.as_ref().expect("embedded simulator").subscribe();
    let mut resp = client
        .post(format!("{url}/v1/sessions/{session}/permissions/{request}"))
        .insert_header(("authorization", "Bearer demo-approver-token"))
        .send_json(&serde_json::json!({"behavior":"allow"}))
        .await
        .unwrap();
    let receipt: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(receipt["delivery"], "sent", "{receipt}");
    crate::common::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if *request_id == request),
    )
    .await;
    second.shutdown(Duration::from_secs(5)).await;
}
