//! Connecting per PROTOCOL §1: URL, headers, every token source, secrets kept out of logs.

use crate::common::{logs, Harness, Sess};
use serde_json::json;

#[actix_rt::test]
async fn connects_with_bearer_version_and_org() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let seen = h.sim.last_headers("s1").expect("an attempt was seen");
    assert_eq!(seen.bearer.as_deref(), Some("tok-s1"));
    assert_eq!(seen.anthropic_version.as_deref(), Some("2023-06-01"));
    assert_eq!(seen.organization_uuid.as_deref(), Some("org-test-1"));
    let s = h.wait_state("s1", "connected").await;
    assert_eq!(s["id"], "s1");
    assert_eq!(s["labels"], json!(["test"]));
    assert!(s["connected_since"].is_string(), "{s}");
    assert_eq!(s["pending"], 0);
    h.shutdown().await;
}

#[actix_rt::test]
async fn every_token_source_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "file-token\n").unwrap();
    let sessions = vec![
        Sess::new("lit"),
        // cargo sets CARGO_PKG_NAME for the test process: an env var we do not have to set.
        Sess::new("env").token_toml("token_env = \"CARGO_PKG_NAME\"", "ccr-supervisor"),
        Sess::new("file").token_toml(
            &format!("token_file = {:?}", file.display().to_string()),
            "file-token",
        ),
        Sess::new("cmd").token_toml("token_command = \"printf cmd-token\"", "cmd-token"),
    ];
    let h = Harness::start(sessions, &[]).await;
    for id in ["lit", "env", "file", "cmd"] {
        h.wait_state(id, "connected").await;
    }
    h.shutdown().await;
}

#[actix_rt::test]
async fn token_is_read_afresh_on_every_connect() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "first-token").unwrap();
    let sess = Sess::new("rot").token_toml(
        &format!("token_file = {:?}", file.display().to_string()),
        "first-token",
    );
    let mut h = Harness::start(vec![sess], &[]).await;
    h.wait_sim_connected("rot").await;
    assert_eq!(
        h.sim.last_headers("rot").unwrap().bearer.as_deref(),
        Some("first-token")
    );
    // Rotate on both sides, then drop the socket: the reconnect must carry the new token.
    std::fs::write(&file, "second-token\n").unwrap();
    h.sim.set_token("rot", "second-token");
    let before = h.sim.connections("rot");
    assert!(h.sim.drop_connection("rot"));
    h.wait_connections("rot", before + 1).await;
    assert_eq!(
        h.sim.last_headers("rot").unwrap().bearer.as_deref(),
        Some("second-token")
    );
    assert_eq!(h.sim.connections("rot"), 2);
    h.shutdown().await;
}

#[actix_rt::test]
async fn tokens_never_reach_logs_errors_or_debug() {
    const SECRET: &str = "sk-ant-secret-7f3a9c";
    const WRONG: &str = "sk-ant-wrong-1b2c3d";
    let sessions = vec![
        Sess::new("good").token_toml(&format!("token = \"{SECRET}\""), SECRET),
        // The sim expects another token: close 4003 and an error path that must not leak.
        Sess::new("bad").token_toml(&format!("token = \"{WRONG}\""), "something-else"),
    ];
    let h = Harness::start(sessions, &[]).await;
    h.wait_state("good", "connected").await;
    let bad = h.wait_state("bad", "failed").await;
    // Exercise the events POST too (it also carries the token).
    let (status, _) = h
        .post("/v1/sessions/good/messages", json!({"content": "hello"}))
        .await;
    assert_eq!(status, 200);
    let debug = format!("{:?}", h.app().supervisor);
    let listing = h.get("/v1/sessions").await.1.to_string();
    h.shutdown().await;
    let logs = logs::all();
    for secret in [SECRET, WRONG] {
        assert!(!logs.contains(secret), "token leaked into logs");
        assert!(!listing.contains(secret), "token leaked into the API");
        assert!(
            !bad.to_string().contains(secret),
            "token leaked into an error"
        );
        assert!(!debug.contains(secret));
    }
    assert!(logs.contains("good"), "the capture works at all");
}

#[actix_rt::test]
async fn a_session_with_its_own_base_url_and_organization_reaches_its_own_endpoint() {
    let far = ccr_sim::SimBuilder::new()
        .session("far", "tok-far", ccr_sim::Script::empty())
        .start()
        .await
        .expect("second simulator starts");
    let mut far_events = far.subscribe();
    let extra = format!(
        "[[sessions]]\nid = \"far\"\ntoken = \"tok-far\"\nbase_url = \"{}\"\norganization_uuid = \"org-far\"\n",
        far.base_url()
    );
    let mut h = Harness::start_with(vec![Sess::new("near")], &[], &extra).await;
    h.wait_sim_connected("near").await;
    crate::common::wait_sim(
        &mut far_events,
        |e| matches!(e, ccr_sim::SimEvent::Connected { session, .. } if session == "far"),
    )
    .await;
    let seen = far
        .last_headers("far")
        .expect("far connected to its own endpoint");
    assert_eq!(seen.organization_uuid.as_deref(), Some("org-far"));
    assert_eq!(seen.bearer.as_deref(), Some("tok-far"));
    let near = h.sim.last_headers("near").unwrap();
    assert_eq!(
        near.organization_uuid.as_deref(),
        Some("org-test-1"),
        "the [ccr] default"
    );
    assert_eq!(h.sim.attempts("far"), 0, "never tried the shared endpoint");
    assert_eq!(far.attempts("near"), 0);
    h.wait_state("far", "connected").await;
    h.shutdown().await;
    far.stop().await;
}

#[actix_rt::test]
async fn outgoing_sockets_bind_to_the_source_addresses() {
    // Linux loopback answers for the whole of 127/8.
    let env = [("CCR_SUPERVISOR__CCR__SOURCE_ADDRESSES", "127.0.0.2")];
    let mut h = Harness::start(vec![Sess::new("s1")], &env).await;
    h.wait_sim_connected("s1").await;
    let seen = h.sim.last_headers("s1").expect("an attempt was seen");
    let peer = seen.peer.expect("the simulator saw the peer address");
    assert_eq!(peer.ip().to_string(), "127.0.0.2", "{peer}");
    h.shutdown().await;
}
