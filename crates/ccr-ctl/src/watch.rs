//! `ctl watch`: follow `GET /v1/events` and print one readable line per event.
//!
//! Rendering is pure ([`render_event`]) so it is unit-tested with and without
//! colour; [`run`] only reads the stream and writes lines. Pending prompts get
//! a bold yellow `PERMISSION` line plus the exact command that answers them.

use ccr_protocol::session::SessionState;
use serde::Deserialize;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use super::client::{Client, CtlError};
use super::render::{input_summary, one_line, state_label, truncate};
use super::sanitize::{clean, clean_value, escape_json};
use ccr_protocol::sse::{SseEvent, SseParser};

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

fn paint(color: bool, style: Style, text: &str) -> String {
    if color {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_owned()
    }
}

/// `01:02:03.456` out of an RFC 3339 `at`, or the whole value when it has another shape.
fn clock(at: &Value) -> String {
    match at.as_str() {
        Some(s) => match s.split_once('T') {
            Some((_, t)) => t.trim_end_matches('Z').to_owned(),
            None => s.to_owned(),
        },
        None => "--:--:--.---".into(),
    }
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
            text.push_str(&format!(
                "\n    answer: {}   (or: {})",
                hint.command("allow", session, request),
                hint.command("deny", session, request),
            ));
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
        "permission_delivered" => line(
            GOOD,
            "delivered",
            format!("{request} (written to the session)"),
        ),
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
                (Some(n), _) => format!("missed {n} events; continuing"),
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

fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// On Ctrl-C, let the line being written finish, then exit 0.
///
/// Returns once the handler is registered, so a Ctrl-C right after the first
/// printed line can never hit the default (killing) disposition.
fn exit_on_ctrl_c() {
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

/// Follow the stream until the server closes it (Ok) or it breaks (Err).
pub fn run(
    client: &Client,
    session: Option<&str>,
    after: Option<u64>,
    json: bool,
    hint: &AnswerHint,
) -> Result<(), CtlError> {
    exit_on_ctrl_c();
    let mut reader = client.events(session, after)?;
    if std::io::stderr().is_terminal() {
        eprintln!("watching events (Ctrl-C to stop)");
    }
    let color = !json && use_color();
    let mut parser = SseParser::new();
    let mut buf = Vec::new();
    let emit = |ev: SseEvent| -> bool {
        let text = if json {
            json_line(&ev)
        } else {
            render_sse(&ev, color, hint)
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) ends the watch quietly.
        writeln!(out, "{text}").and_then(|_| out.flush()).is_ok()
    };
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                if let Some(ev) = parser.feed(&String::from_utf8_lossy(&buf)) {
                    if !emit(ev) {
                        return Ok(());
                    }
                }
            }
            Err(e) => {
                return Err(CtlError::Protocol(format!("the event stream broke: {e}")));
            }
        }
    }
    if let Some(ev) = parser.finish() {
        emit(ev);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
