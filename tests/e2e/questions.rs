//! Questions that are not permission prompts (PROTOCOL §6): MCP elicitations and
//! `request_user_dialog`s are listed at `/v1/questions`, answered with the SDK's shapes,
//! recorded like prompts — and a dialog this supervisor does not render is never answered.

use crate::common::{wait_received, Harness, Sess};
use ccr_sim::SimEvent;
use serde_json::{json, Value};

fn elicitation() -> Value {
    json!({"subtype":"elicitation","mcp_server_name":"jira","message":"Which project?",
        "mode":"form","elicitation_id":"el-1",
        "requested_schema":{"type":"object","properties":{"key":{"type":"string"}}}})
}

fn dialog(kind: &str) -> Value {
    json!({"subtype":"request_user_dialog","dialog_kind":kind,"payload":{"options":["a","b"]},
        "tool_use_id":"toolu_d"})
}

#[actix_rt::test]
async fn an_elicitation_is_listed_answered_with_the_exact_shape_and_recorded() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let mut bus = h.bus();
    assert!(h.sim.prompt_with("s1", "e1", elicitation()));
    crate::common::wait_bus(&mut bus, |e| {
        matches!(e, ccr_supervisor::events::Event::PermissionRequested { request_id, .. } if request_id == "e1")
    })
    .await;
    assert_eq!(
        h.get("/v1/permissions").await.1["permissions"],
        json!([]),
        "not a permission prompt"
    );
    let listed = h.get("/v1/questions").await.1;
    let q = &listed["questions"][0];
    assert_eq!(
        (
            q["request_id"].as_str(),
            q["kind"].as_str(),
            q["tool_name"].as_str(),
            q["answerable"].as_bool()
        ),
        (Some("e1"), Some("elicitation"), Some("jira"), Some(true)),
        "{listed}"
    );
    assert_eq!(q["request"]["message"], "Which project?");
    // The permission route refuses it, saying where to answer.
    let (status, err) = h.decide("s1", "e1", json!({"behavior":"allow"})).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/questions/"),
        "{err}"
    );
    let (status, err) = h
        .post(
            "/v1/sessions/s1/questions/e1",
            json!({"behavior":"cancelled"}),
        )
        .await;
    assert_eq!(status, 400, "a dialog's answer for an elicitation: {err}");
    let (status, receipt) = h
        .post(
            "/v1/sessions/s1/questions/e1",
            json!({"action":"accept","content":{"key":"OPS"}}),
        )
        .await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (200, Some("allowed")),
        "{receipt}"
    );
    h.wait_sim(|e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "e1"))
        .await;
    let raw: Vec<String> = h
        .sim
        .received_raw("s1")
        .into_iter()
        .filter(|t| t.contains(r#""request_id":"e1""#))
        .collect();
    assert_eq!(
        raw,
        [
            r#"{"type":"control_response","response":{"subtype":"success","request_id":"e1","response":{"action":"accept","content":{"key":"OPS"}}}}"#
        ]
    );
    let audit = h.get("/v1/audit?session_id=s1").await.1;
    let row = &audit["rows"][0];
    assert_eq!(
        (
            row["kind"].as_str(),
            row["outcome"].as_str(),
            row["decided_by"].as_str()
        ),
        (Some("elicitation"), Some("allowed"), Some("admin")),
        "{audit}"
    );
    assert_eq!(h.get("/v1/questions").await.1["questions"], json!([]));
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_dialog_this_supervisor_does_not_render_is_shown_and_never_answered() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let init = h
        .sim
        .received("s1")
        .into_iter()
        .find(|f| f["request"]["subtype"] == "initialize")
        .unwrap();
    assert_eq!(
        init["request"].get("supportedDialogKinds"),
        None,
        "nothing declared"
    );
    assert!(h
        .sim
        .prompt_with("s1", "d1", dialog("refusal_fallback_prompt")));
    // Barrier: a request the supervisor must answer with an error, sent after the dialog.
    h.sim.push(
        "s1",
        json!({"type":"control_request","request_id":"x1","request":{"subtype":"frobnicate"}}),
    );
    wait_received(&mut h.sim_events, "s1", |f| {
        f["response"]["request_id"] == "x1"
    })
    .await;
    let listed = h.get("/v1/questions").await.1;
    assert_eq!(listed["questions"][0]["request_id"], "d1", "{listed}");
    assert_eq!(listed["questions"][0]["answerable"], false, "{listed}");
    assert_eq!(
        listed["questions"][0]["input"],
        json!({"options":["a","b"]})
    );
    let (status, err) = h
        .post(
            "/v1/sessions/s1/questions/d1",
            json!({"behavior":"cancelled"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("not_answerable")),
        "{err}"
    );
    assert!(
        h.sim
            .received("s1")
            .iter()
            .all(|f| f["response"]["request_id"] != "d1"),
        "no answer of any kind, not even an error"
    );
    // The session withdraws it: gone from the list.
    let mut bus = h.bus();
    assert!(h.sim.cancel("s1", "d1"));
    crate::common::wait_bus(&mut bus, |e| {
        matches!(e, ccr_supervisor::events::Event::PermissionCancelled { request_id, .. } if request_id == "d1")
    })
    .await;
    assert_eq!(h.get("/v1/questions").await.1["questions"], json!([]));
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_declared_dialog_kind_is_answerable_with_the_sdk_shape() {
    let env = [("CCR_SUPERVISOR__CCR__SUPPORTED_DIALOG_KINDS", "pick_one")];
    let extra = "";
    let mut h = Harness::start_with(vec![Sess::new("s1")], &env, extra).await;
    h.wait_sim_connected("s1").await;
    let init = h
        .sim
        .received("s1")
        .into_iter()
        .find(|f| f["request"]["subtype"] == "initialize")
        .unwrap();
    assert_eq!(init["request"]["supportedDialogKinds"], json!(["pick_one"]));
    let mut bus = h.bus();
    assert!(h.sim.prompt_with("s1", "d2", dialog("pick_one")));
    crate::common::wait_bus(&mut bus, |e| {
        matches!(e, ccr_supervisor::events::Event::PermissionRequested { request_id, .. } if request_id == "d2")
    })
    .await;
    let (status, receipt) = h
        .post(
            "/v1/sessions/s1/questions/d2",
            json!({"behavior":"completed","result":{"choice":"b"}}),
        )
        .await;
    assert_eq!(status, 200, "{receipt}");
    let answered = h
        .wait_sim(|e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "d2"))
        .await;
    let SimEvent::Answered { response, .. } = answered else {
        unreachable!()
    };
    assert_eq!(
        response,
        json!({"behavior":"completed","result":{"choice":"b"}})
    );
    h.shutdown().await;
}
