//! Unit tests of `ctl show`: each tool's input presented readably, the details, no escapes.

use super::*;
use serde_json::json;

fn hint() -> AnswerHint {
    AnswerHint::new("http://127.0.0.1:8700", "http://127.0.0.1:8700")
}

/// A prompt as `ctl` reads it: the defaults, then `fields`, every string sanitized.
fn prompt(fields: Value) -> PendingPrompt {
    let mut p = json!({"session_id":"s1","request_id":"req-1","tool_name":"Bash",
        "tool_use_id":null,"input":{},"request":{"subtype":"can_use_tool"},
        "received_at":"2026-11-24T01:02:03.456Z","age_ms":61_000,"confirmed":true,
        "kind":"can_use_tool","answerable":true});
    for (k, v) in fields.as_object().unwrap() {
        p[k] = v.clone();
    }
    resolve::typed(&p).expect("a prompt")
}

#[test]
fn an_edit_is_a_diff() {
    let input = json!({"file_path":"/src/lib.rs",
        "old_string":"fn a() {\n    1\n}\n","new_string":"fn a() {\n    2\n}\n"});
    let p = prompt(json!({"tool_name":"Edit","input":input,
        "request":{"subtype":"can_use_tool","input":input,
            "decision_reason":"Edit outside the project","blocked_path":"/src/lib.rs",
            "permission_suggestions":[{"type":"setMode","mode":"acceptEdits","destination":"session"}]}}));
    let out = show(&p, false, &hint());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "PERMISSION s1 req-1 Edit");
    assert_eq!(lines[1], "received 2026-11-24T01:02:03.456Z (1m ago)");
    assert_eq!(lines[2], "flags: blocked path");
    assert_eq!(
        &lines[3..9],
        [
            "file: /src/lib.rs",
            "@@ edit 1 of 1 @@",
            "  fn a() {",
            "-     1",
            "+     2",
            "  }",
        ]
    );
    assert_eq!(lines[9], "the session suggests:");
    assert!(out.contains(r#""mode": "acceptEdits""#), "{out}");
    assert!(
        out.contains("\nreason: Edit outside the project\n"),
        "{out}"
    );
    assert!(out.contains("\nblocked path: /src/lib.rs\n"), "{out}");
    assert!(out.ends_with(
        "answer: ccr-supervisor ctl allow s1 req-1   (or: ccr-supervisor ctl deny s1 req-1)"
    ));
    let coloured = show(&p, true, &hint());
    assert!(coloured.contains("\u{1b}[31m-     1"), "{coloured:?}");
    assert!(coloured.contains("\u{1b}[32m+     2"), "{coloured:?}");
    assert!(!out.contains('\u{1b}'));
}

#[test]
fn multi_edit_write_bash_and_other_tools() {
    let p = prompt(
        json!({"tool_name":"MultiEdit","input":{"file_path":"/a","edits":[
        {"old_string":"x","new_string":"y"},
        {"old_string":"p","new_string":"q","replace_all":true}]}}),
    );
    let out = show(&p, false, &hint());
    for part in [
        "@@ edit 1 of 2 @@\n- x\n+ y",
        "@@ edit 2 of 2 (every occurrence) @@\n- p\n+ q",
    ] {
        assert!(out.contains(part), "{part} in {out}");
    }
    let p = prompt(json!({"tool_name":"Write","input":{"file_path":"/b","content":"one\ntwo\n"}}));
    assert!(show(&p, false, &hint()).contains("file: /b\ncontent (2 lines):\n    one\n    two"));
    let p = prompt(json!({"tool_name":"Bash",
        "input":{"command":"cargo test \\\n  --all","description":"Run the tests"}}));
    let out = show(&p, false, &hint());
    assert!(
        out.contains("description: Run the tests\ncommand:\n    cargo test \\\n      --all"),
        "{out}"
    );
    let p = prompt(
        json!({"tool_name":"mcp__db__query","input":{"sql":"select 1"},
        "confirmed":false,"request":{"subtype":"can_use_tool","requires_user_interaction":true}}),
    );
    let out = show(&p, false, &hint());
    assert!(out.contains("flags: needs a person, unconfirmed"), "{out}");
    assert!(
        out.contains("input:\n    {\n      \"sql\": \"select 1\"\n    }"),
        "{out}"
    );
}

#[test]
fn questions_show_the_request_and_the_answer_command() {
    let p = prompt(json!({"tool_name":"github","kind":"elicitation",
        "request":{"subtype":"elicitation","message":"Which org?","mcp_server_name":"github"}}));
    let out = show(&p, false, &hint());
    assert!(
        out.starts_with("QUESTION (elicitation) s1 req-1 github\n"),
        "{out}"
    );
    assert!(out.contains("\nasks: Which org?\nrequest:\n"), "{out}");
    assert!(out.contains("answer: ccr-supervisor ctl answer s1 req-1 '{\"action\":\"accept\""));
    let p = prompt(json!({"kind":"request_user_dialog","answerable":false,
        "request":{"subtype":"request_user_dialog"}}));
    let out = show(&p, false, &hint());
    assert!(
        out.contains(", read-only") && !out.contains("answer:"),
        "{out}"
    );
}

#[test]
fn session_text_cannot_reach_the_terminal_raw() {
    let h = "\u{1b}]52;c;eA==\u{7}\u{1b}[2K\u{9b}1A\u{202e}";
    let p = prompt(json!({"tool_name":"Edit","request_id":format!("r{h}"),
        "input":{"file_path":format!("/x{h}"),"old_string":format!("a{h}"),"new_string":"b"},
        "request":{"subtype":"can_use_tool","decision_reason":h,"blocked_path":h}}));
    let out = show(&p, true, &hint());
    let ours = out.replace("\u{1b}[0m", "").replace("\u{1b}[1m", "");
    let ours = ours
        .replace("\u{1b}[33m", "")
        .replace("\u{1b}[31m", "")
        .replace("\u{1b}[32m", "")
        .replace("\u{1b}[2m", "");
    assert!(
        ours.chars().all(|c| c == '\n' || !c.is_control()) && !ours.contains('\u{202e}'),
        "{ours:?}"
    );
}
