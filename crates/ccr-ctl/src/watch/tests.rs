//! Unit tests of the watch rendering: every event type, with and without colour.

use super::*;
use serde_json::json;

fn hint() -> AnswerHint {
    AnswerHint::new("http://127.0.0.1:8700", "http://127.0.0.1:8700")
}

fn plain(ev: Value) -> String {
    render_event(&ev, false, &hint())
}

const AT: &str = "2026-11-24T01:02:03.456Z";

#[test]
fn permission_prompt_is_prominent_with_the_answer_command() {
    let ev = json!({"seq":42,"at":AT,"type":"permission_requested","session_id":"demo-1",
        "request_id":"req-1","tool_name":"Bash","tool_use_id":"toolu_1",
        "request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"npm test"}}});
    let out = plain(ev.clone());
    assert_eq!(
        out,
        "01:02:03.456Z PERMISSION demo-1 req-1 Bash: npm test\n    answer: \
         ccr-supervisor ctl allow demo-1 req-1   (or: ccr-supervisor ctl deny demo-1 req-1)"
    );
    let coloured = render_event(&ev, true, &hint());
    assert!(
        coloured.contains("\u{1b}[1m\u{1b}[33mPERMISSION") || coloured.contains("\u{1b}[1;33m")
    );
    assert!(coloured.contains("\u{1b}[0m"));
    assert!(!out.contains('\u{1b}'));
}

#[test]
fn answer_hint_names_a_non_default_url_and_quotes() {
    let h = AnswerHint::new("http://10.0.0.5:9000/", "http://127.0.0.1:8700");
    assert_eq!(
        h.command("allow", "s 1", "it's"),
        r"ccr-supervisor ctl --url http://10.0.0.5:9000/ allow 's 1' 'it'\''s'"
    );
    assert_eq!(shell_quote(""), "''");
}

#[test]
fn state_answer_and_lifecycle_lines() {
    let s = plain(
        json!({"at":AT,"type":"session_state","session_id":"s1","state":"reconnecting",
        "attempt":2,"delay_ms":1500,"last_error":"socket closed"}),
    );
    assert_eq!(
        s,
        "01:02:03.456Z s1 state reconnecting (attempt 2, in 1s) (last error: socket closed)"
    );
    let s = plain(
        json!({"at":AT,"type":"session_state","session_id":"s1","state":"failed",
        "reason":"unauthorized","detail":"close 4003","last_error":null}),
    );
    assert_eq!(
        s,
        "01:02:03.456Z s1 state failed (unauthorized): close 4003"
    );
    let s = plain(
        json!({"at":AT,"type":"permission_answered","session_id":"s1","request_id":"r1",
        "behavior":"deny","decided_by":"alice","delivery":"queued"}),
    );
    assert_eq!(
        s,
        "01:02:03.456Z s1 denied r1 by alice (queued for reconnect)"
    );
    for (t, word) in [
        ("permission_delivered", "delivered r1"),
        ("permission_cancelled", "cancelled r1"),
        ("permission.overdue", "overdue r1"),
        ("permission_expired", "expired r1"),
    ] {
        let s = plain(json!({"at":AT,"type":t,"session_id":"s1","request_id":"r1"}));
        assert!(s.starts_with(&format!("01:02:03.456Z s1 {word}")), "{s}");
    }
}

#[test]
fn sdk_error_lagged_and_unknown_events() {
    let msg = json!({"type":"assistant","message":{"role":"assistant","content":[
        {"type":"text","text":"Running\nthe tests"},{"type":"tool_use","name":"Bash","input":{}}]}});
    let s = plain(
        json!({"at":AT,"type":"sdk_message","session_id":"s1","msg_type":"assistant","message":msg}),
    );
    assert_eq!(
        s,
        "01:02:03.456Z s1 sdk assistant: Running⏎ the tests [tool_use Bash]"
    );
    let result = json!({"type":"result","subtype":"success","result":"done"});
    assert_eq!(sdk_summary(&result), "success: done");
    let s = plain(json!({"at":AT,"type":"error","session_id":"s1","message":"boom"}));
    assert_eq!(s, "01:02:03.456Z s1 error boom");
    let s = plain(json!({"seq":9,"at":AT,"type":"lagged","missed":17}));
    assert_eq!(
        s,
        "01:02:03.456Z - lagged missed 17 events; the server ends the stream"
    );
    let s = plain(json!({"type":"lagged","missed":17,"reason":"slow_reader","resume_after":1234}));
    assert!(
        s.ends_with("lagged missed 17 events (this reader fell behind); the server ends the stream: resume with --after 1234"),
        "{s}"
    );
    let s = plain(json!({"type":"lagged","resume_from":100}));
    assert!(
        s.ends_with("lagged events before 100 are gone; continuing"),
        "{s}"
    );
    let s = plain(json!({"type":"lagged","reason":"resume_point_unknown","resume_from":100}));
    assert!(
        s.ends_with("lagged --after is not this server's (it restarted, or is another instance): replaying all it kept, from 100; some events may repeat"),
        "{s}"
    );
    let s = plain(json!({"seq":1,"at":AT,"type":"brand_new","session_id":"s1","x":[1,2]}));
    assert_eq!(s, r#"01:02:03.456Z s1 brand_new {"x":[1,2]}"#);
    // Nothing is required: an empty object still renders.
    assert!(plain(json!({})).contains('?'));
}

#[test]
fn sse_events_that_are_not_json_and_json_lines() {
    let ev = SseEvent {
        id: None,
        event: "message".into(),
        data: "not json".into(),
    };
    assert_eq!(
        render_sse(&ev, false, &hint()),
        "unreadable message event: not json"
    );
    let ev = SseEvent {
        id: Some("1".into()),
        event: "x".into(),
        data: "{\"a\":\n1}".into(),
    };
    assert_eq!(json_line(&ev), r#"{"a":1}"#);
}

/// Every terminal-active piece a session could put in a prompt.
const HOSTILE: &str = "\u{1b}]52;c;cm0gLXJmIC8=\u{7}\u{1b}[2K\u{1b}[1G\u{1b}]8;;https://x\u{1b}\\\u{9b}1A\u{7}\u{202e}";

#[test]
fn prompt_shows_decision_reason_and_ask_rule_sanitized() {
    let ev = json!({"at":AT,"type":"permission_requested","session_id":"s1","request_id":"r1",
        "tool_name":"Bash","request":{"subtype":"can_use_tool","tool_name":"Bash",
        "input":{"command":"npm test"},
        "decision_reason":format!("Matches {HOSTILE}ask rule\nBash(npm test:*)"),
        "matched_ask_rule":{"source":"localSettings","tool_name":"Bash","rule_content":"npm test:*"}}});
    let out = plain(ev);
    assert_eq!(
        out,
        "01:02:03.456Z PERMISSION s1 r1 Bash: npm test\n    \
         reason: Matches ask rule⏎ Bash(npm test:*)\n    \
         ask rule: Bash(npm test:*) from localSettings (a person must answer)\n    \
         answer: ccr-supervisor ctl allow s1 r1   (or: ccr-supervisor ctl deny s1 r1)"
    );
}

#[test]
fn no_session_text_reaches_the_terminal_raw() {
    let h = HOSTILE;
    let events = [
        json!({"at":AT,"type":"permission_requested","session_id":format!("s{h}"),
            "request_id":format!("r{h}"),"tool_name":format!("Bash{h}"),
            "request":{"tool_name":format!("Bash{h}"),"input":{"command":format!("ls {h}")},
                "title":h,"description":h,"display_name":h,"decision_reason":h,
                "matched_ask_rule":{"source":h,"tool_name":h,"rule_content":h}}}),
        json!({"at":AT,"type":"permission_requested","session_id":"s","request_id":"r",
            "tool_name":"WebFetch","request":{"input":{"url":h}}}),
        json!({"at":AT,"type":"session_state","session_id":"s","state":"failed","reason":h,
            "detail":h,"last_error":h}),
        json!({"at":AT,"type":"sdk_message","session_id":"s","msg_type":h,
            "message":{"message":{"content":[{"type":"text","text":h},{"type":"tool_use","name":h},{"type":h}]}}}),
        json!({"at":AT,"type":"sdk_message","session_id":"s","msg_type":"result",
            "message":{"subtype":h,"result":h}}),
        json!({"at":AT,"type":"permission_answered","session_id":"s","request_id":h,
            "behavior":"deny","decided_by":h,"delivery":h}),
        json!({"at":AT,"type":"error","session_id":"s","message":h}),
        json!({"at":h,"type":h,"session_id":h,h:h}),
    ];
    for ev in events {
        for color in [false, true] {
            let out = render_event(&ev, color, &hint());
            // Only our own SGR colour sequences may appear, and nothing else active.
            let ours = out
                .replace("\u{1b}[0m", "")
                .replace("\u{1b}[1m", "")
                .replace("\u{1b}[2m", "")
                .replace("\u{1b}[31m", "")
                .replace("\u{1b}[32m", "")
                .replace("\u{1b}[33m", "");
            assert!(
                ours.chars().all(|c| c == '\n' || !c.is_control()) && !ours.contains('\u{202e}'),
                "{ev}: {out:?}"
            );
        }
    }
    let sse = SseEvent {
        event: format!("x{h}"),
        data: format!("not json {h}"),
        ..SseEvent::default()
    };
    let out = render_sse(&sse, false, &hint());
    assert!(out.chars().all(|c| !c.is_control()), "{out:?}");
    let sse = SseEvent {
        data: json!({"type":"error","message":h}).to_string(),
        ..SseEvent::default()
    };
    let line = json_line(&sse);
    assert!(
        line.chars().all(|c| !c.is_control() && c != '\u{202e}'),
        "{line:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap(),
        serde_json::from_str::<Value>(&sse.data).unwrap(),
        "--json keeps the value"
    );
}
