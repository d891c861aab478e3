//! Unit tests of the watch's state: the pending list first and no prompt twice, delivery
//! wording by what happened, folded `stream_event` runs, `--prompts-only`, the end notice.

use super::*;

const AT: &str = "2026-11-24T01:02:03.456Z";

fn watcher(prompts_only: bool) -> Watcher {
    Watcher::new(
        false,
        AnswerHint::new("http://127.0.0.1:8700", "http://127.0.0.1:8700"),
        prompts_only,
    )
}

fn requested(seq: u64, request: &str) -> Value {
    json!({"seq":seq,"at":AT,"type":"permission_requested","session_id":"s1","request_id":request,
        "tool_name":"Bash","request":{"subtype":"can_use_tool","tool_name":"Bash",
        "input":{"command":"ls"}},"confirmed":true,"kind":"can_use_tool"})
}

fn ev(seq: u64, kind: &str, request: &str, extra: Value) -> Value {
    let mut v = json!({"seq":seq,"at":AT,"type":kind,"session_id":"s1","request_id":request});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn empty_delta(seq: u64, session: &str) -> Value {
    json!({"seq":seq,"at":AT,"type":"sdk_message","session_id":session,"msg_type":"stream_event",
        "message":{"type":"stream_event","event":{"type":"content_block_delta"}}})
}

#[test]
fn a_listed_prompt_prints_as_live_and_not_again_from_the_stream() {
    let mut w = watcher(false);
    let pending = json!({"session_id":"s1","request_id":"r1","tool_name":"Bash","tool_use_id":"t",
        "input":{"command":"ls"},"request":{"subtype":"can_use_tool","tool_name":"Bash",
        "input":{"command":"ls"}},"received_at":AT,"age_ms":5,"confirmed":true,
        "kind":"can_use_tool","answerable":true});
    let listed = w.listed(&pending);
    assert_eq!(
        listed,
        w.event(&requested(7, "r9")).join("\n").replace("r9", "r1")
    );
    assert!(
        listed.starts_with("01:02:03.456Z PERMISSION s1 r1 Bash: ls\n"),
        "{listed}"
    );
    assert_eq!(
        w.event(&requested(8, "r1")),
        Vec::<String>::new(),
        "not twice"
    );
    // Only once skipped: the id is forgotten after it came by.
    assert_eq!(w.event(&requested(9, "r1")).len(), 1);
}

#[test]
fn delivered_is_worded_by_what_happened() {
    let mut w = watcher(false);
    // Written at once: delivered comes just before its answer.
    assert_eq!(
        w.event(&ev(1, "permission_delivered", "r1", json!({}))),
        ["01:02:03.456Z s1 delivered r1"]
    );
    assert_eq!(
        w.event(&ev(
            2,
            "permission_answered",
            "r1",
            json!({"behavior":"allow","decided_by":"alice","delivery":"sent"})
        )),
        ["01:02:03.456Z s1 allowed r1 by alice (sent)"]
    );
    // Queued while the session was away, written after it reconnected.
    w.event(&ev(
        3,
        "permission_answered",
        "r2",
        json!({"behavior":"deny","decided_by":"bob","delivery":"queued"}),
    ));
    assert_eq!(
        w.event(&ev(4, "permission_delivered", "r2", json!({}))),
        ["01:02:03.456Z s1 delivered r2 (queued answer sent after reconnect)"]
    );
    // Sent, the write failed, written again on a newer connection.
    w.event(&ev(
        5,
        "permission_answered",
        "r3",
        json!({"behavior":"allow","decided_by":"bob","delivery":"sent"}),
    ));
    assert_eq!(
        w.event(&ev(6, "permission_delivered", "r3", json!({}))),
        ["01:02:03.456Z s1 delivered r3 (sent again on a new connection)"]
    );
}

#[test]
fn empty_stream_events_fold_into_one_line_with_a_count() {
    let mut w = watcher(false);
    for seq in 1..=5 {
        assert!(w.event(&empty_delta(seq, "s1")).is_empty());
    }
    assert!(w.event(&empty_delta(6, "s2")).is_empty());
    let out = w.event(&ev(7, "permission_expired", "r1", json!({})));
    assert_eq!(
        out,
        [
            "01:02:03.456Z s1 sdk stream_event (empty) ×5",
            "01:02:03.456Z s2 sdk stream_event (empty)",
            "01:02:03.456Z s1 expired r1",
        ]
    );
    // A stream_event with something to say is not folded.
    let text = json!({"seq":8,"at":AT,"type":"sdk_message","session_id":"s1",
        "msg_type":"stream_event","message":{"type":"stream_event","subtype":"note"}});
    assert_eq!(w.event(&text), ["01:02:03.456Z s1 sdk stream_event: note"]);
    w.event(&empty_delta(9, "s1"));
    assert_eq!(w.flush(), ["01:02:03.456Z s1 sdk stream_event (empty)"]);
    assert!(w.flush().is_empty());
}

#[test]
fn prompts_only_keeps_prompt_events_and_notices() {
    let mut w = watcher(true);
    assert!(w.event(&empty_delta(1, "s1")).is_empty());
    assert!(w
        .event(
            &json!({"seq":2,"at":AT,"type":"session_state","session_id":"s1","state":"connected"})
        )
        .is_empty());
    assert_eq!(w.event(&requested(3, "r1")).len(), 1);
    assert_eq!(
        w.event(&ev(4, "permission_cancelled", "r1", json!({})))
            .len(),
        1
    );
    assert_eq!(w.event(&json!({"type":"lagged","resume_from":3})).len(), 1);
    assert!(
        w.flush().is_empty(),
        "nothing folded: SDK messages are not shown at all"
    );
    assert!(prompt_types().contains(&"permission.overdue"));
    assert!(prompt_types().iter().all(|t| t.starts_with("permission")));
}

#[test]
fn the_end_of_the_stream_says_how_to_resume() {
    let mut w = watcher(false);
    assert_eq!(w.ended(None), "stream ended by the server");
    w.event(&requested(41, "r1"));
    assert_eq!(
        w.ended(Some("demo 1")),
        "stream ended by the server; resume with: ccr-supervisor ctl watch 'demo 1' --after 41"
    );
    w.event(&json!({"type":"lagged","missed":3,"reason":"slow_reader","resume_after":40}));
    assert_eq!(
        w.ended(None),
        "stream ended by the server (this reader fell behind); resume with: ccr-supervisor ctl watch --after 40"
    );
    let mut w = watcher(true);
    w.json(&SseEvent {
        id: Some("5".into()),
        event: "sdk_message".into(),
        data: json!({"seq":5,"type":"sdk_message"}).to_string(),
    });
    assert!(w.ended(None).ends_with("watch --prompts-only --after 5"));
}
