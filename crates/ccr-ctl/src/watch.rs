//! `ctl watch`: follow `GET /v1/events` and print one readable line per event.
//!
//! Rendering is pure ([`render_event`]) so it is unit-tested with and without
//! colour; [`run`] only reads the stream and writes lines. Pending prompts get
//! a bold yellow `PERMISSION` line plus the exact command that answers them.

use ccr_protocol::frame::PromptKind;
use ccr_protocol::session::SessionState;
use serde::Deserialize;
use std::io::{IsTerminal, Write};
use std::sync::mpsc;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use super::render::{input_summary, one_line, state_label, truncate};
use super::sanitize::{clean, clean_value, escape_json};
use ccr_protocol::sse::SseEvent;

/// Longest input / message summary on a watch line.
const SUMMARY_WIDTH: usize = 100;
/// Longest `decision_reason` under a prompt.
const REASON_WIDTH: usize = 200;

const PROMPT: Style = AnsiColor::Yellow.on_default().bold();
const GOOD: Style = AnsiColor::Green.on_default();
const BAD: Style = AnsiColor::Red.on_default();
const WARN: Style = AnsiColor::Yellow.on_default();
const DIM: Style = Style::new().dimmed();

/// How to spell the `ccr-supervisor ctl` prefix of an answer hint (with `--url` when not the default).
#[derive(Debug, Clone)]
pub struct AnswerHint {
    prefix: String,
}

impl AnswerHint {
    /// A hint for a client talking to `url`; the token is never part of it.
    pub fn new(url: &str, default_url: &str) -> Self {
        let mut prefix = "ccr-supervisor ctl".to_owned();
        if url.trim_end_matches('/') != default_url {
            prefix.push_str(" --url ");
            prefix.push_str(&shell_quote(url));
        }
        Self { prefix }
    }

    /// `ccr-supervisor ctl` (plus `--url ...` when not the default), for other hints.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn command(&self, verb: &str, session: &str, request: &str) -> String {
        format!(
            "{} {verb} {} {}",
            self.prefix,
            shell_quote(session),
            shell_quote(request)
        )
    }

    /// `answer: <the command that answers it>   (or: <the other one>)`, by the prompt's kind:
    /// allow / deny for a permission prompt, `answer` with the SDK's shape for a question.
    pub fn answer_line(&self, session: &str, request: &str, kind: PromptKind) -> String {
        match kind {
            PromptKind::CanUseTool => format!(
                "answer: {}   (or: {})",
                self.command("allow", session, request),
                self.command("deny", session, request),
            ),
            PromptKind::Elicitation => format!(
                r#"answer: {} '{{"action":"accept","content":{{..}}}}'   (or: '{{"action":"decline"}}')"#,
                self.command("answer", session, request),
            ),
            PromptKind::RequestUserDialog => format!(
                r#"answer: {} '{{"behavior":"completed","result":..}}'   (or: '{{"behavior":"cancelled"}}')"#,
                self.command("answer", session, request),
            ),
        }
    }
}

/// The kind of a prompt from an event's or a prompt's `kind` (`can_use_tool` when absent).
pub fn prompt_kind(kind: &Value) -> PromptKind {
    match kind.as_str() {
        Some("elicitation") => PromptKind::Elicitation,
        Some("request_user_dialog") => PromptKind::RequestUserDialog,
        _ => PromptKind::CanUseTool,
    }
}

/// Quote `s` for a POSIX shell unless it is made of obviously safe characters.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/=@%+,".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `text` in `style` when `color`, else as it is.
pub(crate) fn paint(color: bool, style: Style, text: &str) -> String {
    if color {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_owned()
    }
}

/// `01:02:03.456Z` (UTC, as the server stamps it) out of an RFC 3339 `at`, or the whole
/// value when it has another shape.
fn clock(at: &Value) -> String {
    match at.as_str() {
        Some(s) => match s.split_once('T') {
            Some((_, t)) => t.to_owned(),
            None => s.to_owned(),
        },
        None => "--:--:--.---Z".into(),
    }
}

/// The folded line for `count` empty `stream_event` SDK messages of `session`, the first at `at`.
pub fn folded_stream_events(at: &Value, session: &str, count: u64, color: bool) -> String {
    let session = clean(session);
    let detail = if count == 1 {
        "stream_event (empty)".to_owned()
    } else {
        format!("stream_event (empty) ×{count}")
    };
    format!(
        "{} {session} {} {detail}",
        paint(color, DIM, &clock(at)),
        paint(color, DIM, "sdk")
    )
}

/// Whether `ev` is an SDK `stream_event` with nothing to show (a partial-message delta):
/// such runs are folded into one line.
pub fn is_empty_stream_event(ev: &Value) -> bool {
    ev["type"] == "sdk_message"
        && ev["msg_type"] == "stream_event"
        && sdk_summary(&clean_value(&ev["message"])).trim().is_empty()
}

/// A one-line summary of an SDK message: its text, tool calls, or subtype.
pub fn sdk_summary(message: &Value) -> String {
    let content = &message["message"]["content"];
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["type"].as_str() {
                Some("text") => b["text"].as_str().unwrap_or("").to_owned(),
                Some("tool_use") => format!("[tool_use {}]", b["name"].as_str().unwrap_or("?")),
                Some(other) => format!("[{other}]"),
                None => "[?]".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => match (message["subtype"].as_str(), message["result"].as_str()) {
            (Some(sub), Some(r)) => format!("{sub}: {r}"),
            (Some(sub), None) => sub.to_owned(),
            (None, Some(r)) => r.to_owned(),
            (None, None) => String::new(),
        },
    };
    truncate(&one_line(&text), SUMMARY_WIDTH)
}

/// Render one event (`data` of an SSE event, parsed) as text: one line, more for a prompt.
///
/// Every string of the event is sanitized first: only our own colours reach the terminal.
pub fn render_event(ev: &Value, color: bool, hint: &AnswerHint) -> String {
    render_delivered(ev, color, hint, None)
}

/// [`render_event`], with what the watch knows of how an answer was delivered (it words a
/// `permission_delivered` line; see [`delivered_detail`]).
pub fn render_delivered(
    ev: &Value,
    color: bool,
    hint: &AnswerHint,
    how: Option<Delivered>,
) -> String {
    let ev = &clean_value(ev);
    let kind = ev["type"].as_str().unwrap_or("?");
    let session = ev["session_id"].as_str().unwrap_or("-");
    let request = ev["request_id"].as_str().unwrap_or("?");
    let head = format!("{} {session}", paint(color, DIM, &clock(&ev["at"])));
    let line = |style: Style, label: &str, detail: String| {
        format!("{head} {} {detail}", paint(color, style, label))
    };
    match kind {
        "permission_requested" => {
            let tool = ev["tool_name"]
                .as_str()
                .or_else(|| ev["request"]["tool_name"].as_str())
                .unwrap_or("?");
            let input = if ev["request"]["input"].is_null() {
                &ev["input"]
            } else {
                &ev["request"]["input"]
            };
            let summary = input_summary(tool, input, SUMMARY_WIDTH);
            let first = paint(
                color,
                PROMPT,
                &format!("PERMISSION {session} {request} {tool}: {summary}"),
            );
            let mut text = format!("{} {first}", paint(color, DIM, &clock(&ev["at"])));
            for line in prompt_details(&ev["request"]) {
                text.push_str("\n    ");
                text.push_str(&line);
            }
            text.push_str("\n    ");
            text.push_str(&hint.answer_line(session, request, prompt_kind(&ev["kind"])));
            text
        }
        "session_state" => {
            // A state this build does not know shows by its name.
            let mut detail = match SessionState::deserialize(ev) {
                Ok(state) => state_label(&state),
                Err(_) => ev["state"].as_str().unwrap_or("?").to_owned(),
            };
            if let Some(d) = ev["detail"].as_str().filter(|d| !d.is_empty()) {
                detail.push_str(&format!(": {}", one_line(d)));
            }
            let state = ev["state"].as_str().unwrap_or("");
            if state != "connected" {
                if let Some(e) = ev["last_error"].as_str() {
                    detail.push_str(&format!(" (last error: {})", truncate(&one_line(e), 80)));
                }
            }
            let style = match state {
                "connected" => GOOD,
                "failed" => BAD,
                "reconnecting" | "restarting" => WARN,
                _ => Style::new(),
            };
            line(style, "state", detail)
        }
        "sdk_message" => {
            let msg_type = ev["msg_type"].as_str().unwrap_or("?");
            line(
                DIM,
                "sdk",
                format!("{msg_type}: {}", sdk_summary(&ev["message"])),
            )
        }
        "permission_answered" => {
            let behavior = ev["behavior"].as_str().unwrap_or("?");
            let by = ev["decided_by"].as_str().unwrap_or("?");
            let delivery = match ev["delivery"].as_str() {
                Some("queued") => "queued for reconnect",
                Some(d) => d,
                None => "?",
            };
            let style = if behavior == "allow" { GOOD } else { BAD };
            let verb = if behavior == "allow" {
                "allowed"
            } else {
                "denied"
            };
            line(style, verb, format!("{request} by {by} ({delivery})"))
        }
        "permission_delivered" => line(GOOD, "delivered", delivered_detail(request, how)),
        "permission_cancelled" => line(
            WARN,
            "cancelled",
            format!("{request} (withdrawn by the session)"),
        ),
        "permission.overdue" => line(
            WARN,
            "overdue",
            format!("{request} still waiting for an answer"),
        ),
        "permission_expired" => line(BAD, "expired", request.to_owned()),
        "error" => line(
            BAD,
            "error",
            one_line(ev["message"].as_str().unwrap_or("(no message)")),
        ),
        "lagged" => {
            let detail = match (ev["missed"].as_u64(), ev["resume_from"].as_u64()) {
                (Some(n), _) => match ev["resume_after"].as_u64() {
                    Some(seq) => format!(
                        "missed {n} events (this reader fell behind); the server ends the stream: resume with --after {seq}"
                    ),
                    None => format!("missed {n} events; the server ends the stream"),
                },
                (None, Some(seq)) if ev["reason"] == "resume_point_unknown" => format!(
                    "--after is not this server's (it restarted, or is another instance): replaying all it kept, from {seq}; some events may repeat"
                ),
                (None, Some(seq)) => format!("events before {seq} are gone; continuing"),
                (None, None) => "missed some events; continuing".into(),
            };
            line(WARN, "lagged", detail)
        }
        other => {
            let mut rest = ev.clone();
            if let Some(obj) = rest.as_object_mut() {
                for k in ["seq", "at", "type", "session_id"] {
                    obj.remove(k);
                }
            }
            line(
                Style::new(),
                other,
                truncate(&rest.to_string(), SUMMARY_WIDTH),
            )
        }
    }
}

/// How an answer reached the session, as `permission_answered` before it told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The answer was queued while the session was away, and written after it reconnected.
    Queued,
    /// Written once already (`delivery: sent`), the write failed, and it went on a newer connection.
    Resent,
}

/// What a `permission_delivered` line says after the request id: nothing more for an
/// answer written at once (its `permission_answered` follows it), else how it got there.
pub fn delivered_detail(request: &str, how: Option<Delivered>) -> String {
    match how {
        None => request.to_owned(),
        Some(Delivered::Queued) => format!("{request} (queued answer sent after reconnect)"),
        Some(Delivered::Resent) => format!("{request} (sent again on a new connection)"),
    }
}

/// The lines under a prompt: why the session asks (`decision_reason`) and, when the
/// user's own ask rule forced it, that rule (`matched_ask_rule`). Input already sanitized.
fn prompt_details(request: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(reason) = request["decision_reason"]
        .as_str()
        .filter(|r| !r.trim().is_empty())
    {
        lines.push(format!(
            "reason: {}",
            truncate(&one_line(reason), REASON_WIDTH)
        ));
    }
    let rule = &request["matched_ask_rule"];
    if !rule.is_null() && rule.as_bool() != Some(false) {
        let part = |k: &str| rule[k].as_str().unwrap_or("?").to_owned();
        let mut text = part("tool_name");
        if let Some(content) = rule["rule_content"].as_str() {
            text.push_str(&format!("({content})"));
        }
        lines.push(format!(
            "ask rule: {} from {} (a person must answer)",
            truncate(&one_line(&text), REASON_WIDTH),
            truncate(&one_line(&part("source")), 40)
        ));
    }
    lines
}

/// Render one SSE event: parsed JSON through [`render_event`], anything else generically.
pub fn render_sse(ev: &SseEvent, color: bool, hint: &AnswerHint) -> String {
    match serde_json::from_str::<Value>(&ev.data) {
        Ok(v) if v.is_object() => render_event(&v, color, hint),
        _ => format!(
            "{} {}",
            paint(
                color,
                WARN,
                &format!("unreadable {} event:", clean(&ev.event))
            ),
            truncate(&one_line(&clean(&ev.data)), SUMMARY_WIDTH)
        ),
    }
}

/// The `--json` form of one event: its data as one line, terminal-unsafe characters escaped.
pub fn json_line(ev: &SseEvent) -> String {
    let line = if !ev.data.contains('\n') {
        ev.data.clone()
    } else {
        match serde_json::from_str::<Value>(&ev.data) {
            Ok(v) => v.to_string(),
            Err(_) => ev.data.replace('\n', " "),
        }
    };
    escape_json(&line).into_owned()
}

/// Colour on stdout: a terminal, and `NO_COLOR` unset or empty.
pub(crate) fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// On Ctrl-C, let the line being written finish, then exit 0.
///
/// Returns once the handler is registered, so a Ctrl-C right after the first
/// printed line can never hit the default (killing) disposition.
pub(crate) fn exit_on_ctrl_c() {
    use actix_rt::signal::unix::{signal, SignalKind};
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = actix_rt::Runtime::new() else {
            let _ = ready_tx.send(());
            return;
        };
        rt.block_on(async move {
            let sig = signal(SignalKind::interrupt());
            let _ = ready_tx.send(());
            if let Ok(mut sig) = sig {
                if sig.recv().await.is_some() {
                    let mut out = std::io::stdout().lock();
                    let _ = out.flush();
                    std::process::exit(0);
                }
            }
        });
    });
    let _ = ready_rx.recv();
}

mod follow;
pub use follow::{run, Options, Watcher};

#[cfg(test)]
mod tests;
