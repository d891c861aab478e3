//! Supervision: an injected panic restarts the session within budget; the budget ends in `failed`.

use crate::common::{allow_frame, Harness, Sess};
use ccr_sim::SimEvent;
use ccr_supervisor::supervisor::PanicSession;
use serde_json::json;

#[actix_rt::test]
async fn panic_restarts_session_keeps_prompts_and_spares_neighbours() {
    // One arbiter: the neighbour shares the crashed actor's thread.
    let env = [("CCR_SUPERVISOR__SUPERVISOR__ARBITERS", "1")];
    let mut h = Harness::start(vec![Sess::new("victim"), Sess::new("neighbour")], &env).await;
    h.wait_sim_connected("victim").await;
    h.wait_sim_connected("neighbour").await;
    h.prompt("victim", "v1", "Bash", json!({"command":"make"}))
        .await;
    let neighbour_before = h.sim.connections("neighbour");
    let before = h.sim.connections("victim");
    assert!(h
        .app()
        .supervisor
        .send(PanicSession("victim".into()))
        .await
        .unwrap());
    h.wait_connections("victim", before + 1).await;
    let s = h.wait_state("victim", "connected").await;
    assert_eq!(s["incarnation"], 2, "{s}");
    assert_eq!(s["counters"]["restarts"], 1);
    assert!(
        s["last_error"].as_str().unwrap().contains("panicked"),
        "{s}"
    );
    // The prompt survived in the registry and is still answerable, once.
    let list = h.get("/v1/permissions?session_id=victim").await.1;
    assert_eq!(list["permissions"].as_array().unwrap().len(), 1, "{list}");
    let (status, r) = h.decide("victim", "v1", json!({"behavior":"allow"})).await;
    assert_eq!((status, r["delivery"].as_str()), (200, Some("sent")), "{r}");
    h.wait_sim(|e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "v1"))
        .await;
    assert_eq!(
        h.answers("victim", "v1"),
        vec![allow_frame("v1", json!({"command":"make"}))]
    );
    // The neighbour never noticed.
    assert_eq!(h.sim.connections("neighbour"), neighbour_before);
    assert_eq!(h.session("neighbour").await["state"], "connected");
    h.prompt("neighbour", "n1", "Read", json!({"file_path":"x"}))
        .await;
    assert_eq!(
        h.decide("neighbour", "n1", json!({"behavior":"allow"}))
            .await
            .0,
        200
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn restart_budget_exhausted_leaves_the_session_failed_and_visible() {
    let env = [("CCR_SUPERVISOR__SUPERVISOR__MAX_RESTARTS", "2")];
    let mut h = Harness::start(vec![Sess::new("flaky")], &env).await;
    for round in 1..=2u64 {
        h.wait_state("flaky", "connected").await;
        let before = h.sim.connections("flaky");
        assert!(h
            .app()
            .supervisor
            .send(PanicSession("flaky".into()))
            .await
            .unwrap());
        h.wait_connections("flaky", before + 1).await;
        let s = h.wait_state("flaky", "connected").await;
        assert_eq!(s["counters"]["restarts"], round);
    }
    assert!(h
        .app()
        .supervisor
        .send(PanicSession("flaky".into()))
        .await
        .unwrap());
    let s = h.wait_state("flaky", "failed").await;
    assert_eq!(s["reason"], "restart_budget_exhausted", "{s}");
    let all = h.get("/v1/sessions").await.1;
    assert_eq!(
        all["sessions"][0]["id"], "flaky",
        "failed sessions stay visible"
    );
    assert_eq!(h.sim.connections("flaky"), 3);
    h.shutdown().await;
}
