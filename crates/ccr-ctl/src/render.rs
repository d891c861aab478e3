//! Human-readable output: tables and one-line summaries of API bodies (pure).
//!
//! Every helper reads the typed bodies of `ccr_protocol::reply`, parsed after the
//! caller sanitized every string of the JSON (`super::sanitize`): session text is
//! untrusted. Fields a newer server adds are ignored.

use comfy_table::{presets, Cell, ContentArrangement, Table};
use serde_json::Value;

use ccr_protocol::api::Delivery;
use ccr_protocol::reply::{
    BulkResults, DecisionReceipt, InterruptAnswer, PendingPrompt, PermissionList, QuestionList,
    SentMessage, SessionList,
};
use ccr_protocol::session::SessionState;
use ccr_protocol::time::rfc3339;

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
pub fn state_label(state: &SessionState) -> String {
    let detail = match state {
        SessionState::Reconnecting { attempt, delay_ms } => {
            Some(format!("attempt {attempt}, in {}", age(*delay_ms)))
        }
        SessionState::Restarting { restart, delay_ms } => {
            Some(format!("restart {restart}, in {}", age(*delay_ms)))
        }
        SessionState::Failed { reason, .. } => Some(reason.clone()),
        _ => None,
    };
    match detail {
        Some(d) => format!("{} ({d})", state.name()),
        None => state.name().to_owned(),
    }
}

/// Text as a cell: `-` when empty or absent.
pub(super) fn dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => "-".into(),
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

/// The `sessions` table from a `GET /v1/sessions` body.
pub fn sessions_table(body: &SessionList) -> String {
    if body.sessions.is_empty() {
        return "no sessions configured".into();
    }
    let mut t = table(&["ID", "STATE", "PENDING", "CONNECTED SINCE", "LAST ERROR"]);
    for s in &body.sessions {
        let mut pending = s.pending.to_string();
        if s.queued_decisions > 0 {
            pending.push_str(&format!(" (+{} queued)", s.queued_decisions));
        }
        let status = &s.view.status;
        let error = match &status.last_error {
            Some(e) if !e.is_empty() => truncate(&one_line(e), ERROR_WIDTH),
            _ => "-".into(),
        };
        t.add_row(vec![
            dash(Some(&s.view.id)),
            state_label(&status.state),
            pending,
            status.connected_since.map_or_else(|| "-".into(), rfc3339),
            error,
        ]);
    }
    rendered(t)
}

/// The `pending` table from a `GET /v1/permissions` body.
pub fn pending_table(body: &PermissionList) -> String {
    if body.permissions.is_empty() {
        return "no pending permission prompts".into();
    }
    let mut t = table(&["SESSION", "REQUEST", "TOOL", "AGE", "STATE", "INPUT"]);
    for p in &body.permissions {
        t.add_row(vec![
            dash(Some(&p.session_id)),
            dash(Some(&p.request_id)),
            p.tool_name.clone(),
            age(p.age_ms),
            waiting(p),
            input_summary(&p.tool_name, &p.input, INPUT_WIDTH),
        ]);
    }
    rendered(t)
}

/// `waiting`, or `unconfirmed` for a prompt restored after a restart that its session has
/// not re-sent (it may not be waited on any more).
fn waiting(p: &PendingPrompt) -> String {
    if p.confirmed {
        "waiting"
    } else {
        "unconfirmed"
    }
    .into()
}

/// The `questions` table: elicitations and dialogs, with what they ask.
pub fn questions_table(body: &QuestionList) -> String {
    if body.questions.is_empty() {
        return "no pending questions".into();
    }
    let mut t = table(&["SESSION", "REQUEST", "KIND", "FROM", "AGE", "STATE", "ASKS"]);
    for q in &body.questions {
        let state = if q.answerable {
            waiting(q)
        } else {
            "read-only".into()
        };
        let asks = q.request["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| input_summary("", &q.input, INPUT_WIDTH));
        t.add_row(vec![
            dash(Some(&q.session_id)),
            dash(Some(&q.request_id)),
            q.kind.as_str().to_owned(),
            dash(Some(&q.tool_name)),
            age(q.age_ms),
            state,
            asks.chars().take(INPUT_WIDTH).collect(),
        ]);
    }
    rendered(t)
}

/// `allowed <request> (sent)` / `denied <request> (queued for reconnect)` from a decision receipt.
pub fn decision(request: &str, receipt: &DecisionReceipt) -> String {
    let delivery = match receipt.delivery {
        Delivery::Queued => "queued for reconnect",
        Delivery::Sent => "sent",
    };
    format!("{} {request} ({delivery})", receipt.status)
}

/// One line per item of a bulk answer, in order: `allowed SESSION/REQUEST (sent)`, or
/// `failed SESSION/REQUEST: <code>: <message>`.
pub fn bulk(results: &BulkResults) -> String {
    let mut out = String::new();
    for r in &results.results {
        let target = format!("{}/{}", r.session_id, r.request_id);
        let line = match (&r.receipt, &r.error) {
            (Some(receipt), None) => decision(&target, receipt),
            (_, Some(e)) => format!("failed {target}: {}: {}", e.code, e.message),
            (None, None) => format!("failed {target}: http_{}", r.status),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The line printed after `interrupt`.
pub fn interrupted(session: &str, answer: &InterruptAnswer) -> String {
    let mut line = format!("interrupted {session} (request {})", answer.request_id);
    for (list, label) in [
        (&answer.cancelled, "cancelled"),
        (&answer.still_queued, "still queued"),
    ] {
        if let Some(list) = list {
            line.push_str(&format!("; {label}: {}", list.len()));
        }
    }
    line
}

/// The line printed after `send`.
pub fn sent(session: &str, answer: &SentMessage) -> String {
    format!("sent to {session} (message {})", answer.uuid)
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

    /// A body as `ctl` reads it: every string sanitized, then typed.
    fn typed<T: serde::de::DeserializeOwned>(body: Value) -> T {
        serde_json::from_value(crate::sanitize::clean_value(&body)).expect("a typed body")
    }

    /// One session of `GET /v1/sessions`: the defaults, then `fields`.
    fn session(fields: Value) -> Value {
        let mut s = json!({"id":"s","labels":[],"viewer_only":false,"incarnation":1,
            "state":"connected","last_error":null,"connected_since":null,
            "counters":ccr_protocol::session::Counters::default(),"initialize":"listed",
            "pending":0,"queued_decisions":0});
        merge(&mut s, fields);
        s
    }

    /// One prompt of `GET /v1/permissions`: the defaults, then `fields`.
    fn prompt(fields: Value) -> Value {
        let mut p = json!({"session_id":"s1","request_id":"r1","tool_name":"Bash",
            "tool_use_id":null,"input":{},"request":{"subtype":"can_use_tool"},
            "received_at":"2026-11-24T01:02:03.456Z","age_ms":0,"confirmed":true,
            "kind":"can_use_tool","answerable":true});
        merge(&mut p, fields);
        p
    }

    fn merge(base: &mut Value, fields: Value) {
        for (k, v) in fields.as_object().expect("an object") {
            base[k] = v.clone();
        }
    }

    #[test]
    fn ages_and_states() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(12_400), "12s");
        assert_eq!(age(184_000), "3m04s");
        assert_eq!(age(7_500_000), "2h05m");
        assert_eq!(age(273_600_000), "3d04h");
        let s = SessionState::Reconnecting {
            attempt: 3,
            delay_ms: 2000,
        };
        assert_eq!(state_label(&s), "reconnecting (attempt 3, in 2s)");
        let s = SessionState::Failed {
            reason: "unauthorized".into(),
            detail: "4003".into(),
        };
        assert_eq!(state_label(&s), "failed (unauthorized)");
        assert_eq!(state_label(&SessionState::Connected), "connected");
    }

    #[test]
    fn sessions_table_shows_columns() {
        let body = json!({"sessions":[
            session(json!({"id":"demo-1","state":"connected","pending":2,"queued_decisions":0,
             "connected_since":"2026-11-24T01:02:03.456Z","last_error":null})),
            session(json!({"id":"demo-2","state":"failed","reason":"unauthorized",
             "detail":"4003","pending":0,"queued_decisions":1,"connected_since":null,
             "last_error":"closed 4003\nunauthorized"}))
        ]});
        let out = sessions_table(&typed(body));
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
            sessions_table(&typed(json!({"sessions":[]}))),
            "no sessions configured"
        );
    }

    #[test]
    fn tables_strip_terminal_escapes_from_session_text() {
        let h = "\u{1b}]52;c;eA==\u{7}\u{1b}[2K\u{9b}1A\u{202e}\r";
        let body = json!({"permissions":[prompt(json!({"session_id":format!("s{h}"),
            "request_id":h,"tool_name":format!("Bash{h}"),"input":{"command":format!("ls {h}")},
            "age_ms":5}))]});
        let out = pending_table(&typed(body));
        assert!(out.lines().nth(1).unwrap().contains("Bash  "), "{out}");
        let body = json!({"sessions":[session(json!({"id":h,"state":"failed","reason":h,
            "detail":h,"last_error":h}))]});
        for out in [out, sessions_table(&typed(body))] {
            assert!(
                out.chars().all(|c| c == '\n' || !c.is_control()) && !out.contains('\u{202e}'),
                "{out:?}"
            );
        }
    }

    #[test]
    fn pending_table_and_answers() {
        let body = json!({"permissions":[prompt(json!({"session_id":"s1","request_id":"r1",
            "tool_name":"Bash","input":{"command":"ls -la"},"age_ms":61_000}))]});
        let out = pending_table(&typed(body));
        assert!(out.lines().next().unwrap().starts_with("SESSION"));
        let row = out.lines().nth(1).unwrap();
        for part in ["s1", "r1", "Bash", "1m01s", "waiting", "ls -la"] {
            assert!(row.contains(part), "{row}");
        }
        let body = json!({"permissions":[prompt(json!({"confirmed":false}))]});
        assert!(pending_table(&typed(body)).contains("unconfirmed"));
        assert_eq!(
            pending_table(&typed(json!({"permissions":[]}))),
            "no pending permission prompts"
        );
        let receipt = |status, delivery| {
            typed::<DecisionReceipt>(json!({"session_id":"s1","request_id":"r1",
                "status":status,"delivery":delivery,"decided_by":"alice"}))
        };
        assert_eq!(
            decision("r1", &receipt("allowed", "sent")),
            "allowed r1 (sent)"
        );
        assert_eq!(
            decision("r1", &receipt("denied", "queued")),
            "denied r1 (queued for reconnect)"
        );
        let answer: InterruptAnswer = typed(json!({"request_id":"x","response":null,
            "still_queued":["u1"],"cancelled":null}));
        assert_eq!(
            interrupted("s1", &answer),
            "interrupted s1 (request x); still queued: 1"
        );
        let sent_body: SentMessage = typed(json!({"uuid":"u","status":200}));
        assert_eq!(sent("s1", &sent_body), "sent to s1 (message u)");
    }
}
