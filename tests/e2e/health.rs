//! /healthz, /readyz and /metrics, with metric values after a scripted scenario.

use crate::common::{client_with, wait_bus, Harness, Sess};
use ccr_protocol::metrics::sample;
use ccr_supervisor::events::Event;
use serde_json::json;

async fn metrics(h: &Harness) -> String {
    let mut resp = h
        .http
        .get(format!("{}/metrics", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[actix_rt::test]
async fn health_ready_and_metrics_follow_a_scenario() {
    let bad = Sess::new("bad").token_toml("token = \"nope\"", "right");
    let mut h = Harness::start(vec![Sess::new("s1"), bad], &[]).await;
    h.wait_sim_connected("s1").await;
    // The simulator sees the socket before the supervisor marks it connected.
    h.wait_state("s1", "connected").await;
    h.wait_state("bad", "failed").await;
    let mut anon = client_with(None)
        .get(format!("{}/healthz", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 200, "{:?}", anon.body().await);
    let mut anon = client_with(None)
        .get(format!("{}/readyz", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401, "{:?}", anon.body().await);
    let (status, ready) = h.get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(
        ready["not_connected"],
        json!([{"id":"bad","state":"failed"}]),
        "{ready}"
    );

    let before = metrics(&h).await;
    assert_eq!(
        value(&before, "ccr_supervisor_sessions{state=\"connected\"}"),
        1.0
    );
    assert_eq!(
        value(&before, "ccr_supervisor_sessions{state=\"failed\"}"),
        1.0
    );
    let mut bus = h.bus();
    for i in 0..3 {
        h.sim.push("s1", json!({"type":"assistant","i":i}));
    }
    h.sim.push_text("s1", "garbage");
    h.prompt("s1", "m1", "Bash", json!({"command":"ls"})).await;
    wait_bus(
        &mut bus,
        |e| matches!(e, Event::SdkMessage { message, .. } if message.contains("\"i\":2")),
    )
    .await;
    let mid = metrics(&h).await;
    assert_eq!(value(&mid, "ccr_supervisor_prompts_pending"), 1.0);
    assert_eq!(
        value(&mid, "ccr_supervisor_frames_in_total{kind=\"sdk\"}"),
        3.0
    );
    assert_eq!(
        value(&mid, "ccr_supervisor_frames_in_total{kind=\"invalid\"}"),
        1.0
    );
    assert_eq!(
        value(
            &mid,
            "ccr_supervisor_frames_in_total{kind=\"control_request\"}"
        ),
        1.0
    );
    assert_eq!(
        h.decide("s1", "m1", json!({"behavior":"allow"})).await.0,
        200
    );
    let after = metrics(&h).await;
    assert_eq!(value(&after, "ccr_supervisor_prompts_pending"), 0.0);
    assert_eq!(
        value(
            &after,
            "ccr_supervisor_decisions_total{outcome=\"allowed\",source=\"operator\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&after, "ccr_supervisor_decision_latency_seconds_count"),
        1.0
    );
    assert_eq!(value(&after, "ccr_supervisor_restarts_total"), 0.0);
    // The prompt and its answer were journaled before the answer was written: two
    // appends were timed.
    assert!(
        value(&after, "ccr_supervisor_ledger_commit_seconds_count") >= 2.0,
        "{after}"
    );
    // An audit read waits for the applier, so the answer is in SQLite afterwards and
    // its transactions (and their queue waits) were timed.
    let (status, audit) = h.get("/v1/audit?session_id=s1").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["rows"][0]["outcome"], "allowed", "{audit}");
    let applied = metrics(&h).await;
    for name in ["apply", "queue_wait"] {
        let count = format!("ccr_supervisor_ledger_{name}_seconds_count");
        assert!(value(&applied, &count) >= 1.0, "{count}: {applied}");
    }
    h.shutdown().await;
}
