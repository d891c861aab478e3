//! Routing per PROTOCOL §2: junk is skipped without closing, SDK messages are forwarded unchanged.

use crate::common::{wait_bus, wait_received, Harness, Sess};
use ccr_supervisor::events::Event;
use serde_json::json;

#[actix_rt::test]
async fn junk_frames_are_skipped_and_the_connection_survives() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_state("s1", "connected").await;
    let mut bus = h.bus();
    assert!(h.sim.push_text("s1", "this is not json"));
    assert!(h.sim.push_text("s1", r#"{"no_type":true}"#));
    assert!(h.sim.push_text("s1", r#"{"type":42}"#));
    assert!(h.sim.push_binary("s1", vec![1, 2, 3]));
    // Over the test's max_frame_bytes (4096) but valid JSON.
    let big = format!(r#"{{"type":"assistant","pad":"{}"}}"#, "x".repeat(5000));
    assert!(h.sim.push_text("s1", big));
    let after = r#"{"type":"brand_new_kind","nested":{"keep":[1,2,3]},"unknown_field":"kept"}"#;
    assert!(h.sim.push_text("s1", after));
    let ev = wait_bus(
        &mut bus,
        |e| matches!(e, Event::SdkMessage { msg_type, .. } if msg_type == "brand_new_kind"),
    )
    .await;
    let Event::SdkMessage { message, .. } = ev else {
        unreachable!()
    };
    assert_eq!(&*message, after, "forwarded byte for byte");
    let s = h.session("s1").await;
    assert_eq!(s["state"], "connected");
    assert_eq!(s["counters"]["frames_in"]["invalid"], 4, "{s}");
    assert_eq!(s["counters"]["frames_in"]["oversized"], 1, "{s}");
    assert_eq!(s["counters"]["frames_in"]["sdk"], 1, "{s}");
    assert_eq!(h.sim.connections("s1"), 1, "never reconnected");
    h.shutdown().await;
}

#[actix_rt::test]
async fn unsupported_control_request_gets_the_exact_error() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.sim.push(
        "s1",
        json!({"type":"control_request","request_id":"req_9","request":{"subtype":"frobnicate","x":1}}),
    );
    let got = wait_received(&mut h.sim_events, "s1", |f| f["type"] == "control_response").await;
    assert_eq!(
        got,
        json!({"type":"control_response","response":{"subtype":"error","request_id":"req_9",
            "error":"Unsupported control request subtype: frobnicate"}})
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn keep_alive_is_ignored_and_counted() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_state("s1", "connected").await;
    let mut bus = h.bus();
    h.sim.push("s1", json!({"type":"keep_alive"}));
    h.sim.push(
        "s1",
        json!({"type":"system","subtype":"background_tasks_changed"}),
    );
    wait_bus(
        &mut bus,
        |e| matches!(e, Event::SdkMessage { msg_type, .. } if msg_type == "system"),
    )
    .await;
    let s = h.session("s1").await;
    assert_eq!(s["counters"]["frames_in"]["keep_alive"], 1);
    assert_eq!(s["counters"]["frames_in"]["sdk"], 1);
    h.shutdown().await;
}
