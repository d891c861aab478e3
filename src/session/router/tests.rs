//! Unit tests of the transport-agnostic router: what each frame makes the transport do.

use super::*;
use serde_json::json;

use crate::registry::LIMIT_FRAME_BYTES;
use ccr_protocol::scan::HeadScanner;

/// Records what the router asked for.
#[derive(Default)]
struct Recorded {
    events: Vec<Event>,
    prompts: Vec<(PermissionPrompt, Option<Refusal>)>,
    cancels: Vec<String>,
    replies: Vec<String>,
    initialized: u32,
}

impl Output for Recorded {
    fn publish(&mut self, event: Event) {
        self.events.push(event);
    }
    fn prompt(&mut self, prompt: PermissionPrompt, refusal: Option<Refusal>) {
        self.prompts.push((prompt, refusal));
    }
    fn cancel(&mut self, request_id: String) {
        self.cancels.push(request_id);
    }
    fn reply(&mut self, frame: String) {
        self.replies.push(frame);
    }
    fn initialized(&mut self) {
        self.initialized += 1;
    }
}

fn router() -> Router {
    Router::new(Arc::from("s1"), Metrics::new())
}

fn prompt_frame(id: &str) -> Value {
    json!({"type":"control_request","request_id":id,
        "request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls"},"tool_use_id":format!("t_{id}")}})
}

#[test]
fn a_user_message_echoed_twice_is_forwarded_once() {
    let (mut r, mut out) = (router(), Recorded::default());
    let echo =
        json!({"type":"user","uuid":"u-1","message":{"role":"user","content":"hi"}}).to_string();
    r.on_text(&echo, &mut out);
    r.on_text(&echo, &mut out);
    let other =
        json!({"type":"user","uuid":"u-2","message":{"role":"user","content":"hi"}}).to_string();
    r.on_text(&other, &mut out);
    let no_uuid = json!({"type":"user","message":{"role":"user","content":"x"}}).to_string();
    r.on_text(&no_uuid, &mut out);
    r.on_text(&no_uuid, &mut out);
    assert_eq!(
        out.events.len(),
        4,
        "u-1 once, u-2, and both messages without a uuid"
    );
    assert_eq!((r.counters().sdk, r.counters().duplicate), (4, 1));
    // Only user messages are deduplicated.
    let assistant = json!({"type":"assistant","uuid":"u-1"}).to_string();
    r.on_text(&assistant, &mut out);
    assert_eq!(out.events.len(), 5);
}

#[test]
fn recent_ids_are_bounded_oldest_first() {
    let mut ids = RecentIds::new(2);
    assert!(ids.insert("a") && ids.insert("b"));
    assert!(!ids.insert("a"));
    assert!(ids.insert("c"), "a third id pushes out the oldest");
    assert!(ids.insert("a"), "a was forgotten");
    assert!(!ids.insert("c"));
}

#[test]
fn the_watchdog_fires_only_after_silence_following_a_send() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(60);
    let mut w = Watchdog::default();
    assert!(
        !w.expired(t0 + timeout * 10, timeout),
        "nothing sent: never"
    );
    w.sent(t0);
    w.sent(t0 + Duration::from_secs(30));
    assert!(!w.expired(t0 + Duration::from_secs(59), timeout));
    assert!(
        w.expired(t0 + timeout, timeout),
        "measured from the first unanswered send"
    );
    w.heard();
    assert!(
        !w.expired(t0 + timeout * 10, timeout),
        "anything received resets it"
    );
    w.sent(t0);
    assert!(!w.expired(t0 + timeout * 10, Duration::ZERO), "0s = off");
}

#[test]
fn initialize_lists_are_routed_like_replays_and_absence_concludes_nothing() {
    let (mut r, mut out, now) = (router(), Recorded::default(), Instant::now());
    let frame: Value = serde_json::from_str(&r.initialize(&[], now)).unwrap();
    let id = frame["request_id"].as_str().unwrap().to_owned();
    assert_eq!(frame["request"], json!({"subtype":"initialize"}));
    assert_eq!(r.initialize_state(), InitializeState::Sent);
    let reply = json!({"type":"control_response","response":{"subtype":"success","request_id":id,
        "response":{},"pending_permission_requests":[prompt_frame("p1"), prompt_frame("p2")],
        "pending_user_dialog_requests":[]}});
    r.on_text(&reply.to_string(), &mut out);
    let ids: Vec<_> = out
        .prompts
        .iter()
        .map(|(p, _)| p.request_id.as_str())
        .collect();
    assert_eq!(ids, ["p1", "p2"]);
    assert_eq!(r.initialize_state(), InitializeState::Listed);
    assert_eq!(out.initialized, 1, "after the listed prompts");
    assert_eq!(
        r.counters().control_request,
        0,
        "listed requests are not frames"
    );

    let (mut r, mut out) = (router(), Recorded::default());
    let frame: Value = serde_json::from_str(&r.initialize(&[], now)).unwrap();
    let old = json!({"type":"control_response","response":{"subtype":"success",
        "request_id":frame["request_id"]}});
    r.on_text(&old.to_string(), &mut out);
    assert!(
        out.prompts.is_empty() && out.cancels.is_empty(),
        "an older CLI: nothing concluded"
    );
    assert_eq!(r.initialize_state(), InitializeState::Unlisted);

    let mut r = router();
    r.initialize(&[], now);
    let timeout = Duration::from_secs(10);
    assert!(!r.initialize_overdue(now + Duration::from_secs(9), timeout));
    assert!(
        r.initialize_overdue(now + timeout, timeout),
        "checked at a heartbeat"
    );
    assert_eq!(r.initialize_state(), InitializeState::Failed);
    assert!(!r.initialize_overdue(now + timeout * 2, timeout), "once");
    let mut r = router();
    r.initialize(&[], now);
    assert!(r.initialize_timed_out());
    assert_eq!(r.initialize_state(), InitializeState::Failed);
    assert!(!r.initialize_timed_out(), "once");
}

#[test]
fn an_interrupt_answer_reaches_its_caller_and_others_are_ignored() {
    let (mut r, mut out, now) = (router(), Recorded::default(), Instant::now());
    let (id, frame, mut rx) = r.interrupt(true, now);
    let frame: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(
        frame["request"],
        json!({"subtype":"interrupt","cancel_queued":true})
    );
    assert!(r.watchdog_expired(now + Duration::from_secs(60), Duration::from_secs(60)));
    let unrelated =
        json!({"type":"control_response","response":{"subtype":"success","request_id":"x"}});
    r.on_text(&unrelated.to_string(), &mut out);
    assert!(rx.try_recv().is_err(), "not ours");
    let answer = json!({"type":"control_response","response":{"subtype":"success","request_id":id,
        "response":{"still_queued":[],"cancelled":["m1"]}}});
    r.on_text(&answer.to_string(), &mut out);
    assert_eq!(
        rx.try_recv().unwrap(),
        Ok(json!({"still_queued":[],"cancelled":["m1"]}))
    );
    assert!(!r.watchdog_expired(now + Duration::from_secs(600), Duration::from_secs(60)));
}

#[test]
fn an_oversized_prompt_is_refused_and_an_unsupported_request_answered() {
    let (mut r, mut out) = (router(), Recorded::default());
    let text = prompt_frame("big").to_string();
    r.on_oversized(HeadScanner::scan(text.as_bytes()), 10, &mut out);
    let (prompt, refusal) = &out.prompts[0];
    assert_eq!(prompt.request_id, "big");
    let refusal = refusal.as_ref().expect("refused");
    assert_eq!(refusal.decided_by, LIMIT_FRAME_BYTES);
    assert!(
        refusal.message.contains("limit of 10 bytes"),
        "{}",
        refusal.message
    );
    assert!(matches!(&out.events[0], Event::Error { message, .. } if message.contains("big")));
    assert_eq!(r.counters().oversized, 1);
    let frob =
        json!({"type":"control_request","request_id":"f1","request":{"subtype":"frobnicate"}});
    r.on_text(&frob.to_string(), &mut out);
    assert!(out.replies[0].contains("Unsupported control request subtype: frobnicate"));
    r.on_text(
        r#"{"type":"control_cancel_request","request_id":"big"}"#,
        &mut out,
    );
    assert_eq!(out.cancels, ["big"]);
}
