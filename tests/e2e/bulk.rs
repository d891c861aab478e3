//! `POST /v1/decisions`: many answers in one request, each answered exactly once on its own.

use crate::common::{allow_frame, client_with, wait_bus, Harness, Sess, VIEWER_TOKEN};
use ccr_sim::SimEvent;
use ccr_supervisor::events::Event;
use serde_json::{json, Value};

fn item(session: &str, request: &str, answer: Value) -> Value {
    let mut v = json!({"session_id": session, "request_id": request});
    v.as_object_mut()
        .unwrap()
        .extend(answer.as_object().unwrap().clone());
    v
}

/// `(status, code)` of each result, in order.
fn outcomes(body: &Value) -> Vec<(u64, Option<&str>)> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {body}"))
        .iter()
        .map(|r| (r["status"].as_u64().unwrap(), r["error"]["code"].as_str()))
        .collect()
}

/// Answer a fresh prompt of `session` through the single route and wait until the simulator
/// has it: every answer written to that session before is in the simulator's log by then.
async fn barrier(h: &mut Harness, session: &str, request: &str) {
    h.prompt(session, request, "Bash", json!({"command":"true"}))
        .await;
    let (status, body) = h.decide(session, request, json!({"behavior":"deny"})).await;
    assert_eq!(status, 200, "{body}");
    let want = request.to_owned();
    h.wait_sim(|e| matches!(e, SimEvent::Answered { request_id, .. } if *request_id == want))
        .await;
}

#[actix_rt::test]
async fn a_mixed_batch_answers_each_valid_item_once_and_says_why_the_others_were_not() {
    let mut h = Harness::start(vec![Sess::new("s1"), Sess::new("s2")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.wait_sim_connected("s2").await;
    let ls = json!({"command":"ls"});
    h.prompt("s1", "ok1", "Bash", ls.clone()).await;
    h.prompt("s2", "ok2", "Bash", ls.clone()).await;
    h.prompt("s1", "done", "Bash", ls.clone()).await;
    h.prompt("s1", "gone", "Bash", ls.clone()).await;
    let (status, _) = h.decide("s1", "done", json!({"behavior":"allow"})).await;
    assert_eq!(status, 200);
    let mut bus = h.bus();
    assert!(h.sim.cancel("s1", "gone"));
    wait_bus(
        &mut bus,
        |e| matches!(e, Event::PermissionCancelled { request_id, .. } if request_id == "gone"),
    )
    .await;

    let batch = json!({"decisions": [
        item("s1", "ok1", json!({"behavior":"allow"})),
        item("s1", "done", json!({"behavior":"deny"})),
        item("nope", "ok1", json!({"behavior":"allow"})),
        item("s1", "zzz", json!({"behavior":"allow"})),
        item("s1", "gone", json!({"behavior":"allow"})),
        item("s1", "ok1", json!({"behavior":"deny","message":"changed my mind"})),
        item("s2", "ok2", json!({"behavior":"deny","message":"not today","interrupt":true})),
        item("s2", "ok2", json!({"behavior":"allow"})),
    ]});
    let (status, body) = h.post("/v1/decisions", batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        outcomes(&body),
        vec![
            (200, None),
            (409, Some("already_answered")),
            (404, Some("unknown_session")),
            (404, Some("unknown_prompt")),
            (409, Some("prompt_cancelled")),
            (409, Some("already_answered")),
            (200, None),
            (409, Some("already_answered")),
        ]
    );
    let results = body["results"].as_array().unwrap();
    let ids: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["session_id"].as_str().unwrap(),
                r["request_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("s1", "ok1"),
            ("s1", "done"),
            ("nope", "ok1"),
            ("s1", "zzz"),
            ("s1", "gone"),
            ("s1", "ok1"),
            ("s2", "ok2"),
            ("s2", "ok2"),
        ]
    );
    assert_eq!(
        results[0]["receipt"],
        json!({"session_id":"s1","request_id":"ok1","status":"allowed","delivery":"sent","decided_by":"admin"})
    );
    assert_eq!(results[6]["receipt"]["status"], "denied");
    for r in results.iter().filter(|r| r["status"] != 200) {
        assert!(r.get("receipt").is_none(), "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{r}"
        );
    }
    assert!(results[0].get("error").is_none());

    // Everything the batch wrote is in the simulator's log once both barriers are.
    barrier(&mut h, "s1", "barrier1").await;
    barrier(&mut h, "s2", "barrier2").await;
    assert_eq!(h.answers("s1", "ok1"), vec![allow_frame("ok1", ls.clone())]);
    let denied = h.answers("s2", "ok2");
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["response"]["response"]["behavior"], "deny");
    assert_eq!(denied[0]["response"]["response"]["message"], "not today");
    assert_eq!(denied[0]["response"]["response"]["interrupt"], true);
    assert_eq!(
        h.answers("s1", "done").len(),
        1,
        "answered once, before the batch"
    );
    assert!(
        h.answers("s1", "gone").is_empty(),
        "nothing sent for a cancelled prompt"
    );
    assert_eq!(h.get("/v1/permissions").await.1["permissions"], json!([]));
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_large_batch_answers_every_prompt_exactly_once() {
    let mut h = Harness::start(vec![Sess::new("s1"), Sess::new("s2")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.wait_sim_connected("s2").await;
    let mut items = Vec::new();
    for n in 0..120 {
        let (session, request) = (if n % 2 == 0 { "s1" } else { "s2" }, format!("p{n}"));
        h.prompt(
            session,
            &request,
            "Read",
            json!({"file_path": format!("/f{n}")}),
        )
        .await;
        items.push(item(session, &request, json!({"behavior":"allow"})));
    }
    // Every prompt twice: the second mention of each is refused by the registry.
    let again = items.clone();
    items.extend(again);
    let (status, body) = h.post("/v1/decisions", json!({ "decisions": items })).await;
    assert_eq!(status, 200, "{body}");
    let got = outcomes(&body);
    assert_eq!(got.len(), 240);
    assert!(got[..120].iter().all(|o| *o == (200, None)), "{body}");
    assert!(
        got[120..]
            .iter()
            .all(|o| *o == (409, Some("already_answered"))),
        "{body}"
    );
    barrier(&mut h, "s1", "barrier1").await;
    barrier(&mut h, "s2", "barrier2").await;
    for n in 0..120 {
        let session = if n % 2 == 0 { "s1" } else { "s2" };
        assert_eq!(h.answers(session, &format!("p{n}")).len(), 1, "p{n}");
    }
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_viewer_is_refused_and_a_bad_batch_answers_nothing() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "r1", "Bash", json!({"command":"ls"})).await;
    let one = item("s1", "r1", json!({"behavior":"allow"}));

    let mut resp = client_with(Some(VIEWER_TOKEN))
        .post(format!("{}/v1/decisions", h.api))
        .send_json(&json!({ "decisions": [one.clone()] }))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "forbidden");

    let too_many = vec![one.clone(); 1001];
    let mut bad_item = one.clone();
    bad_item["mesage"] = json!("typo");
    let misplaced = item("s1", "r1", json!({"behavior":"allow","message":"x"}));
    for (body, names) in [
        (json!({ "decisions": too_many }), "at most 1000"),
        (json!({ "decisions": [] }), "must not be empty"),
        (json!({ "decisions": [one.clone(), bad_item] }), "mesage"),
        (
            json!({ "decisions": [one.clone(), misplaced] }),
            "decisions[1]",
        ),
        (json!({ "decision": [one.clone()] }), "decision"),
    ] {
        let (status, err) = h.post("/v1/decisions", body).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some("invalid_body")),
            "{err}"
        );
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{message}");
    }
    let (status, err) = h.get("/v1/decisions").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );

    // Nothing of the refused batches was answered: the prompt is still pending, and answers now.
    let (_, pending) = h.get("/v1/permissions").await;
    assert_eq!(pending["permissions"][0]["request_id"], "r1");
    let (status, body) = h.post("/v1/decisions", json!({ "decisions": [one] })).await;
    assert_eq!((status, outcomes(&body)), (200, vec![(200, None)]));
    barrier(&mut h, "s1", "barrier1").await;
    assert_eq!(h.answers("s1", "r1").len(), 1);
    h.shutdown().await;
}
