use std::sync::Arc;

use super::*;

/// An error event of `session` with a message of `n` bytes (for the structures' tests).
pub(super) fn ev(session: &str, n: usize) -> Event {
    Event::Error {
        session_id: Arc::from(session),
        message: "x".repeat(n),
    }
}

/// Per-session history bounds, with no total bound.
pub(super) fn limits(events: usize, bytes: usize) -> HistoryLimits {
    HistoryLimits {
        events,
        bytes,
        total_bytes: usize::MAX,
    }
}

#[test]
fn sdk_message_is_embedded_as_json_not_a_string() {
    let e = Event::SdkMessage {
        session_id: "s".into(),
        msg_type: "assistant".into(),
        message: r#"{"type":"assistant","x":1}"#.into(),
    };
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["message"]["x"], 1);
    assert_eq!(v["type"], "sdk_message");
}

#[test]
fn overdue_event_type_is_spelled_as_the_contract_says() {
    let e = Event::PermissionOverdue {
        session_id: "s".into(),
        request_id: "r".into(),
        waiting_ms: 5,
    };
    assert_eq!(
        serde_json::to_value(&e).unwrap()["type"],
        "permission.overdue"
    );
    assert_eq!(e.kind(), "permission.overdue");
}

#[test]
fn slow_subscriber_lags_instead_of_blocking() {
    let bus = EventBus::new(BusLimits {
        subscriber_buffer: 2,
        ..BusLimits::default()
    });
    let mut rx = bus.subscribe();
    let sub = bus.subscribe_from(None, None);
    assert_eq!(bus.subscribers(), 2);
    for _ in 0..5 {
        bus.publish(Event::Error {
            session_id: "s".into(),
            message: "m".into(),
        });
    }
    assert!(matches!(
        rx.try_recv(),
        Err(broadcast::error::TryRecvError::Lagged(3))
    ));
    let read = |cursor| bus.read(&sub.reader, cursor, None, 10);
    assert!(matches!(read(sub.cursor), Read::Lagged(3)));
    assert!(matches!(read(3), Read::Events(e, 5) if e.len() == 2));
    // Read up to the newest event: the window no longer holds any.
    let window = |bus: &EventBus| bus.hub.log.lock().recent.len();
    assert_eq!(window(&bus), 0);
    bus.publish(Event::Error {
        session_id: "s".into(),
        message: "m".into(),
    });
    assert_eq!(window(&bus), 1);
    drop(sub);
    assert_eq!(bus.subscribers(), 1);
    // With no reader the window holds nothing.
    assert_eq!(window(&bus), 0);
    bus.publish(Event::Error {
        session_id: "s".into(),
        message: "m".into(),
    });
    assert_eq!(window(&bus), 0);
}

#[tokio::test]
async fn a_waiting_reader_is_woken_by_a_publish_even_one_before_it_waits() {
    let bus = EventBus::new(BusLimits::default());
    let published = bus.published();
    // Published after the waiter was made but before it is awaited: not lost.
    bus.publish(Event::Error {
        session_id: "s".into(),
        message: "m".into(),
    });
    published.await;
    assert_eq!(bus.hub.waiting.load(Ordering::SeqCst), 0);
    // A waiter that is dropped unresolved stops counting too.
    drop(bus.published());
    assert_eq!(bus.hub.waiting.load(Ordering::SeqCst), 0);
}

#[test]
fn resume_has_no_gap_between_history_and_live() {
    let bus = EventBus::new(BusLimits::default());
    let err = |m: &str| Event::Error {
        session_id: "s".into(),
        message: m.into(),
    };
    bus.publish(err("one"));
    bus.publish(err("two"));
    let sub = bus.subscribe_from(Some("s"), Some(1));
    bus.publish(err("three"));
    let seqs: Vec<u64> = sub.backlog.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [2]);
    assert!(matches!(bus.read(&sub.reader, sub.cursor, Some("s"), 10),
        Read::Events(e, 3) if e.len() == 1 && e[0].seq == 3));
    assert_eq!(bus.page("s", 0, 2).events.len(), 2);
}

#[test]
fn a_prompt_request_with_line_breaks_as_sent_is_flagged_for_line_framing() {
    let frame = "{\"type\":\"control_request\",\"request_id\":\"r\",\"request\":{\n\"subtype\":\"can_use_tool\",\"tool_name\":\"Bash\",\"input\":{}}}";
    let Ok(ccr_protocol::Inbound::PermissionPrompt(p)) = ccr_protocol::classify(frame) else {
        panic!("not a prompt")
    };
    let event = Event::permission_requested(&Arc::from("s"), "r", &p, true);
    assert!(
        encode::has_line_breaks(&event),
        "the request is kept as sent"
    );
    let compact = frame.replace('\n', "");
    let Ok(ccr_protocol::Inbound::PermissionPrompt(p)) = ccr_protocol::classify(&compact) else {
        panic!("not a prompt")
    };
    let event = Event::permission_requested(&Arc::from("s"), "r", &p, true);
    assert!(!encode::has_line_breaks(&event));
}
