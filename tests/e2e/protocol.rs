//! PROTOCOL §6 end to end: `initialize` on connect and its pending lists, interrupt with
//! `cancel_queued` (and an older CLI's empty answer), echo dedupe, and the response watchdog.

use crate::common::{wait_bus, wait_received, Harness, Sess};
use ccr_sim::{InitializeMode, InterruptMode, SimEvent};
use ccr_supervisor::events::Event;
use serde_json::{json, Value};

#[actix_rt::test]
async fn a_prompt_only_the_initialize_reply_lists_is_shown_and_answerable() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let first = h
        .sim
        .received("s1")
        .into_iter()
        .find(|f| f["request"]["subtype"] == "initialize")
        .expect("initialize sent on connect");
    assert_eq!(
        first["request"],
        json!({"subtype":"initialize"}),
        "nothing else asked"
    );
    // While the supervisor is away the session asks; it will not replay, only list.
    h.sim.refuse_upgrade("s1", 503, u32::MAX);
    assert!(h.sim.drop_connection("s1"));
    h.wait_sim(|e| matches!(e, SimEvent::Rejected { code: 503, .. }))
        .await;
    h.sim.set_replay("s1", false);
    assert!(
        !h.sim
            .prompt("s1", "listed", "Bash", json!({"command":"make"})),
        "not live"
    );
    let mut bus = h.bus();
    h.sim.refuse_upgrade("s1", 503, 0);
    wait_bus(
        &mut bus,
        |e| matches!(e, Event::PermissionRequested { request_id, .. } if request_id == "listed"),
    )
    .await;
    let s = h.session("s1").await;
    assert_eq!(s["initialize"], "listed", "{s}");
    let (status, body) = h.decide("s1", "listed", json!({"behavior":"allow"})).await;
    assert_eq!(
        (status, body["delivery"].as_str()),
        (200, Some("sent")),
        "{body}"
    );
    h.wait_sim(|e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "listed"))
        .await;
    h.shutdown().await;
}

#[actix_rt::test]
async fn an_older_cli_without_lists_or_an_initialize_error_still_routes_replays() {
    for mode in [InitializeMode::Omit, InitializeMode::Error] {
        let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
        h.sim.set_initialize_mode("s1", mode.clone());
        h.wait_sim_connected("s1").await;
        h.prompt("s1", "p1", "Bash", json!({"command":"ls"})).await;
        // Reconnect: the replay alone brings p1 back, shown once, still answerable.
        let n = h.sim.connections("s1");
        assert!(h.sim.drop_connection("s1"));
        h.wait_connections("s1", n + 1).await;
        wait_received(&mut h.sim_events, "s1", |f| {
            f["request"]["subtype"] == "initialize"
        })
        .await;
        let listed = h.get("/v1/permissions").await.1;
        assert_eq!(
            listed["permissions"].as_array().unwrap().len(),
            1,
            "{mode:?}: {listed}"
        );
        let (status, _) = h.decide("s1", "p1", json!({"behavior":"deny"})).await;
        assert_eq!(status, 200, "{mode:?}");
        let want = if mode == InitializeMode::Omit {
            "unlisted"
        } else {
            "failed"
        };
        let s = h.session("s1").await;
        assert_eq!(s["initialize"], want, "{mode:?}: {s}");
        h.shutdown().await;
    }
}

#[actix_rt::test]
async fn interrupt_cancel_queued_returns_the_lists_and_an_empty_answer_is_null() {
    let mut h = Harness::start(
        vec![
            Sess::new("s1"),
            Sess::new("old").interrupt(InterruptMode::AnswerEmpty),
        ],
        &[],
    )
    .await;
    h.wait_sim_connected("s1").await;
    h.wait_sim_connected("old").await;
    let (status, sent) = h
        .post("/v1/sessions/s1/messages", json!({"content":"queued one"}))
        .await;
    assert_eq!(status, 200, "{sent}");
    let (status, body) = h.post("/v1/sessions/s1/interrupt", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["still_queued"], json!([sent["uuid"]]), "{body}");
    assert_eq!(body["cancelled"], Value::Null);
    let (status, body) = h
        .post("/v1/sessions/s1/interrupt", json!({"cancel_queued": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelled"], json!([sent["uuid"]]), "{body}");
    assert_eq!(body["still_queued"], json!([]));
    let frame = wait_received(&mut h.sim_events, "s1", |f| {
        f["request"]["cancel_queued"] == true
    })
    .await;
    assert_eq!(frame["request"]["subtype"], "interrupt");
    let (status, body) = h
        .post("/v1/sessions/s1/interrupt", json!({"cancel_queud": true}))
        .await;
    assert_eq!(status, 400, "a typo is refused: {body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cancel_queud"));
    // CLI 2.1.197 answers an interrupt with no body at all.
    let (status, body) = h.post("/v1/sessions/old/interrupt", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"], Value::Null, "{body}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_user_message_echoed_twice_reaches_operators_once() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.sim.set_echo_posts("s1", 2);
    let mut bus = h.bus();
    let (status, sent) = h
        .post(
            "/v1/sessions/s1/messages",
            json!({"content":"run the tests"}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    // A marker after both echoes: once it is through, both echoes were routed.
    assert!(h
        .sim
        .push("s1", json!({"type":"assistant","marker":"after-echoes"})));
    let mut users = 0;
    wait_bus(&mut bus, |e| match e {
        Event::SdkMessage { message, .. } => {
            let v: Value = serde_json::from_str(message).unwrap();
            if v["uuid"] == sent["uuid"] {
                users += 1;
            }
            v["marker"] == "after-echoes"
        }
        _ => false,
    })
    .await;
    assert_eq!(users, 1, "forwarded once");
    let s = h.session("s1").await;
    assert_eq!(s["counters"]["frames_in"]["duplicate"], 1, "{s}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn silence_after_an_interrupt_makes_the_watchdog_reconnect() {
    let env = [
        ("CCR_SUPERVISOR__CCR__RESPONSE_WATCHDOG", "300ms"),
        ("CCR_SUPERVISOR__CCR__INTERRUPT_TIMEOUT", "10s"),
    ];
    // A session that says nothing at all, not even to `initialize`.
    let silent = Sess::new("s1")
        .interrupt(InterruptMode::Ignore)
        .initialize(InitializeMode::Ignore);
    let mut h = Harness::start(vec![silent], &env).await;
    h.wait_sim_connected("s1").await;
    let n = h.sim.connections("s1");
    // The session says nothing at all after the interrupt: the connection is presumed dead.
    let (status, body) = h.post("/v1/sessions/s1/interrupt", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "session_not_connected", "{body}");
    h.wait_connections("s1", n + 1).await;
    let s = h.wait_state("s1", "connected").await;
    assert!(
        s["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("presumed dead"),
        "{s}"
    );
    h.shutdown().await;
}
