//! The chaos test's simulator surface: the wire log, live-only cancels, TCP
//! resets and paused readers, with a real awc client over 127.0.0.1.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use super::*;
use super::{allow, connect, is_type, read_until, send_text, wait_for, T};

async fn start_logged(id: &str) -> SimHandle {
    SimBuilder::new()
        .session(id, "tok", Script::empty())
        .wire_log(1000)
        .keep_received(false)
        .start()
        .await
        .expect("sim starts")
}

fn events(sim: &SimHandle) -> Vec<WireEvent> {
    let (records, overflowed) = sim.take_wire();
    assert_eq!(overflowed, 0);
    assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
    records.into_iter().map(|r| r.event).collect()
}

#[actix_rt::test]
async fn wire_log_orders_prompts_replays_cancels_and_answers() {
    let sim = start_logged("s1").await;
    let mut rx = sim.subscribe();
    let mut ws = connect(&sim, "s1", "tok").await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Connected { .. })).await;
    assert!(sim.prompt("s1", "p1", "Bash", json!({"command": "ls"})));
    assert!(sim.prompt("s1", "p2", "Bash", json!({"command": "pwd"})));
    read_until(&mut ws, |v| v["request_id"] == "p2").await;
    send_text(&mut ws, allow("p1", json!({"command": "ls"}))).await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Answered { .. })).await;
    assert_eq!(sim.cancel_live("s1", "p2"), Some(1));
    assert_eq!(sim.cancel_live("s1", "p2"), None, "no longer outstanding");
    read_until(&mut ws, is_type("control_cancel_request")).await;
    // A late answer for the withdrawn prompt is logged, but settles nothing.
    send_text(&mut ws, allow("p2", json!({"command": "pwd"}))).await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Received { .. })).await;
    assert!(sim.drop_connection("s1"));
    wait_for(&mut rx, |e| matches!(e, SimEvent::Disconnected { .. })).await;
    assert!(!sim.prompt("s1", "p3", "Bash", json!({"command": "id"})));
    assert!(!sim.prompt("s1", "p4", "Bash", json!({"command": "w"})));
    assert_eq!(sim.cancel_live("s1", "p3"), None, "nothing live: kept");
    assert!(sim.withdraw_unseen("s1", "p4"));
    assert!(!sim.withdraw_unseen("s1", "p4"), "no longer outstanding");
    let _ws = connect(&sim, "s1", "tok").await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Connected { .. })).await;
    assert!(!sim.withdraw_unseen("s1", "p3"), "live now");

    let answered = |id: &str, settled| WireEvent::Answered {
        request_id: id.into(),
        conn: 1,
        body: json!({"subtype": "success", "request_id": id,
                     "response": {"behavior": "allow", "updatedInput": {"command": if id == "p1" {"ls"} else {"pwd"}}}}),
        settled,
    };
    let prompted = |id: &str, conn| WireEvent::Prompted {
        request_id: id.into(),
        conn,
    };
    assert_eq!(
        events(&sim),
        [
            WireEvent::Attached {
                conn: 1,
                replayed: vec![]
            },
            prompted("p1", Some(1)),
            prompted("p2", Some(1)),
            answered("p1", true),
            WireEvent::Cancelled {
                request_id: "p2".into(),
                conn: Some(1)
            },
            answered("p2", false),
            WireEvent::Detached { conn: 1 },
            prompted("p3", None),
            prompted("p4", None),
            WireEvent::Cancelled {
                request_id: "p4".into(),
                conn: None
            },
            WireEvent::Attached {
                conn: 2,
                replayed: vec!["p3".into()]
            },
        ]
    );
    assert!(sim.received("s1").is_empty(), "keep_received(false)");
    sim.stop().await;
}

#[actix_rt::test]
async fn reset_aborts_the_connection_without_a_close_frame() {
    let sim = start_logged("s1").await;
    let mut rx = sim.subscribe();
    let mut ws = connect(&sim, "s1", "tok").await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Connected { .. })).await;
    assert!(sim.reset_connection("s1"));
    let next = tokio::time::timeout(T, ws.next()).await.expect("in time");
    match next {
        Some(Err(err)) => assert!(err.to_string().contains("reset"), "{err}"),
        other => panic!("expected a connection reset, got {other:?}"),
    }
    wait_for(&mut rx, |e| matches!(e, SimEvent::Disconnected { .. })).await;
    assert!(!sim.reset_connection("s1"), "nothing live any more");
    sim.stop().await;
}

#[actix_rt::test]
async fn a_paused_reader_reads_late_or_never() {
    let sim = start_logged("s1").await;
    let mut rx = sim.subscribe();
    let mut ws = connect(&sim, "s1", "tok").await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Connected { .. })).await;

    // Paused, then resumed: the answer is read, but not before the pause ends.
    assert!(sim.prompt("s1", "p1", "Bash", json!({"command": "ls"})));
    read_until(&mut ws, |v| v["request_id"] == "p1").await;
    let pause = Duration::from_millis(300);
    let paused_at = Instant::now();
    assert!(sim.pause_reading("s1", pause));
    send_text(&mut ws, allow("p1", json!({"command": "ls"}))).await;
    wait_for(&mut rx, |e| matches!(e, SimEvent::Answered { .. })).await;
    let (records, _) = sim.take_wire();
    let read = records
        .iter()
        .find(|r| matches!(&r.event, WireEvent::Answered { request_id, .. } if request_id == "p1"))
        .expect("answer logged");
    assert!(
        read.at.duration_since(paused_at) >= pause,
        "read only after the pause"
    );

    // Paused, then the connection ends: the answer is never read and the
    // prompt is replayed on the next connection.
    assert!(sim.prompt("s1", "p2", "Bash", json!({"command": "pwd"})));
    read_until(&mut ws, |v| v["request_id"] == "p2").await;
    assert!(sim.pause_reading("s1", Duration::from_secs(60)));
    send_text(&mut ws, allow("p2", json!({"command": "pwd"}))).await;
    assert!(sim.reset_connection("s1"));
    wait_for(&mut rx, |e| matches!(e, SimEvent::Disconnected { .. })).await;
    assert_eq!(sim.outstanding("s1"), ["p2"]);
    let mut ws = connect(&sim, "s1", "tok").await;
    assert_eq!(
        read_until(&mut ws, is_type("control_request")).await[0]["request_id"],
        "p2"
    );
    let logged = events(&sim);
    assert!(
        !logged
            .iter()
            .any(|e| matches!(e, WireEvent::Answered { request_id, .. } if request_id == "p2")),
        "{logged:?}"
    );
    assert!(logged.contains(&WireEvent::Attached {
        conn: 2,
        replayed: vec!["p2".into()]
    }));
    sim.stop().await;
}
