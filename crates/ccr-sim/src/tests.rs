//! Socket-level tests with a real awc client over 127.0.0.1: admission, prompts, replay, POST.

use std::time::Duration;

use awc::error::WsProtocolError;
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::*;
use ccr_protocol::{permission_response, user_message_events, PermissionResult};

mod faults;
mod more;
mod wire;

/// Guard on every wait: a test fails instead of hanging.
pub(super) const T: Duration = Duration::from_secs(5);

/// The client side of a test WebSocket.
pub(super) trait WsStream:
    Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}
impl<S> WsStream for S where
    S: Stream<Item = Result<Frame, WsProtocolError>>
        + Sink<Message, Error = WsProtocolError>
        + Unpin
{
}
/// A boxed test client socket.
pub(super) type Ws = Box<dyn WsStream>;

pub(super) async fn start(sessions: Vec<(&str, &str, Script)>) -> SimHandle {
    let mut b = SimBuilder::new();
    for (id, tok, script) in sessions {
        b = b.session(id, tok, script);
    }
    b.start().await.expect("sim starts")
}

pub(super) async fn connect(sim: &SimHandle, session: &str, token: &str) -> Ws {
    let url = format!(
        "ws://{}/v1/sessions/ws/{session}/subscribe?organization_uuid=org-1",
        sim.addr()
    );
    let fut = awc::Client::new()
        .ws(url)
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .max_frame_size(4 << 20)
        .connect();
    let (_resp, framed) = tokio::time::timeout(T, fut)
        .await
        .expect("connect in time")
        .expect("upgrade accepted");
    Box::new(framed)
}

/// Next frame from the server, or `None` when the stream ended or failed.
pub(super) async fn recv(ws: &mut Ws) -> Option<Frame> {
    match tokio::time::timeout(T, ws.next())
        .await
        .expect("frame in time")
    {
        Some(Ok(frame)) => Some(frame),
        _ => None,
    }
}

/// Next frame, which must be JSON text.
pub(super) async fn next_json(ws: &mut Ws) -> Value {
    match recv(ws).await {
        Some(Frame::Text(b)) => serde_json::from_slice(&b).expect("server sends JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Next frame, which must be a close; returns its code.
pub(super) async fn expect_close(ws: &mut Ws) -> u16 {
    match recv(ws).await {
        Some(Frame::Close(Some(reason))) => u16::from(reason.code),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

pub(super) async fn send_text(ws: &mut Ws, text: impl Into<String>) {
    let msg = Message::Text(text.into().into());
    tokio::time::timeout(T, ws.send(msg))
        .await
        .expect("send in time")
        .expect("send ok");
}

/// Wait for the first event matching `pred`.
pub(super) async fn wait_for(
    rx: &mut broadcast::Receiver<SimEvent>,
    pred: impl Fn(&SimEvent) -> bool,
) -> SimEvent {
    tokio::time::timeout(T, async {
        loop {
            let ev = rx.recv().await.expect("event channel open");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("event in time")
}

/// Read JSON frames until one satisfies `pred`; returns all of them, the match last.
pub(super) async fn read_until(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = next_json(ws).await;
        let done = pred(&v);
        seen.push(v);
        if done {
            return seen;
        }
    }
}

pub(super) fn is_type(t: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == t
}

pub(super) const PROBE: &str =
    r#"{"type":"control_request","request_id":"probe","request":{"subtype":"frobnicate"}}"#;

/// Send an unsupported request; the next frame must be its error (so nothing else was sent before).
pub(super) async fn expect_quiet(ws: &mut Ws) {
    send_text(ws, PROBE).await;
    assert_eq!(
        next_json(ws).await,
        json!({"type":"control_response","response":{"subtype":"error","request_id":"probe",
            "error":"Unsupported control request subtype: frobnicate"}})
    );
}

pub(super) fn allow(request_id: &str, input: Value) -> String {
    let r = PermissionResult::Allow {
        updated_input: input,
        updated_permissions: None,
        tool_use_id: None,
        decision_classification: None,
    };
    permission_response(request_id, &r)
}

pub(super) fn deny(request_id: &str, message: &str, interrupt: bool) -> String {
    let r = PermissionResult::Deny {
        message: message.into(),
        interrupt,
        tool_use_id: None,
        decision_classification: None,
    };
    permission_response(request_id, &r)
}

pub(super) fn prompt_step(id: &str) -> Step {
    Step::Prompt {
        request_id: id.into(),
        tool_name: "Bash".into(),
        input: json!({"command":"npm test"}),
    }
}

#[actix_rt::test]
async fn wrong_bearer_is_accepted_then_closed_4003() {
    let sim = start(vec![("s1", "good", Script::empty())]).await;
    let mut rx = sim.subscribe();
    let mut ws = connect(&sim, "s1", "bad").await;
    assert_eq!(expect_close(&mut ws).await, 4003);
    let ev = wait_for(&mut rx, |e| matches!(e, SimEvent::Rejected { .. })).await;
    assert_eq!(
        ev,
        SimEvent::Rejected {
            session: "s1".into(),
            code: 4003
        }
    );
    assert_eq!((sim.attempts("s1"), sim.connections("s1")), (1, 0));
    let seen = sim.last_headers("s1").expect("recorded");
    assert_eq!(seen.bearer.as_deref(), Some("bad"));
    assert_eq!(seen.anthropic_version.as_deref(), Some("2023-06-01"));
    assert_eq!(seen.organization_uuid.as_deref(), Some("org-1"));
    assert!(!sim.is_connected("s1"));
    sim.stop().await;
}

#[actix_rt::test]
async fn unknown_session_is_closed_4001() {
    let sim = start(vec![]).await;
    let mut ws = connect(&sim, "nope", "tok").await;
    assert_eq!(expect_close(&mut ws).await, 4001);
    assert_eq!(sim.attempts("nope"), 1);
    assert_eq!(sim.connections("nope"), 0);
    sim.stop().await;
}

#[actix_rt::test]
async fn prompt_answer_unblocks_script() {
    let script = Script::new(vec![
        Step::Send(json!({"type":"hello"})),
        prompt_step("req_1"),
        Step::Send(json!({"type":"after"})),
    ]);
    let sim = start(vec![("s1", "tok", script)]).await;
    let mut rx = sim.subscribe();
    let mut ws = connect(&sim, "s1", "tok").await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Connected { .. })).await;
    assert!(sim.is_connected("s1"));
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    let prompt = next_json(&mut ws).await;
    assert_eq!(prompt["type"], "control_request");
    assert_eq!(prompt["request_id"], "req_1");
    let req = &prompt["request"];
    assert_eq!(req["subtype"], "can_use_tool");
    assert_eq!(req["tool_use_id"], "toolu_req_1");
    assert_eq!(req["permission_suggestions"], json!([]));
    assert!(req["display_name"].is_string() && req["description"].is_string());
    // The classifier of the main line sees a well-formed prompt.
    let inbound = ccr_protocol::classify(&prompt.to_string()).unwrap();
    assert!(matches!(
        inbound,
        ccr_protocol::Inbound::PermissionPrompt(_)
    ));
    assert_eq!(sim.outstanding("s1"), vec!["req_1".to_string()]);

    send_text(&mut ws, allow("req_1", json!({"command":"npm test"}))).await;
    let ev = wait_for(&mut rx, |e| matches!(e, SimEvent::Answered { .. })).await;
    let SimEvent::Answered {
        request_id,
        response,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(request_id, "req_1");
    assert_eq!(response["behavior"], "allow");
    assert_eq!(next_json(&mut ws).await["type"], "after");
    assert!(sim.outstanding("s1").is_empty());
    // A second answer is recorded but ignored.
    send_text(&mut ws, allow("req_1", json!({}))).await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Received { .. })).await;
    assert_eq!(sim.received("s1").len(), 2);
    sim.stop().await;
}

#[actix_rt::test]
async fn unanswered_prompt_is_replayed_on_reconnect() {
    let script = Script::new(vec![
        prompt_step("req_1"),
        Step::Send(json!({"type":"after"})),
    ]);
    let sim = start(vec![("s1", "tok", script)]).await;
    let mut rx = sim.subscribe();
    let mut ws = connect(&sim, "s1", "tok").await;
    let first = next_json(&mut ws).await;
    ws.send(Message::Close(None)).await.unwrap();
    wait_for(&mut rx, |e| matches!(e, SimEvent::Disconnected { .. })).await;
    assert!(!sim.is_connected("s1"));

    let mut ws = connect(&sim, "s1", "tok").await;
    let replayed = next_json(&mut ws).await;
    assert_eq!(replayed, first, "same frame, same request_id");
    assert_eq!(sim.connections("s1"), 2);
    send_text(&mut ws, allow("req_1", json!({"command":"npm test"}))).await;
    assert_eq!(
        next_json(&mut ws).await["type"],
        "after",
        "prompt not sent twice"
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn reject_next_closes_then_accepts() {
    let sim = start(vec![("s1", "tok", Script::empty())]).await;
    sim.reject_next("s1", 4001, 2);
    for _ in 0..2 {
        let mut ws = connect(&sim, "s1", "tok").await;
        assert_eq!(expect_close(&mut ws).await, 4001);
    }
    let mut rx = sim.subscribe();
    let _ws = connect(&sim, "s1", "tok").await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Connected { .. })).await;
    assert_eq!((sim.attempts("s1"), sim.connections("s1")), (3, 1));
    sim.stop().await;
}

async fn post(sim: &SimHandle, session: &str, token: &str, body: String) -> (u16, Value) {
    let url = format!("{}/v1/sessions/{session}/events", sim.base_url());
    let fut = awc::Client::new()
        .post(url)
        .bearer_auth(token)
        .insert_header(("content-type", "application/json"))
        .send_body(body);
    let mut resp = tokio::time::timeout(T, fut).await.unwrap().unwrap();
    let body = resp.body().await.unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&body).unwrap(),
    )
}

#[actix_rt::test]
async fn events_post_checks_and_unblocks_wait_user_message() {
    let script = Script::new(vec![
        Step::WaitUserMessage,
        Step::Send(json!({"type":"got_it"})),
    ]);
    let sim = start(vec![("s1", "tok", script)]).await;
    let mut rx = sim.subscribe();
    let mut ws = connect(&sim, "s1", "tok").await;
    let body = user_message_events("u-1", "s1", &json!("run the tests"));

    let (status, err) = post(&sim, "s1", "bad", body.clone()).await;
    assert_eq!(
        (status, err["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    assert_eq!(post(&sim, "zz", "tok", body.clone()).await.0, 404);
    assert_eq!(
        post(&sim, "s1", "tok", "{\"events\":3}".into()).await.0,
        400
    );
    assert_eq!(post(&sim, "s1", "tok", "not json".into()).await.0, 400);
    let bad_user = json!({"events":[{"type":"user","message":{"role":"assistant"}}]});
    assert_eq!(post(&sim, "s1", "tok", bad_user.to_string()).await.0, 400);
    assert!(sim.posted("s1").is_empty());

    assert_eq!(
        post(&sim, "s1", "tok", body.clone()).await,
        (200, json!({}))
    );
    let ev = wait_for(&mut rx, |e| matches!(e, SimEvent::Posted { .. })).await;
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ev,
        SimEvent::Posted {
            session: "s1".into(),
            body: parsed.clone()
        }
    );
    assert_eq!(sim.posted("s1"), vec![parsed]);
    assert_eq!(next_json(&mut ws).await["type"], "got_it");
    sim.stop().await;
}

#[actix_rt::test]
async fn stop_closes_every_socket_quickly() {
    let sim = start(vec![
        ("s1", "tok", Script::empty()),
        ("s2", "tok", Script::empty()),
    ])
    .await;
    let mut rx = sim.subscribe();
    let mut polite = connect(&sim, "s1", "tok").await;
    let mut silent = connect(&sim, "s2", "tok").await;
    for _ in 0..2 {
        wait_for(&mut rx, |e| matches!(e, SimEvent::Connected { .. })).await;
    }
    let t0 = std::time::Instant::now();
    let stop = {
        let sim = sim.clone();
        actix_rt::spawn(async move { sim.stop().await })
    };
    assert_eq!(expect_close(&mut polite).await, SHUTDOWN_CLOSE_CODE);
    polite.send(Message::Close(None)).await.unwrap();
    assert_eq!(expect_close(&mut silent).await, SHUTDOWN_CLOSE_CODE);
    tokio::time::timeout(T, stop).await.unwrap().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    assert!(!sim.is_connected("s1") && !sim.is_connected("s2"));
    // The listener is gone.
    let refused = awc::Client::new().get(sim.base_url()).send().await;
    assert!(refused.is_err());
    sim.stop().await; // idempotent
}
