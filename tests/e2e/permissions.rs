//! The permission lifecycle end to end: exact answers on the wire, cancel, replay, offline decisions.

use crate::common::{allow_frame, wait_bus, Harness, Sess};
use ccr_sim::SimEvent;
use ccr_supervisor::events::Event;
use serde_json::json;

fn answered(id: &'static str) -> impl FnMut(&SimEvent) -> bool {
    move |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == id)
}

#[actix_rt::test]
async fn allow_sends_original_input_exactly_once() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "req_1", "Bash", json!({"command":"npm test"}))
        .await;
    let (status, list) = h.get("/v1/permissions").await;
    assert_eq!(status, 200);
    let p = &list["permissions"][0];
    assert_eq!(p["session_id"], "s1");
    assert_eq!(p["request_id"], "req_1");
    assert_eq!(p["tool_name"], "Bash");
    assert_eq!(p["tool_use_id"], "toolu_req_1");
    assert_eq!(p["input"], json!({"command":"npm test"}));
    assert_eq!(p["request"]["subtype"], "can_use_tool");
    assert!(p["received_at"].is_string() && p["age_ms"].is_u64(), "{p}");
    let (status, receipt) = h.decide("s1", "req_1", json!({"behavior":"allow"})).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["delivery"], "sent");
    assert_eq!(receipt["status"], "allowed");
    h.wait_sim(answered("req_1")).await;
    assert_eq!(
        h.answers("s1", "req_1"),
        vec![allow_frame("req_1", json!({"command":"npm test"}))]
    );
    let (status, err) = h.decide("s1", "req_1", json!({"behavior":"deny"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("already_answered"))
    );
    assert_eq!(h.get("/v1/permissions").await.1["permissions"], json!([]));
    let s = h.session("s1").await;
    assert_eq!(
        (
            s["counters"]["prompts"].as_u64(),
            s["counters"]["decisions"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(h.answers("s1", "req_1").len(), 1, "the 409 sent nothing");
    h.shutdown().await;
}

#[actix_rt::test]
async fn allow_with_edited_input_and_permission_updates() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "req_2", "Bash", json!({"command":"npm test"}))
        .await;
    let rules = json!([{"type":"addRules","rules":[{"toolName":"Bash","ruleContent":"npm test:*"}],
        "behavior":"allow","destination":"session"}]);
    let (status, _) = h
        .decide(
            "s1",
            "req_2",
            json!({"behavior":"allow","updated_input":{"command":"npm test -- --ci"},
            "updated_permissions": rules}),
        )
        .await;
    assert_eq!(status, 200);
    h.wait_sim(answered("req_2")).await;
    assert_eq!(
        h.answers("s1", "req_2"),
        vec![
            json!({"type":"control_response","response":{"subtype":"success","request_id":"req_2",
            "response":{"behavior":"allow","updatedInput":{"command":"npm test -- --ci"},
            "updatedPermissions": rules,"toolUseID":"toolu_req_2",
            "decisionClassification":"user_permanent"}}})
        ]
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn deny_and_deny_with_interrupt() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "d1", "Bash", json!({"command":"rm -rf /"}))
        .await;
    h.prompt("s1", "d2", "Edit", json!({"file_path":"/etc/passwd"}))
        .await;
    let (status, r) = h
        .decide(
            "s1",
            "d1",
            json!({"behavior":"deny","message":"not on a Friday"}),
        )
        .await;
    assert_eq!((status, r["status"].as_str()), (200, Some("denied")));
    let (status, _) = h
        .decide(
            "s1",
            "d2",
            json!({"behavior":"deny","message":"stop","interrupt":true}),
        )
        .await;
    assert_eq!(status, 200);
    h.wait_sim(answered("d1")).await;
    h.wait_sim(answered("d2")).await;
    assert_eq!(
        h.answers("s1", "d1"),
        vec![
            json!({"type":"control_response","response":{"subtype":"success","request_id":"d1",
            "response":{"behavior":"deny","message":"not on a Friday","toolUseID":"toolu_d1",
            "decisionClassification":"user_reject"}}})
        ]
    );
    assert_eq!(
        h.answers("s1", "d2"),
        vec![
            json!({"type":"control_response","response":{"subtype":"success","request_id":"d2",
            "response":{"behavior":"deny","message":"stop","interrupt":true,"toolUseID":"toolu_d2",
            "decisionClassification":"user_reject"}}})
        ]
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn cancel_removes_the_prompt_and_answering_it_is_409() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_state("s1", "connected").await;
    h.prompt("s1", "c1", "Bash", json!({"command":"sleep 100"}))
        .await;
    let mut bus = h.bus();
    assert!(h.sim.cancel("s1", "c1"));
    let ev = wait_bus(&mut bus, |e| matches!(e, Event::PermissionCancelled { .. })).await;
    let Event::PermissionCancelled {
        request_id,
        tool_use_id,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(
        (request_id.as_str(), tool_use_id.as_deref()),
        ("c1", Some("toolu_c1"))
    );
    assert_eq!(
        h.get("/v1/permissions?session_id=s1").await.1["permissions"],
        json!([])
    );
    let (status, err) = h.decide("s1", "c1", json!({"behavior":"allow"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("prompt_cancelled"))
    );
    assert!(
        h.answers("s1", "c1").is_empty(),
        "nothing sent for a cancelled prompt"
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn replayed_prompt_is_shown_once() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "rp", "Read", json!({"file_path":"src/main.rs"}))
        .await;
    let mut bus = h.bus();
    // Drop the socket: on the new connection the simulator replays the unanswered prompt.
    let before = h.sim.connections("s1");
    assert!(h.sim.drop_connection("s1"));
    h.wait_connections("s1", before + 1).await;
    h.wait_state("s1", "connected").await;
    // A barrier: an SDK frame pushed after the replay arrives after it.
    h.sim.push("s1", json!({"type":"assistant","barrier":true}));
    wait_bus(&mut bus, |e| matches!(e, Event::SdkMessage { .. })).await;
    let list = h.get("/v1/permissions").await.1;
    assert_eq!(list["permissions"].as_array().unwrap().len(), 1, "{list}");
    let mut requested = 0;
    while let Ok(e) = bus.try_recv() {
        requested += usize::from(matches!(e.event, Event::PermissionRequested { .. }));
    }
    assert_eq!(requested, 0, "the replay was not announced again");
    assert_eq!(h.session("s1").await["counters"]["prompts"], 1);
    h.shutdown().await;
}

#[actix_rt::test]
async fn decision_while_disconnected_is_delivered_once_after_reconnect() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "off1", "Bash", json!({"command":"make"}))
        .await;
    // Refuse upgrades so the session stays away, then drop it.
    h.sim.refuse_upgrade("s1", 503, u32::MAX);
    assert!(h.sim.drop_connection("s1"));
    h.wait_state("s1", "reconnecting").await;
    let (status, receipt) = h.decide("s1", "off1", json!({"behavior":"allow"})).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["delivery"], "queued");
    assert_eq!(h.session("s1").await["queued_decisions"], 1);
    // At least one attempt is refused while the answer waits...
    h.wait_sim(|e| matches!(e, SimEvent::Rejected { session, code: 503 } if session == "s1"))
        .await;
    assert_eq!(h.session("s1").await["queued_decisions"], 1);
    // ...then let it back in: the sim replays the prompt, the supervisor flushes the answer.
    h.sim.refuse_upgrade("s1", 503, 0);
    h.wait_sim(answered("off1")).await;
    // Barrier on the same connection: anything sent before this answer has arrived.
    h.prompt("s1", "off2", "Bash", json!({"command":"ls"}))
        .await;
    h.decide("s1", "off2", json!({"behavior":"allow"})).await;
    h.wait_sim(answered("off2")).await;
    assert_eq!(
        h.answers("s1", "off1"),
        vec![allow_frame("off1", json!({"command":"make"}))]
    );
    assert_eq!(h.session("s1").await["queued_decisions"], 0);
    // Another reconnect must not send it again.
    let before = h.sim.connections("s1");
    assert!(h.sim.drop_connection("s1"));
    h.wait_connections("s1", before + 1).await;
    h.prompt("s1", "off3", "Bash", json!({"command":"pwd"}))
        .await;
    h.decide("s1", "off3", json!({"behavior":"allow"})).await;
    h.wait_sim(answered("off3")).await;
    assert_eq!(h.answers("s1", "off1").len(), 1, "never sent twice");
    h.shutdown().await;
}

#[actix_rt::test]
async fn many_prompts_at_once_are_all_listed_oldest_first() {
    let mut h = Harness::start(vec![Sess::new("a"), Sess::new("b")], &[]).await;
    h.wait_sim_connected("a").await;
    h.wait_sim_connected("b").await;
    for (sess, id) in [("a", "p1"), ("b", "p2"), ("a", "p3")] {
        h.prompt(sess, id, "Bash", json!({"command": id})).await;
    }
    let all = h.get("/v1/permissions").await.1;
    let ids: Vec<_> = all["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["request_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("p1"), json!("p2"), json!("p3")]);
    let only_a = h.get("/v1/permissions?session_id=a").await.1;
    assert_eq!(only_a["permissions"].as_array().unwrap().len(), 2);
    h.shutdown().await;
}

/// Issue 23.1: the protocol's camelCase `updatedInput` is the edit that runs, byte for byte;
/// a misspelled field is a 400 naming it, and nothing is sent.
#[actix_rt::test]
async fn camel_case_edited_allow_sends_the_edit_and_unknown_fields_are_refused() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "e1", "Bash", json!({"command":"rm -rf /tmp/x"}))
        .await;
    let (status, err) = h
        .decide("s1", "e1", json!({"behavior":"deny","mesage":"typo"}))
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("unknown field `mesage`"), "{msg}");
    let (status, err) = h
        .decide(
            "s1",
            "e1",
            json!({"behavior":"allow","updatedInput":{"command":"echo a"},"updated_input":{"command":"echo b"}}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("duplicate field `updated_input`"));
    let (status, err) = h
        .decide(
            "s1",
            "e1",
            json!({"behavior":"allow","updatedInput":{"command":"echo safe"},"message":"x"}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        h.answers("s1", "e1").is_empty(),
        "no refused body sent anything"
    );
    let (status, receipt) = h
        .decide(
            "s1",
            "e1",
            json!({"behavior":"allow","updatedInput":{"command":"echo safe"}}),
        )
        .await;
    assert_eq!((status, receipt["status"].as_str()), (200, Some("allowed")));
    h.wait_sim(answered("e1")).await;
    let raw: Vec<String> = h
        .sim
        .received_raw("s1")
        .into_iter()
        .filter(|t| t.contains(r#""request_id":"e1""#))
        .collect();
    assert_eq!(
        raw,
        [
            r#"{"type":"control_response","response":{"subtype":"success","request_id":"e1","response":{"behavior":"allow","updatedInput":{"command":"echo safe"},"toolUseID":"toolu_e1","decisionClassification":"user_temporary"}}}"#
        ],
        "the edited command, exactly"
    );
    let audit = h.get("/v1/audit?session_id=s1").await.1;
    assert_eq!(
        audit["rows"][0]["updated_input"],
        json!({"command":"echo safe"})
    );
    h.shutdown().await;
}
