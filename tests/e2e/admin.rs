//! Runtime session management: POST/DELETE /v1/sessions and the SIGHUP replace-set logic.

use crate::common::{client_with, wait_bus, Harness, Sess, APPROVER_TOKEN};
use ccr_sim::{Script, SimEvent};
use ccr_supervisor::config::session_from_json;
use ccr_supervisor::events::Event;
use ccr_supervisor::supervisor::ReplaceSessions;
use serde_json::json;

#[actix_rt::test]
async fn add_session_at_run_time() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    // `token_env` is the one source runtime sessions get by default; cargo sets this one.
    h.sim.add_session("late", "ccr-supervisor", Script::empty());
    let body = json!({"id":"late","labels":["added"],"token_env":"CARGO_PKG_NAME"});
    let (status, created) = h.post("/v1/sessions", body.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], "late");
    h.wait_connections("late", 1).await;
    h.wait_state("late", "connected").await;
    let (status, err) = h.post("/v1/sessions", body).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("session_exists"))
    );
    let (status, err) = h
        .post(
            "/v1/sessions",
            json!({"id":"lit","token":"sk-inline-secret"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{err}"
    );
    assert!(!err.to_string().contains("sk-inline-secret"));
    let (status, _) = h.post("/v1/sessions", json!({"id":"x"})).await;
    assert_eq!(status, 400, "a token source is required");
    let mut resp = client_with(Some(APPROVER_TOKEN))
        .post(format!("{}/v1/sessions", h.api))
        .send_json(&json!({"id":"y","token_env":"X"}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403, "{:?}", resp.body().await);
    h.shutdown().await;
}

/// DELETE closes the session and denies its pending prompt for it (the session itself
/// still waits on it): added back, the session replays the prompt and gets that deny,
/// once, instead of the prompt being ignored or shown anew.
#[actix_rt::test]
async fn delete_closes_cleanly_and_denies_pending_prompts_for_a_session_added_back() {
    let mut h = Harness::start(vec![Sess::new("s1"), Sess::new("s2")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "gone", "Bash", json!({"command":"make"}))
        .await;
    let mut bus = h.bus();
    let mut resp = h
        .http
        .delete(format!("{}/v1/sessions/s1", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.body().await);
    h.wait_sim(|e| matches!(e, SimEvent::Disconnected { session, .. } if session == "s1"))
        .await;
    wait_bus(&mut bus, |e| {
        matches!(e, Event::PermissionAnswered { request_id, behavior, decided_by, .. }
            if request_id == "gone" && *behavior == "deny" && decided_by == "session_removed")
    })
    .await;
    assert_eq!(h.get("/v1/sessions/s1").await.0, 404);
    assert_eq!(h.get("/v1/permissions").await.1["permissions"], json!([]));
    assert_eq!(h.sim.connections("s1"), 1, "not reconnected");
    assert!(
        h.sim.answers("s1", "gone").is_empty(),
        "nobody to write it to"
    );
    assert_eq!(
        h.session("s2").await["state"],
        "connected",
        "neighbour untouched"
    );
    let mut resp = h
        .http
        .delete(format!("{}/v1/sessions/s1", h.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404, "{:?}", resp.body().await);

    // Added back: its replay of the prompt gets the removal's deny.
    h.sim.set_token("s1", "ccr-supervisor");
    let (status, added) = h
        .post(
            "/v1/sessions",
            json!({"id":"s1","token_env":"CARGO_PKG_NAME"}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    h.wait_sim(|e| matches!(e, SimEvent::Answered { session, request_id, .. } if session == "s1" && request_id == "gone"))
        .await;
    let answers = h.sim.answers("s1", "gone");
    assert_eq!(answers.len(), 1, "{answers:?}");
    let answer = &answers[0]["response"]["response"];
    assert_eq!(answer["behavior"], "deny", "{answers:?}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("removed")),
        "{answers:?}"
    );
    assert_eq!(
        h.get("/v1/permissions").await.1["permissions"],
        json!([]),
        "not shown anew"
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn replace_set_adds_removes_and_restarts_changed() {
    let mut h = Harness::start(vec![Sess::new("s1"), Sess::new("s2")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.wait_sim_connected("s2").await;
    h.sim.add_session("s3", "tok-s3", Script::empty());
    let spec = |v: serde_json::Value| session_from_json(&v).unwrap();
    let wanted = vec![
        spec(json!({"id":"s2","token_env":"CARGO_PKG_NAME","labels":["changed"]})),
        spec(json!({"id":"s3","token_command":"printf tok-s3"})),
    ];
    h.sim.set_token("s2", "ccr-supervisor");
    let changes = h
        .app()
        .supervisor
        .send(ReplaceSessions(wanted))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changes.added, ["s3"]);
    assert_eq!(changes.removed, ["s1"]);
    assert_eq!(changes.changed, ["s2"]);
    h.wait_connections("s2", 2).await;
    h.wait_connections("s3", 1).await;
    let s2 = h.wait_state("s2", "connected").await;
    assert_eq!(s2["labels"], json!(["changed"]));
    assert_eq!(
        s2["counters"]["restarts"], 0,
        "a spec change is not a crash"
    );
    h.wait_state("s3", "connected").await;
    assert_eq!(h.get("/v1/sessions/s1").await.0, 404);
    let same = h
        .app()
        .supervisor
        .send(ReplaceSessions(vec![
            spec(json!({"id":"s2","token_env":"CARGO_PKG_NAME","labels":["changed"]})),
            spec(json!({"id":"s3","token_command":"printf tok-s3"})),
        ]))
        .await
        .unwrap()
        .unwrap();
    assert!(
        same.added.is_empty() && same.removed.is_empty() && same.changed.is_empty(),
        "{same:?}"
    );
    h.shutdown().await;
}
