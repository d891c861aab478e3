//! /healthz, /readyz and /metrics, with metric values after a scripted scenario.

use crate::common::{client_with, wait_bus, Harness, Sess};
use ccr_protocol::metrics::sample;
use ccr_supervisor::events::Event;
use serde_json::json;

async fn metrics(h: &Harness) -> String {
    scrape(&h.http, &h.api, Some("application/openmetrics-text")).await
}

/// `/metrics` as `client` gets it, asking for `accept`; checks the content type matches.
pub async fn scrape(client: &awc::Client, api: &str, accept: Option<&str>) -> String {
    let mut req = client.get(format!("{api}/metrics"));
    if let Some(a) = accept {
        req = req.insert_header(("accept", a));
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let want = match accept {
        Some(a) if a.starts_with("application/openmetrics-text") => {
            "application/openmetrics-text; version=1.0.0"
        }
        _ => "text/plain; version=0.0.4",
    };
    assert!(ct.starts_with(want), "{ct} for {accept:?}");
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
    // Readiness needs no token and names no session.
    let mut anon = client_with(None)
        .get(format!("{}/readyz", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 200);
    let ready: serde_json::Value = anon.json().await.unwrap();
    assert_eq!(ready, json!({"ready": true, "reasons": []}));
    // The details are a viewer's.
    let mut anon = client_with(None)
        .get(format!("{}/v1/health", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401, "{:?}", anon.body().await);
    let (status, health) = h.get("/v1/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        health,
        json!({"ready": true, "reasons": [], "sessions": 2,
            "not_connected": [{"id":"bad","state":"failed"}]}),
    );
    // /metrics needs a viewer token by default.
    let anon = client_with(None)
        .get(format!("{}/metrics", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    // The text format unless OpenMetrics is asked for.
    for accept in [None, Some("text/plain"), Some("*/*")] {
        let text = scrape(&h.http, &h.api, accept).await;
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("# TYPE ccr_supervisor_frames_in_total counter\n"),
            "{text}"
        );
    }

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
        value(
            &after,
            "ccr_supervisor_decision_latency_seconds_count{source=\"operator\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "ccr_supervisor_decision_latency_seconds_count{source=\"rule\"}"
        ),
        0.0
    );
    assert_eq!(
        value(&after, "ccr_supervisor_ledger_write_errors_total"),
        0.0
    );
    assert!(value(&after, "process_resident_memory_bytes") > 0.0);
    assert!(value(&after, "process_open_fds") > 0.0);
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

#[actix_rt::test]
async fn metrics_auth_none_opens_metrics_and_nothing_else() {
    let h = Harness::start(
        vec![Sess::new("s1")],
        &[("CCR_SUPERVISOR__API__METRICS_AUTH", "none")],
    )
    .await;
    let anon = client_with(None);
    let text = scrape(&anon, &h.api, None).await;
    assert!(text.contains("ccr_supervisor_build_info{"), "{text}");
    let resp = anon
        .get(format!("{}/v1/health", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    h.shutdown().await;
}
