//! A session's events read as a transcript (pure): assistant text, tool uses and their
//! results, turn results with cost and duration, and short notes for prompts and states.

use serde_json::Value;

use super::render::{clean, one_line, summary};

/// Longest tool result shown, in characters (the API has it whole).
const RESULT_CHARS: usize = 2000;

/// One entry of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// What the assistant said.
    Assistant(String),
    /// What the user (or an operator) sent.
    User(String),
    /// A tool call: the tool and what it does.
    ToolUse {
        /// Tool name.
        name: String,
        /// One-line summary of its input.
        summary: String,
    },
    /// A tool's result (cut).
    ToolResult {
        /// The result's text.
        text: String,
        /// The tool failed.
        is_error: bool,
    },
    /// The end of a turn.
    Result {
        /// `success`, `error_max_turns`, ...
        subtype: String,
        /// Cost in USD, when given.
        cost_usd: Option<f64>,
        /// Duration in milliseconds, when given.
        duration_ms: Option<u64>,
        /// Turns, when given.
        turns: Option<u64>,
        /// The final text, when given.
        text: Option<String>,
    },
    /// A prompt, answer or state change, in one line.
    Note(String),
}

fn cut(s: &str, max: usize) -> String {
    let cleaned = clean(s);
    match cleaned.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &cleaned[..i]),
        None => cleaned.into_owned(),
    }
}

/// The text of a content value: a string, or the text blocks of an array.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn blocks(message: &Value) -> &[Value] {
    message
        .pointer("/message/content")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn sdk_entries(m: &Value, out: &mut Vec<Entry>) {
    match m.get("type").and_then(Value::as_str).unwrap_or("") {
        "assistant" => {
            for b in blocks(m) {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = b.get("text").and_then(Value::as_str).unwrap_or("");
                        if !t.trim().is_empty() {
                            out.push(Entry::Assistant(cut(t, RESULT_CHARS)));
                        }
                    }
                    Some("tool_use") => {
                        let name = b.get("name").and_then(Value::as_str).unwrap_or("?");
                        let input = b.get("input").cloned().unwrap_or(Value::Null);
                        out.push(Entry::ToolUse {
                            name: one_line(name, 80),
                            summary: summary(name, &input),
                        });
                    }
                    _ => {}
                }
            }
        }
        "user" => {
            let content = m.pointer("/message/content");
            match content {
                Some(Value::String(s)) => out.push(Entry::User(cut(s, RESULT_CHARS))),
                Some(Value::Array(items)) => {
                    for b in items {
                        match b.get("type").and_then(Value::as_str) {
                            Some("tool_result") => out.push(Entry::ToolResult {
                                text: cut(
                                    &text_of(b.get("content").unwrap_or(&Value::Null)),
                                    RESULT_CHARS,
                                ),
                                is_error: b
                                    .get("is_error")
                                    .and_then(Value::as_bool)
                                    .unwrap_or(false),
                            }),
                            Some("text") => out.push(Entry::User(cut(
                                b.get("text").and_then(Value::as_str).unwrap_or(""),
                                RESULT_CHARS,
                            ))),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        "result" => out.push(Entry::Result {
            subtype: one_line(
                m.get("subtype").and_then(Value::as_str).unwrap_or("result"),
                60,
            ),
            cost_usd: m.get("total_cost_usd").and_then(Value::as_f64),
            duration_ms: m.get("duration_ms").and_then(Value::as_u64),
            turns: m.get("num_turns").and_then(Value::as_u64),
            text: m
                .get("result")
                .and_then(Value::as_str)
                .map(|t| cut(t, RESULT_CHARS)),
        }),
        _ => {}
    }
}

/// The transcript of `events` (the API's event JSON, oldest first).
pub fn entries(events: &[Value]) -> Vec<Entry> {
    let mut out = Vec::new();
    for e in events {
        let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        match field("type") {
            "sdk_message" => sdk_entries(e.get("message").unwrap_or(&Value::Null), &mut out),
            "permission_requested" => out.push(Entry::Note(format!(
                "asked to run {} ({})",
                one_line(field("tool_name"), 60),
                one_line(field("request_id"), 60)
            ))),
            "permission_answered" => out.push(Entry::Note(format!(
                "{} {} by {}",
                one_line(field("behavior"), 20),
                one_line(field("request_id"), 60),
                one_line(field("decided_by"), 60)
            ))),
            "permission_cancelled" => out.push(Entry::Note(format!(
                "the session withdrew {}",
                one_line(field("request_id"), 60)
            ))),
            "session_state" => out.push(Entry::Note(format!(
                "session {}",
                one_line(field("state"), 30)
            ))),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sdk_messages_become_readable_entries() {
        let events = vec![
            json!({"type": "session_state", "state": "connected"}),
            json!({"type": "sdk_message", "message": {"type": "assistant", "message": {"content": [
                {"type": "text", "text": "Running the tests."},
                {"type": "tool_use", "name": "Bash", "input": {"command": "npm test"}}]}}}),
            json!({"type": "permission_requested", "tool_name": "Bash", "request_id": "r1"}),
            json!({"type": "permission_answered", "behavior": "allow", "request_id": "r1", "decided_by": "alice"}),
            json!({"type": "sdk_message", "message": {"type": "user", "message": {"content": [
                {"type": "tool_result", "content": [{"type": "text", "text": "ok\u{1b}[0m"}], "is_error": false}]}}}),
            json!({"type": "sdk_message", "message": {"type": "result", "subtype": "success",
                "total_cost_usd": 0.0123, "duration_ms": 4200, "num_turns": 3, "result": "Done."}}),
            json!({"type": "sdk_message", "message": {"type": "system", "subtype": "init"}}),
        ];
        assert_eq!(
            entries(&events),
            vec![
                Entry::Note("session connected".into()),
                Entry::Assistant("Running the tests.".into()),
                Entry::ToolUse {
                    name: "Bash".into(),
                    summary: "npm test".into()
                },
                Entry::Note("asked to run Bash (r1)".into()),
                Entry::Note("allow r1 by alice".into()),
                Entry::ToolResult {
                    text: "ok".into(),
                    is_error: false
                },
                Entry::Result {
                    subtype: "success".into(),
                    cost_usd: Some(0.0123),
                    duration_ms: Some(4200),
                    turns: Some(3),
                    text: Some("Done.".into())
                },
            ]
        );
    }

    #[test]
    fn long_results_are_cut() {
        let long = "y".repeat(RESULT_CHARS + 10);
        let events = vec![json!({"type": "sdk_message", "message": {"type": "user",
            "message": {"content": [{"type": "tool_result", "content": long}]}}})];
        let Entry::ToolResult { text, .. } = &entries(&events)[0] else {
            panic!("not a result");
        };
        assert_eq!(text.chars().count(), RESULT_CHARS + 1);
    }
}
