//! Frames the supervisor cannot read whole (too large, too deep): a prompt in one is never
//! silent — it is listed when it fits the limit, and denied, recorded and reported when not.

use crate::common::{wait_bus, wait_received, Harness, Sess};
use ccr_sim::SimEvent;
use ccr_supervisor::events::Event;
use serde_json::{json, Value};

fn answered(id: &'static str) -> impl FnMut(&SimEvent) -> bool {
    move |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == id)
}

/// The default limit, whatever the test harness sets.
const DEFAULT_LIMIT: (&str, &str) = ("CCR_SUPERVISOR__CCR__MAX_FRAME_BYTES", "16777216");

#[actix_rt::test]
async fn a_3_mb_write_prompt_is_listed_and_answerable_with_the_default_limit() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[DEFAULT_LIMIT]).await;
    h.wait_sim_connected("s1").await;
    let content = "line of a large file\n".repeat(150_000);
    assert!(content.len() > 3_000_000);
    let input = json!({"file_path":"/repo/big.txt","content":content});
    h.prompt("s1", "big", "Write", input.clone()).await;
    let list = h.get("/v1/permissions").await.1;
    assert_eq!(list["permissions"][0]["request_id"], "big");
    assert_eq!(list["permissions"][0]["input"], input);
    let (status, receipt) = h.decide("s1", "big", json!({"behavior":"allow"})).await;
    assert_eq!(
        (status, receipt["delivery"].as_str()),
        (200, Some("sent")),
        "{receipt}"
    );
    h.wait_sim(answered("big")).await;
    let answer = &h.answers("s1", "big")[0]["response"]["response"];
    assert_eq!(answer["behavior"], "allow");
    assert_eq!(answer["updatedInput"], input, "the whole file, unchanged");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_prompt_over_the_limit_is_denied_recorded_counted_and_reported() {
    // The harness's limit is 4096 bytes.
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let mut bus = h.bus();
    let input = json!({"file_path":"/repo/a.txt","content":"x".repeat(10_000)});
    assert!(h.sim.prompt("s1", "huge", "Write", input));
    h.wait_sim(answered("huge")).await;
    let answers = h.answers("s1", "huge");
    assert_eq!(answers.len(), 1, "answered exactly once: {answers:?}");
    let answer = &answers[0]["response"]["response"];
    assert_eq!(answer["behavior"], "deny");
    assert_eq!(answer["toolUseID"], "toolu_huge");
    assert_eq!(
        answer.get("decisionClassification"),
        None,
        "no person decided"
    );
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("over the supervisor's limit of 4096 bytes (max_frame_bytes)"),
        "{message}"
    );
    let error = wait_bus(&mut bus, |e| matches!(e, Event::Error { .. })).await;
    let Event::Error { message, .. } = error else {
        unreachable!()
    };
    assert!(
        message.contains("huge") && message.contains("4096"),
        "{message}"
    );
    let audit = h.get("/v1/audit?session_id=s1").await.1;
    let row = &audit["rows"][0];
    assert_eq!(row["request_id"], "huge", "{audit}");
    assert_eq!(row["outcome"], "denied");
    assert_eq!(row["decided_by"], "limit:max_frame_bytes");
    assert_eq!(row["tool_name"], "Write");
    assert!(row["request"]["unreadable"]["bytes"].as_u64().unwrap() > 10_000);
    assert_eq!(h.get("/v1/permissions").await.1["permissions"], json!([]));
    let counters = &h.session("s1").await["counters"]["frames_in"];
    assert_eq!(counters["oversized"], 1, "{counters}");
    h.shutdown().await;
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[actix_rt::test]
async fn a_prompt_nested_too_deep_is_denied_and_a_deep_sdk_message_is_replaced_by_a_notice() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let mut bus = h.bus();
    let frame = format!(
        r#"{{"type":"control_request","request_id":"deep","request":{{"subtype":"can_use_tool","tool_name":"Bash","input":{{"x":{}}},"tool_use_id":"toolu_deep"}}}}"#,
        nested(300)
    );
    assert!(h.sim.push_text("s1", frame));
    let frame = wait_received(&mut h.sim_events, "s1", |f| {
        f["response"]["request_id"] == "deep"
    })
    .await;
    let answer = &frame["response"]["response"];
    assert_eq!(answer["behavior"], "deny", "{answer}");
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .contains("JSON depth limit"));
    let audit = h.get("/v1/audit?session_id=s1").await.1;
    assert_eq!(audit["rows"][0]["decided_by"], "limit:max_json_depth");

    let sdk = format!(r#"{{"type":"assistant","message":{}}}"#, nested(1000));
    assert!(h.sim.push_text("s1", sdk));
    let ev = wait_bus(&mut bus, |e| matches!(e, Event::SdkMessage { .. })).await;
    let Event::SdkMessage { message, .. } = ev else {
        unreachable!()
    };
    let notice: Value = serde_json::from_str(&message).expect("readable by serde_json");
    assert_eq!(notice["type"], "assistant");
    assert_eq!(notice["supervisor_notice"]["reason"], "too_deep");
    assert_eq!(notice["supervisor_notice"]["depth"], 1001);
    // The transcript page stays parseable by the strictest common client.
    let (status, page) = h.get("/v1/sessions/s1/messages?after=0").await;
    assert_eq!(status, 200);
    assert!(page["messages"].as_array().is_some(), "{page}");
    let counters = &h.session("s1").await["counters"]["frames_in"];
    assert_eq!(counters["too_deep"], 2, "{counters}");
    h.shutdown().await;
}
