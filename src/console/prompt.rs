//! One prompt's page: its full input (a command as code, an edit as a diff, a write as
//! the file content, anything else as JSON), the session's suggestions and reason, and
//! the answers: allow, allow with edited input, deny with a message, deny and interrupt.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde_json::Value;

use super::inbox::deny_dialog;
use super::layout::{self, Nav};
use super::render::{self, DiffLine, Flag, InputView};
use super::{html as respond, path_segment, waiting, Operator, PageError};
use crate::api::{read, ApiState};
use ccr_protocol::api::LedgerParams;
use ccr_protocol::reply::PendingPrompt;
use ccr_protocol::PromptKind;

fn diff_line(line: &DiffLine) -> Markup {
    match line {
        DiffLine::Context(l) => html! { span.diff-ctx { "  " (l) } },
        DiffLine::Deleted(l) => html! { span.diff-del { "- " (l) } },
        DiffLine::Inserted(l) => html! { span.diff-ins { "+ " (l) } },
    }
}

/// The full input, presented by tool.
pub fn input(tool: &str, input: &Value) -> Markup {
    match render::input_view(tool, input) {
        InputView::Command {
            command,
            description,
        } => html! {
            @if let Some(d) = description { p.description { (d) } }
            pre.command { code { (command) } }
        },
        InputView::Diff { path, hunks } => html! {
            p.path { (path) }
            @for (i, hunk) in hunks.iter().enumerate() {
                @if hunks.len() > 1 || hunk.replace_all {
                    p.hunk-title { "Edit " (i + 1)
                        @if hunk.replace_all { " (every occurrence)" } }
                }
                pre.diff { @for line in &hunk.lines { (diff_line(line)) } }
            }
        },
        InputView::Content { path, text } => html! {
            p.path { (path) }
            pre.content { code { (text) } }
        },
        InputView::Json(text) => html! { pre.json { code { (text) } } },
    }
}

fn text_field<'a>(request: &'a Value, key: &str) -> Option<&'a str> {
    request
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn details(p: &PendingPrompt) -> Markup {
    let r = &p.request;
    let suggestions = r
        .get("permission_suggestions")
        .filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    html! {
        @if let Some(t) = text_field(r, "title") { p.title { (render::one_line(t, 300)) } }
        @if let Some(t) = text_field(r, "description") { p.description { (render::clean(t)) } }
        @if let Some(reason) = text_field(r, "decision_reason") {
            section #decision-reason {
                h2 { "Why it asks" }
                p { (render::clean(reason)) }
                @if let Some(kind) = text_field(r, "decision_reason_type") { p.muted { (render::one_line(kind, 80)) } }
            }
        }
        @if let Some(path) = text_field(r, "blocked_path") {
            p.blocked { "Blocked path: " code { (render::one_line(path, 400)) } }
        }
        @if let Some(rule) = r.get("matched_ask_rule").filter(|v| !v.is_null()) {
            p.blocked { "Matched the user's ask rule: " code { (render::one_line(&rule.to_string(), 400)) } }
        }
        @if let Some(s) = suggestions {
            section #suggestions {
                h2 { "The session suggests" }
                pre.json { code { (render::pretty_json(s)) } }
            }
        }
    }
}

fn permission_actions(p: &PendingPrompt, default_no: bool) -> Markup {
    // The editor starts with the input exactly as received (JSON escapes control
    // characters, so nothing in it acts on the page or a terminal).
    let editable = serde_json::to_string_pretty(&p.input).unwrap_or_else(|_| p.input.to_string());
    html! {
        div.answer {
            @if default_no { p.muted { "This prompt asks not to pre-select approve: decide deliberately." } }
            div.buttons {
                button #allow type="button" { "Allow" }
                button #edit type="button" { "Edit input…" }
                button #deny type="button" .danger { "Deny…" }
            }
            div #editor hidden {
                label for="edited-input" { "Input to allow with (JSON)" }
                textarea #edited-input rows="12" spellcheck="false" { (editable) }
                p #edit-error .error role="alert" hidden {}
                button #allow-edited type="button" { "Allow with this input" }
            }
            p #answer-status role="status" {}
        }
        (deny_dialog())
    }
}

fn question_actions(p: &PendingPrompt) -> Markup {
    let template = match p.kind {
        PromptKind::Elicitation => r#"{"action": "accept", "content": {}}"#,
        _ => r#"{"behavior": "completed", "result": {}}"#,
    };
    html! {
        div.answer {
            @if p.answerable {
                label for="question-answer" { "Answer (JSON, as " code { "POST /v1/sessions/…/questions/…" } " takes it)" }
                textarea #question-answer rows="6" spellcheck="false" { (template) }
                p #edit-error .error role="alert" hidden {}
                button #answer-question type="button" { "Send answer" }
            } @else {
                p.muted { "This supervisor does not render this dialog kind; it stays pending for another client." }
            }
            p #answer-status role="status" {}
        }
    }
}

/// What became of a prompt that is no longer pending, from the ledger (its newest rows of
/// the session); `None` while it is pending.
async fn settled(
    state: &ApiState,
    session_id: &str,
    request_id: &str,
) -> Result<Option<String>, PageError> {
    let pending = waiting(state, Some(session_id)).await?;
    if pending.iter().any(|p| p.request_id == request_id) {
        return Ok(None);
    }
    // Settled moments ago: among the session's newest rows.
    let params = LedgerParams {
        session_id: Some(session_id.to_owned()),
        limit: Some("50".into()),
        ..LedgerParams::default()
    };
    let row = match read::ledger_page(state, params).await {
        Ok(page) => page.rows.into_iter().find(|r| r.request_id == request_id),
        Err(_) => None,
    };
    Ok(Some(
        match row.and_then(|r| r.outcome.map(|o| (o, r.decided_by))) {
            Some((outcome, by)) => format!(
                "No longer pending: {outcome}{}",
                by.map(|b| format!(" by {}", render::one_line(&b, 80)))
                    .unwrap_or_default()
            ),
            None => "No longer pending.".to_owned(),
        },
    ))
}

/// `GET /ui/prompts/{session}/{request}/state`: empty while pending, else what became of it
/// (the page swaps it in when the session's events say the prompt was settled elsewhere).
pub async fn state(
    _who: Operator,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (session_id, request_id) = path.into_inner();
    let text = settled(&state, &session_id, &request_id).await?;
    Ok(respond(html! {
        @if let Some(t) = text { p.gone data-gone="true" { (t) } }
    }))
}

/// `GET /ui/prompts/{session}/{request}`.
pub async fn page(
    who: Operator,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (session_id, request_id) = path.into_inner();
    let pending = waiting(&state, Some(&session_id)).await?;
    let labels = read::sessions(&state, Some(session_id.clone()))
        .await?
        .pop()
        .map(|s| s.view.labels)
        .unwrap_or_default();
    let session_href = format!("/ui/sessions/{}", path_segment(&session_id));
    let Some(p) = pending.into_iter().find(|p| p.request_id == request_id) else {
        let body = html! {
            h1 { "Not pending" }
            p { "Prompt " code { (render::one_line(&request_id, 120)) } " of session "
                a href=(session_href) { (render::one_line(&session_id, 120)) }
                " is not waiting for an answer (answered, cancelled, or unknown)." }
            p { a href=(format!("/ui/audit?session_id={}", path_segment(&session_id))) { "See its ledger" } }
        };
        return Ok(respond(layout::page(&who, Nav::Inbox, "Not pending", body)));
    };
    let flags = render::flags(&p.request, p.confirmed);
    let default_no = flags.contains(&Flag::DefaultToNo);
    let permission = p.kind == PromptKind::CanUseTool;
    let body = html! {
        article #prompt data-session=(p.session_id.as_ref()) data-request=(p.request_id)
            data-default-no=(default_no) data-kind=(p.kind.as_str()) {
            h1 { span.tool { (render::one_line(&p.tool_name, 80)) } }
            p.meta {
                "Session " a href=(session_href) { (render::one_line(&p.session_id, 80)) } " "
                (layout::labels(&labels)) " · waiting " (layout::age(p.received_at, p.age_ms))
                " · request " code { (render::one_line(&p.request_id, 80)) }
            }
            @if !flags.is_empty() { div.flags { (layout::flags(&flags)) } }
            (details(&p))
            section.input {
                h2 { "Input" }
                @if permission { (input(&p.tool_name, &p.input)) }
                @else { pre.json { code { (render::pretty_json(&p.request)) } } }
            }
            @if who.can_answer() {
                @if permission { (permission_actions(&p, default_no)) } @else { (question_actions(&p)) }
            }
            div hx-ext="sse" sse-connect=(format!("/v1/events?session_id={}&types=permission_answered,permission_cancelled,permission_expired", path_segment(&p.session_id))) {
                div #prompt-state hx-get=(format!("/ui/prompts/{}/{}/state", path_segment(&p.session_id), path_segment(&p.request_id)))
                    hx-trigger="sse:permission_answered, sse:permission_cancelled, sse:permission_expired, refresh"
                    hx-sync="this:queue last" {}
            }
        }
    };
    Ok(respond(layout::page(&who, Nav::Inbox, &p.tool_name, body)))
}
