//! `ctl show SESSION REQUEST`: one pending prompt, whole and readable.
//!
//! The input is presented by `ccr_protocol::present` (the console's own definitions):
//! Bash as its command, Edit / MultiEdit as a diff, Write as the path and content,
//! anything else as pretty JSON; then the session's suggestions, its reason, a blocked
//! path or matched ask rule, and the command that answers it. [`show`] is pure.

use std::io::Write;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use ccr_protocol::frame::PromptKind;
use ccr_protocol::present::{self, DiffLine, InputView};
use ccr_protocol::reply::PendingPrompt;
use ccr_protocol::time::rfc3339;

use super::client::{Client, CtlError};
use super::resolve::{self, Resolved};
use super::sanitize;
use super::watch::{paint, use_color, AnswerHint};

const TITLE: Style = AnsiColor::Yellow.on_default().bold();
const DELETED: Style = AnsiColor::Red.on_default();
const INSERTED: Style = AnsiColor::Green.on_default();
const LABEL: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

/// Indent every line of `text` by `pad`.
fn indented(text: &str, pad: &str) -> String {
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn text_field<'a>(request: &'a Value, key: &str) -> Option<&'a str> {
    request
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// The input as `present::input_view` shows it, as terminal lines (diffs coloured when `color`).
pub fn input_lines(tool: &str, input: &Value, color: bool) -> Vec<String> {
    let mut out = Vec::new();
    match present::input_view(tool, input) {
        InputView::Command {
            command,
            description,
        } => {
            if let Some(d) = description {
                out.push(format!("{} {d}", paint(color, LABEL, "description:")));
            }
            out.push(paint(color, LABEL, "command:"));
            out.push(indented(&command, "    "));
        }
        InputView::Diff { path, hunks } => {
            out.push(format!("{} {path}", paint(color, LABEL, "file:")));
            for (i, hunk) in hunks.iter().enumerate() {
                let mut title = format!("@@ edit {} of {}", i + 1, hunks.len());
                if hunk.replace_all {
                    title.push_str(" (every occurrence)");
                }
                title.push_str(" @@");
                out.push(paint(color, DIM, &title));
                for line in &hunk.lines {
                    out.push(match line {
                        DiffLine::Context(l) => format!("  {l}"),
                        DiffLine::Deleted(l) => paint(color, DELETED, &format!("- {l}")),
                        DiffLine::Inserted(l) => paint(color, INSERTED, &format!("+ {l}")),
                    });
                }
            }
        }
        InputView::Content { path, text } => {
            out.push(format!("{} {path}", paint(color, LABEL, "file:")));
            out.push(paint(
                color,
                LABEL,
                &format!("content ({} lines):", text.lines().count()),
            ));
            out.push(indented(&text, "    "));
        }
        InputView::Json(text) => {
            out.push(paint(color, LABEL, "input:"));
            out.push(indented(&text, "    "));
        }
    }
    out
}

/// The whole prompt `p` (read from a sanitized body) as text for a terminal.
pub fn show(p: &PendingPrompt, color: bool, hint: &AnswerHint) -> String {
    let r = &p.request;
    let mut out = Vec::new();
    let kind = match p.kind {
        PromptKind::CanUseTool => "PERMISSION",
        PromptKind::Elicitation => "QUESTION (elicitation)",
        PromptKind::RequestUserDialog => "QUESTION (dialog)",
    };
    out.push(paint(
        color,
        TITLE,
        &format!(
            "{kind} {} {} {}",
            present::one_line(&p.session_id, 120),
            present::one_line(&p.request_id, 120),
            present::one_line(&p.tool_name, 120)
        ),
    ));
    out.push(format!(
        "received {} ({} ago){}",
        rfc3339(p.received_at),
        present::age(p.age_ms),
        if p.answerable { "" } else { ", read-only" }
    ));
    let flags = present::flags(r, p.confirmed);
    if !flags.is_empty() {
        let names: Vec<&str> = flags.iter().map(|f| f.label()).collect();
        out.push(format!(
            "{} {}",
            paint(color, LABEL, "flags:"),
            names.join(", ")
        ));
    }
    if let Some(t) = text_field(r, "title") {
        out.push(format!(
            "{} {}",
            paint(color, LABEL, "title:"),
            present::one_line(t, 300)
        ));
    }
    if p.kind == PromptKind::CanUseTool {
        out.extend(input_lines(&p.tool_name, &p.input, color));
    } else {
        if let Some(m) = text_field(r, "message") {
            out.push(format!(
                "{} {}",
                paint(color, LABEL, "asks:"),
                present::clean(m)
            ));
        }
        out.push(paint(color, LABEL, "request:"));
        out.push(indented(&present::pretty_json(r), "    "));
    }
    let suggestions = r
        .get("permission_suggestions")
        .filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    if let Some(s) = suggestions {
        out.push(paint(color, LABEL, "the session suggests:"));
        out.push(indented(&present::pretty_json(s), "    "));
    }
    if let Some(reason) = text_field(r, "decision_reason") {
        let mut line = format!(
            "{} {}",
            paint(color, LABEL, "reason:"),
            present::clean(reason)
        );
        if let Some(kind) = text_field(r, "decision_reason_type") {
            line.push_str(&format!(" ({})", present::one_line(kind, 80)));
        }
        out.push(line);
    }
    if let Some(path) = text_field(r, "blocked_path") {
        out.push(format!(
            "{} {}",
            paint(color, LABEL, "blocked path:"),
            present::one_line(path, 400)
        ));
    }
    if let Some(rule) = r.get("matched_ask_rule").filter(|v| !v.is_null()) {
        out.push(format!(
            "{} {} (a person must answer)",
            paint(color, LABEL, "ask rule:"),
            present::one_line(&rule.to_string(), 400)
        ));
    }
    if p.answerable {
        out.push(hint.answer_line(&p.session_id, &p.request_id, p.kind));
    }
    out.join("\n")
}

/// The pending prompt `request` (an id or a unique prefix) of `session`, raw as the API sent it.
pub fn find(client: &Client, session: &str, request: &str) -> Result<Value, CtlError> {
    let pending = resolve::pending_raw(client, Some(session))?;
    let full = match resolve::resolve(request, resolve::ids(&pending)) {
        Resolved::Exact => request.to_owned(),
        Resolved::Prefix(full) => full,
        Resolved::Ambiguous(all) => return Err(resolve::ambiguous(session, request, &all)),
        Resolved::Unknown => {
            return Err(CtlError::Api {
                status: 404,
                code: "unknown_prompt".into(),
                message: format!(
                "no pending prompt {} in session {session} (answered, withdrawn or never asked)",
                sanitize::clean(request)
            ),
            })
        }
    };
    pending
        .into_iter()
        .find(|p| p["request_id"].as_str() == Some(full.as_str()))
        .ok_or_else(|| CtlError::Protocol("the prompt vanished from the list".into()))
}

/// `ctl show`: print the prompt (or, with `--json`, its raw pending-prompt object).
pub fn run(
    client: &Client,
    session: &str,
    request: &str,
    json: bool,
    hint: &AnswerHint,
) -> Result<(), CtlError> {
    let raw = find(client, session, request)?;
    let text = if json {
        sanitize::escape_json(&raw.to_string()).into_owned()
    } else {
        show(&resolve::typed(&raw)?, use_color(), hint)
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = writeln!(out, "{}", text.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests;
