use super::*;
use serde_json::json;

#[test]
fn summaries_name_what_the_tool_does() {
    assert_eq!(summary("Bash", &json!({"command": "npm test"})), "npm test");
    assert_eq!(
        summary(
            "Edit",
            &json!({"file_path": "/src/a.rs", "old_string": "a", "new_string": "b"})
        ),
        "/src/a.rs"
    );
    assert_eq!(
        summary("WebFetch", &json!({"url": "https://x"})),
        "https://x"
    );
    assert_eq!(summary("mcp__x__y", &json!({"q": 1})), r#"{"q":1}"#);
    // A Bash input without a command falls back to JSON rather than an empty line.
    assert_eq!(summary("Bash", &json!({"cmd": "ls"})), r#"{"cmd":"ls"}"#);
}

#[test]
fn summaries_are_one_clean_line() {
    let s = summary(
        "Bash",
        &json!({"command": "echo a\necho \u{1b}[31mred\u{1b}[0m\tb"}),
    );
    assert_eq!(s, "echo a⏎echo red b");
    let long = "x".repeat(500);
    let s = summary("Bash", &json!({ "command": long }));
    assert_eq!(s.chars().count(), SUMMARY_CHARS + 1);
    assert!(s.ends_with('…'));
}

#[test]
fn escape_sequences_and_controls_are_stripped() {
    let hostile = "ok\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}txt\u{0}";
    assert_eq!(clean(hostile), "oktxt");
    assert_eq!(clean("plain\nlines\tand tabs"), "plain\nlines\tand tabs");
}

#[test]
fn edits_render_as_diffs() {
    let input = json!({"file_path": "/a.txt", "old_string": "one\ntwo\nthree", "new_string": "one\n2\nthree"});
    let InputView::Diff { path, hunks } = input_view("Edit", &input) else {
        panic!("not a diff");
    };
    assert_eq!(path, "/a.txt");
    assert_eq!(
        hunks[0].lines,
        vec![
            DiffLine::Context("one".into()),
            DiffLine::Deleted("two".into()),
            DiffLine::Inserted("2".into()),
            DiffLine::Context("three".into()),
        ]
    );
    let multi = json!({"file_path": "/b", "edits": [
        {"old_string": "a", "new_string": "b"},
        {"old_string": "c", "new_string": "d", "replace_all": true}]});
    let InputView::Diff { hunks, .. } = input_view("MultiEdit", &multi) else {
        panic!("not a diff");
    };
    assert_eq!(hunks.len(), 2);
    assert!(!hunks[0].replace_all && hunks[1].replace_all);
}

#[test]
fn other_shapes_fall_back_to_json() {
    assert_eq!(
        input_view("Bash", &json!({"command": "ls", "description": "list"})),
        InputView::Command {
            command: "ls".into(),
            description: Some("list".into())
        }
    );
    assert_eq!(
        input_view("Write", &json!({"file_path": "/f", "content": "hi\n"})),
        InputView::Content {
            path: "/f".into(),
            text: "hi\n".into()
        }
    );
    // An Edit missing new_string is not rendered as a half diff.
    let odd = json!({"file_path": "/f", "old_string": "a"});
    assert!(matches!(input_view("Edit", &odd), InputView::Json(_)));
    let InputView::Json(text) = input_view("Grep", &json!({"pattern": "<script>"})) else {
        panic!("not json");
    };
    assert!(text.contains("\"pattern\": \"<script>\""), "{text}");
}

#[test]
fn flags_come_from_the_request() {
    let request = json!({"requires_user_interaction": true, "matched_ask_rule": {"source": "user"},
        "blocked_path": "/etc/passwd", "default_to_no": false});
    let names: Vec<_> = flags(&request, false).iter().map(|f| f.name()).collect();
    assert_eq!(
        names,
        [
            "requires_user_interaction",
            "matched_ask_rule",
            "blocked_path",
            "unconfirmed"
        ]
    );
    assert!(flags(&json!({}), true).is_empty());
    assert_eq!(
        flags(&json!({"default_to_no": true}), true),
        [Flag::DefaultToNo]
    );
}

#[test]
fn ages_are_short() {
    assert_eq!(age(999), "0s");
    assert_eq!(age(59_000), "59s");
    assert_eq!(age(61_000), "1m");
    assert_eq!(age(3_600_000 + 5 * 60_000), "1h 5m");
    assert_eq!(age(2 * 86_400_000 + 4 * 3_600_000), "2d 4h");
}
