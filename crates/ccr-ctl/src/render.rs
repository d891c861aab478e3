//! Human-readable output: tables and one-line summaries of API bodies (pure).
//!
//! Every helper reads `serde_json::Value` rather than the server's types, so a
//! field the server adds or drops degrades to `-` instead of failing. Tables
//! sanitize the body first (`super::sanitize`): session text is untrusted.

use comfy_table::{presets, Cell, ContentArrangement, Table};
use serde_json::Value;

use super::sanitize::clean_value;

/// Longest LAST ERROR cell.
const ERROR_WIDTH: usize = 60;
/// Longest INPUT summary.
const INPUT_WIDTH: usize = 80;

/// Cut `s` to at most `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Make text fit on one line: newlines and tabs become visible escapes.
pub fn one_line(s: &str) -> String {
    s.replace('\r', "").replace('\n', "⏎ ").replace('\t', " ")
}

/// A one-line summary of a tool input: the command for Bash, the path for
/// file tools, otherwise compact JSON; cut to `max` characters.
pub fn input_summary(tool: &str, input: &Value, max: usize) -> String {
    let text = |k: &str| input.get(k).and_then(Value::as_str);
    let picked = match tool {
        "Bash" => text("command"),
        _ => text("file_path")
            .or_else(|| text("notebook_path"))
            .or_else(|| text("path")),
    };
    let summary = match picked {
        Some(s) => one_line(s),
        None if input.is_null() => String::new(),
        None => input.to_string(),
    };
    truncate(&summary, max)
}

/// A duration in milliseconds as `850ms`, `12s`, `3m04s`, `2h05m`, `3d04h`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A session's state with its details: `reconnecting (attempt 3, in 2s)`, `failed (unauthorized)`.
pub fn state_label(v: &Value) -> String {
    let name = v["state"].as_str().unwrap_or("?");
    let n = |k: &str| v[k].as_u64();
    let detail = match name {
        "reconnecting" => n("attempt").map(|a| match n("delay_ms") {
            Some(d) => format!("attempt {a}, in {}", age(d)),
            None => format!("attempt {a}"),
        }),
        "restarting" => n("restart").map(|r| match n("delay_ms") {
            Some(d) => format!("restart {r}, in {}", age(d)),
            None => format!("restart {r}"),
        }),
        "failed" => v["reason"].as_str().map(str::to_owned),
        _ => None,
    };
    match detail {
        Some(d) => format!("{name} ({d})"),
        None => name.to_owned(),
    }
}

/// A JSON value as a cell: strings bare, null and "" as `-`, anything else as JSON.
pub(super) fn text_or_dash(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null => "-".into(),
        Value::String(_) => "-".into(),
        other => other.to_string(),
    }
}

/// An unframed table with `header`, two spaces between columns, never wrapped.
pub(super) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(Cell::new));
    for col in t.column_iter_mut() {
        col.set_padding((0, 2));
    }
    t
}

/// The table's lines without trailing spaces.
pub(super) fn rendered(t: Table) -> String {
    t.lines()
        .map(|l| l.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `sessions` table from a `GET /v1/sessions` body (strings sanitized).
pub fn sessions_table(body: &Value) -> String {
    let body = &clean_value(body);
    let sessions = body["sessions"].as_array().cloned().unwrap_or_default();
    if sessions.is_empty() {
        return "no sessions configured".into();
    }
    let mut t = table(&["ID", "STATE", "PENDING", "CONNECTED SINCE", "LAST ERROR"]);
    for s in &sessions {
        let mut pending = text_or_dash(&s["pending"]);
        if let Some(q) = s["queued_decisions"].as_u64().filter(|q| *q > 0) {
            pending.push_str(&format!(" (+{q} queued)"));
        }
        let error = match &s["last_error"] {
            Value::String(e) => truncate(&one_line(e), ERROR_WIDTH),
            _ => "-".into(),
        };
        t.add_row(vec![
            text_or_dash(&s["id"]),
            state_label(s),
            pending,
            text_or_dash(&s["connected_since"]),
            error,
        ]);
    }
    rendered(t)
}

/// The `pending` table from a `GET /v1/permissions` body (strings sanitized).
pub fn pending_table(body: &Value) -> String {
    let body = &clean_value(body);
    let prompts = body["permissions"].as_array().cloned().unwrap_or_default();
    if prompts.is_empty() {
        return "no pending permission prompts".into();
    }
    let mut t = table(&["SESSION", "REQUEST", "TOOL", "AGE", "STATE", "INPUT"]);
    for p in &prompts {
        let tool = p["tool_name"].as_str().unwrap_or("?");
        t.add_row(vec![
            text_or_dash(&p["session_id"]),
            text_or_dash(&p["request_id"]),
            tool.to_owned(),
            p["age_ms"].as_u64().map(age).unwrap_or_else(|| "-".into()),
            waiting(p),
            input_summary(tool, &p["input"], INPUT_WIDTH),
        ]);
    }
    rendered(t)
}

/// `waiting`, or `unconfirmed` for a prompt restored after a restart that its session has
/// not re-sent (it may not be waited on any more).
fn waiting(p: &Value) -> String {
    match p["confirmed"].as_bool() {
        Some(false) => "unconfirmed".into(),
        _ => "waiting".into(),
    }
}

/// The `questions` table: elicitations and dialogs, with what they ask.
pub fn questions_table(body: &Value) -> String {
    let body = &clean_value(body);
    let questions = body["questions"].as_array().cloned().unwrap_or_default();
    if questions.is_empty() {
        return "no pending questions".into();
    }
    let mut t = table(&["SESSION", "REQUEST", "KIND", "FROM", "AGE", "STATE", "ASKS"]);
    for q in &questions {
        let answerable = q["answerable"].as_bool().unwrap_or(true);
        let state = if answerable {
            waiting(q)
        } else {
            "read-only".into()
        };
        let asks = q["request"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| input_summary("", &q["input"], INPUT_WIDTH));
        t.add_row(vec![
            text_or_dash(&q["session_id"]),
            text_or_dash(&q["request_id"]),
            text_or_dash(&q["kind"]),
            text_or_dash(&q["tool_name"]),
            q["age_ms"].as_u64().map(age).unwrap_or_else(|| "-".into()),
            state,
            asks.chars().take(INPUT_WIDTH).collect(),
        ]);
    }
    rendered(t)
}

/// `allowed <request> (sent)` / `denied <request> (queued for reconnect)` from a decision receipt.
pub fn decision(request: &str, receipt: &Value) -> String {
    let status = receipt["status"].as_str().unwrap_or("answered");
    let delivery = match receipt["delivery"].as_str() {
        Some("queued") => "queued for reconnect",
        Some(other) => other,
        None => "sent",
    };
    format!("{status} {request} ({delivery})")
}

/// The line printed after `interrupt`.
pub fn interrupted(session: &str, answer: &Value) -> String {
    let mut line = match answer["request_id"].as_str() {
        Some(id) => format!("interrupted {session} (request {id})"),
        None => format!("interrupted {session}"),
    };
    for (key, label) in [("cancelled", "cancelled"), ("still_queued", "still queued")] {
        if let Some(list) = answer[key].as_array() {
            line.push_str(&format!("; {label}: {}", list.len()));
        }
    }
    line
}

/// The line printed after `send`.
pub fn sent(session: &str, answer: &Value) -> String {
    match answer["uuid"].as_str() {
        Some(uuid) => format!("sent to {session} (message {uuid})"),
        None => format!("sent to {session}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries() {
        let cmd = json!({"command": "npm test\n  -- --ci", "timeout": 5});
        assert_eq!(input_summary("Bash", &cmd, 80), "npm test⏎   -- --ci");
        assert_eq!(
            input_summary(
                "Edit",
                &json!({"file_path":"/src/a.rs","old_string":"x"}),
                80
            ),
            "/src/a.rs"
        );
        assert_eq!(
            input_summary("NotebookEdit", &json!({"notebook_path":"/n.ipynb"}), 80),
            "/n.ipynb"
        );
        assert_eq!(
            input_summary("WebFetch", &json!({"url":"https://x"}), 80),
            r#"{"url":"https://x"}"#
        );
        let long = input_summary("Bash", &json!({"command": "x".repeat(100)}), 10);
        assert_eq!(long, format!("{}…", "x".repeat(9)));
        assert_eq!(input_summary("Bash", &Value::Null, 10), "");
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo!", 5), "héll…");
    }

    #[test]
    fn ages_and_states() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(12_400), "12s");
        assert_eq!(age(184_000), "3m04s");
        assert_eq!(age(7_500_000), "2h05m");
        assert_eq!(age(273_600_000), "3d04h");
        let s = json!({"state":"reconnecting","attempt":3,"delay_ms":2000});
        assert_eq!(state_label(&s), "reconnecting (attempt 3, in 2s)");
        let s = json!({"state":"failed","reason":"unauthorized","detail":"4003"});
        assert_eq!(state_label(&s), "failed (unauthorized)");
        assert_eq!(state_label(&json!({"state":"connected"})), "connected");
    }

    #[test]
    fn sessions_table_shows_columns() {
        let body = json!({"sessions":[
            {"id":"demo-1","state":"connected","pending":2,"queued_decisions":0,
             "connected_since":"2026-11-24T01:02:03.456Z","last_error":null},
            {"id":"demo-2","state":"failed","reason":"unauthorized","pending":0,
             "queued_decisions":1,"connected_since":null,"last_error":"closed 4003\nunauthorized"}
        ]});
        let out = sessions_table(&body);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("ID"), "{out}");
        assert!(lines[0].contains("LAST ERROR"));
        assert!(lines[1].contains("demo-1") && lines[1].contains("connected"));
        assert!(lines[1].contains("2026-11-24T01:02:03.456Z"));
        assert!(lines[2].contains("failed (unauthorized)"));
        assert!(lines[2].contains("0 (+1 queued)"));
        assert!(lines[2].contains("closed 4003⏎ unauthorized"));
        assert_eq!(
            sessions_table(&json!({"sessions":[]})),
            "no sessions configured"
        );
    }

    #[test]
    fn tables_strip_terminal_escapes_from_session_text() {
        let h = "\u{1b}]52;c;eA==\u{7}\u{1b}[2K\u{9b}1A\u{202e}\r";
        let body = json!({"permissions":[{"session_id":format!("s{h}"),"request_id":h,
            "tool_name":format!("Bash{h}"),"input":{"command":format!("ls {h}")},"age_ms":5}]});
        let out = pending_table(&body);
        assert!(out.lines().nth(1).unwrap().contains("Bash  "), "{out}");
        let body = json!({"sessions":[{"id":h,"state":"failed","reason":h,"pending":h,
            "connected_since":h,"last_error":h}]});
        for out in [out, sessions_table(&body)] {
            assert!(
                out.chars().all(|c| c == '\n' || !c.is_control()) && !out.contains('\u{202e}'),
                "{out:?}"
            );
        }
    }

    #[test]
    fn pending_table_and_answers() {
        let body = json!({"permissions":[{"session_id":"s1","request_id":"r1","tool_name":"Bash",
            "input":{"command":"ls -la"},"age_ms":61_000}]});
        let out = pending_table(&body);
        assert!(out.lines().next().unwrap().starts_with("SESSION"));
        let row = out.lines().nth(1).unwrap();
        for part in ["s1", "r1", "Bash", "1m01s", "ls -la"] {
            assert!(row.contains(part), "{row}");
        }
        assert_eq!(
            pending_table(&json!({"permissions":[]})),
            "no pending permission prompts"
        );
        let r = json!({"status":"allowed","delivery":"sent"});
        assert_eq!(decision("r1", &r), "allowed r1 (sent)");
        let r = json!({"status":"denied","delivery":"queued"});
        assert_eq!(decision("r1", &r), "denied r1 (queued for reconnect)");
        assert_eq!(
            interrupted("s1", &json!({"request_id":"x"})),
            "interrupted s1 (request x)"
        );
        assert_eq!(sent("s1", &json!({"uuid":"u"})), "sent to s1 (message u)");
    }
}
