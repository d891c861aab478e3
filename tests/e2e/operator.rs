//! Interrupt and send-message end to end, including viewer-only refusals.

use crate::common::{wait_bus, wait_received, Harness, Sess};
use ccr_sim::{InterruptMode, SimEvent};
use ccr_supervisor::events::Event;
use serde_json::json;

#[actix_rt::test]
async fn interrupt_with_a_pending_prompt_cancels_it_and_returns_the_answer() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "ip", "Bash", json!({"command":"sleep 9"}))
        .await;
    let mut bus = h.bus();
    let (status, body) = h.post("/v1/sessions/s1/interrupt", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"], json!({"still_queued": []}));
    let sent = wait_received(&mut h.sim_events, "s1", |f| {
        f["request"]["subtype"] == "interrupt"
    })
    .await;
    assert_eq!(sent["request"], json!({"subtype":"interrupt"}));
    assert_eq!(sent["request_id"], body["request_id"]);
    // The worker withdrew the prompt before answering the interrupt.
    wait_bus(
        &mut bus,
        |e| matches!(e, Event::PermissionCancelled { request_id, .. } if request_id == "ip"),
    )
    .await;
    assert_eq!(h.get("/v1/permissions").await.1["permissions"], json!([]));
    h.shutdown().await;
}

#[actix_rt::test]
async fn interrupt_error_and_timeout() {
    let env = [("CCR_SUPERVISOR__CCR__INTERRUPT_TIMEOUT", "200ms")];
    let sessions = vec![
        Sess::new("mute").interrupt(InterruptMode::Ignore),
        Sess::new("grumpy").interrupt(InterruptMode::Error("nothing to interrupt".into())),
    ];
    let h = Harness::start(sessions, &env).await;
    h.wait_state("mute", "connected").await;
    h.wait_state("grumpy", "connected").await;
    let (status, body) = h.post("/v1/sessions/mute/interrupt", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("timeout")),
        "{body}"
    );
    let (status, body) = h.post("/v1/sessions/grumpy/interrupt", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("session_error")),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nothing to interrupt"));
    h.shutdown().await;
}

#[actix_rt::test]
async fn send_message_posts_a_user_event() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let (status, body) = h
        .post(
            "/v1/sessions/s1/messages",
            json!({"content": "run the tests"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let posted = match h.wait_sim(|e| matches!(e, SimEvent::Posted { .. })).await {
        SimEvent::Posted { body, .. } => body,
        _ => unreachable!(),
    };
    let event = &posted["events"][0];
    assert_eq!(event["type"], "user");
    assert_eq!(event["session_id"], "s1");
    assert_eq!(event["uuid"], body["uuid"]);
    assert_eq!(event["parent_tool_use_id"], json!(null));
    assert_eq!(
        event["message"],
        json!({"role":"user","content":"run the tests"})
    );
    let blocks = json!([{"type":"text","text":"and lint"}]);
    let (status, _) = h
        .post("/v1/sessions/s1/messages", json!({ "content": blocks }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        h.sim.posted("s1")[1]["events"][0]["message"]["content"],
        blocks
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn viewer_only_session_refuses_interrupt_and_send() {
    let h = Harness::start(vec![Sess::new("watch").viewer_only()], &[]).await;
    h.wait_state("watch", "connected").await;
    let (status, body) = h.post("/v1/sessions/watch/interrupt", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("viewer_only"))
    );
    let (status, body) = h
        .post("/v1/sessions/watch/messages", json!({"content":"hi"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("viewer_only"))
    );
    assert!(h.sim.posted("watch").is_empty());
    assert!(
        h.sim
            .received("watch")
            .iter()
            .all(|f| f["request"]["subtype"] != "interrupt"),
        "a viewer-only session never interrupts (it may initialize)"
    );
    h.shutdown().await;
}
