//! Socket-level tests: handle pushes and faults, script fault steps, the endless demo.

use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::SinkExt;
use serde_json::{json, Value};

use super::*;
use super::{
    allow, connect, expect_close, expect_quiet, is_type, next_json, read_until, recv, send_text,
    start, wait_for,
};

#[actix_rt::test]
async fn push_close_drop_and_pings() {
    let sim = start(vec![("s1", "tok", Script::empty())]).await;
    let mut rx = sim.subscribe();
    assert!(!sim.push("s1", json!({"type":"x"})), "nothing live yet");
    let mut ws = connect(&sim, "s1", "tok").await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Connected { .. })).await;
    assert!(sim.push("s1", json!({"type":"x"})));
    assert!(sim.push_text("s1", "garbage{"));
    assert!(sim.push_binary("s1", vec![9, 9]));
    assert_eq!(next_json(&mut ws).await, json!({"type":"x"}));
    assert!(matches!(recv(&mut ws).await, Some(Frame::Text(t)) if &t[..] == b"garbage{"));
    assert!(matches!(recv(&mut ws).await, Some(Frame::Binary(b)) if b[..] == [9, 9]));

    ws.send(Message::Ping("p1".into())).await.unwrap();
    assert!(matches!(recv(&mut ws).await, Some(Frame::Pong(p)) if &p[..] == b"p1"));
    sim.set_paused("s1", true);
    ws.send(Message::Ping("p2".into())).await.unwrap();
    expect_quiet(&mut ws).await;
    sim.set_paused("s1", false);

    assert!(sim.close("s1", 1011));
    assert_eq!(expect_close(&mut ws).await, 1011);
    wait_for(&mut rx, |e| matches!(e, SimEvent::Disconnected { .. })).await;

    let mut ws = connect(&sim, "s1", "tok").await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Connected { .. })).await;
    assert!(sim.drop_connection("s1"));
    assert!(
        recv(&mut ws).await.is_none(),
        "no close frame, stream just ends"
    );
    wait_for(&mut rx, |e| matches!(e, SimEvent::Disconnected { .. })).await;
    assert!(!sim.is_connected("s1"));
    assert_eq!(sim.connections("s1"), 2);
    sim.stop().await;
}

#[actix_rt::test]
async fn fault_steps_and_position_survives_reconnects() {
    let script = Script::new(vec![
        Step::Garbage("oops".into()),
        Step::Binary(vec![7]),
        Step::Oversized(200_000),
        Step::Close(1011),
        Step::Send(json!({"type":"after_close"})),
        Step::Drop,
        Step::Send(json!({"type":"after_drop"})),
    ]);
    let sim = start(vec![("s1", "tok", script)]).await;
    let mut rx = sim.subscribe();
    let mut ws = connect(&sim, "s1", "tok").await;
    assert!(matches!(recv(&mut ws).await, Some(Frame::Text(t)) if &t[..] == b"oops"));
    assert!(matches!(recv(&mut ws).await, Some(Frame::Binary(b)) if b[..] == [7]));
    let Some(Frame::Text(big)) = recv(&mut ws).await else {
        panic!("oversized text")
    };
    assert!((199_000..=201_000).contains(&big.len()), "{}", big.len());
    let big: Value = serde_json::from_slice(&big).unwrap();
    assert_eq!(big["type"], "assistant");
    assert_eq!(expect_close(&mut ws).await, 1011);
    wait_for(&mut rx, |e| matches!(e, SimEvent::Disconnected { .. })).await;
    let mut ws = connect(&sim, "s1", "tok").await;
    assert_eq!(next_json(&mut ws).await["type"], "after_close");
    assert!(recv(&mut ws).await.is_none());
    wait_for(&mut rx, |e| matches!(e, SimEvent::Disconnected { .. })).await;
    let mut ws = connect(&sim, "s1", "tok").await;
    assert_eq!(next_json(&mut ws).await["type"], "after_drop");
    sim.stop().await;
}

#[actix_rt::test]
async fn demo_loops_with_fresh_prompt_ids() {
    let sim = start(vec![("sim-1", "tok", Script::demo(Duration::ZERO))]).await;
    let mut ws = connect(&sim, "sim-1", "tok").await;
    let mut ids = Vec::new();
    let mut tools = Vec::new();
    for _ in 0..6 {
        let frames = read_until(&mut ws, is_type("control_request")).await;
        let prompt = frames.last().unwrap();
        let id = prompt["request_id"].as_str().unwrap().to_owned();
        uuid::Uuid::parse_str(&id).expect("request ids are UUIDs");
        tools.push(prompt["request"]["tool_name"].as_str().unwrap().to_owned());
        send_text(&mut ws, allow(&id, prompt["request"]["input"].clone())).await;
        ids.push(id);
    }
    assert_eq!(tools, ["Bash", "Bash", "Edit", "Read", "WebFetch", "Bash"]);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    sim.stop().await;
}
