//! Sessions: the list (state, last error, pending count, counters; filters by state and
//! label) and one session's page (live transcript, pending prompts, interrupt, message).

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::inbox::{deny_dialog, row, PENDING_EVENTS, PENDING_STREAM};
use super::layout::{self, Nav};
use super::render::one_line;
use super::transcript::{entries, Entry};
use super::{html as respond, path_segment, waiting, Operator, PageError};
use crate::api::{read, ApiError, ApiState};
use ccr_protocol::reply::SessionBody;

/// Events of one session shown on its page (the API's page size limit).
const TRANSCRIPT_EVENTS: usize = 1000;
/// Entries shown, newest last.
const TRANSCRIPT_ENTRIES: usize = 300;

/// The session list's filters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// State name (`connected`, `failed`, ...), empty for all.
    #[serde(default)]
    state: String,
    /// One of the labels contains.
    #[serde(default)]
    label: String,
}

impl Filters {
    fn keeps(&self, s: &SessionBody) -> bool {
        let state = self.state.trim();
        let label = self.label.trim().to_lowercase();
        (state.is_empty() || s.view.status.state.name() == state)
            && (label.is_empty()
                || s.view
                    .labels
                    .iter()
                    .any(|l| l.to_lowercase().contains(&label)))
    }
}

fn session_href(id: &str) -> String {
    format!("/ui/sessions/{}", path_segment(id))
}

fn rows_markup(sessions: &[SessionBody]) -> Markup {
    html! {
        @if sessions.is_empty() { p.empty { "No session matches." } }
        @else {
            table.sessions {
                thead { tr { th { "Session" } th { "State" } th { "Pending" } th.wide { "Prompts / answers" } th.wide { "Reconnects" } th { "Last error" } } }
                tbody {
                    @for s in sessions {
                        @let c = &s.view.status.counters;
                        tr.session-row data-session=(s.view.id.as_ref()) {
                            td { a href=(session_href(&s.view.id)) { (one_line(&s.view.id, 80)) } " " (layout::labels(&s.view.labels)) }
                            td.state data-state=(s.view.status.state.name()) { (s.view.status.state.name()) }
                            td.pending { (s.pending) }
                            td.wide { (c.prompts) " / " (c.decisions) }
                            td.wide { (c.reconnects) }
                            td.last-error { @if let Some(e) = &s.view.status.last_error { (one_line(e, 200)) } }
                        }
                    }
                }
            }
        }
    }
}

async fn filtered(state: &ApiState, filters: &Filters) -> Result<Vec<SessionBody>, ApiError> {
    let mut all = read::sessions(state, None).await?;
    all.retain(|s| filters.keeps(s));
    Ok(all)
}

/// `GET /ui/sessions`.
pub async fn list(
    who: Operator,
    state: web::Data<ApiState>,
    filters: web::Query<Filters>,
) -> Result<HttpResponse, PageError> {
    let filters = filters.into_inner();
    let sessions = filtered(&state, &filters).await?;
    let body = html! {
        h1 { "Sessions" }
        form #filters .filters hx-get="/ui/sessions/rows" hx-target="#sessions"
            hx-trigger="input changed delay:250ms, change, submit" role="search" {
            select name="state" aria-label="filter by state" {
                option value="" { "any state" }
                @for s in crate::metrics::STATES { option value=(s) selected[filters.state == s] { (s) } }
            }
            input type="search" name="label" placeholder="label" value=(filters.label) aria-label="filter by label";
        }
        div hx-ext="sse" sse-connect=(PENDING_STREAM) {
            div #sessions hx-get="/ui/sessions/rows" hx-include="#filters"
                hx-trigger=(PENDING_EVENTS) hx-sync="this:queue last" {
                (rows_markup(&sessions))
            }
        }
    };
    Ok(respond(layout::page(&who, Nav::Sessions, "Sessions", body)))
}

/// `GET /ui/sessions/rows`.
pub async fn rows(
    _who: Operator,
    state: web::Data<ApiState>,
    filters: web::Query<Filters>,
) -> Result<HttpResponse, PageError> {
    Ok(respond(rows_markup(&filtered(&state, &filters).await?)))
}

fn entry(e: &Entry) -> Markup {
    match e {
        Entry::Assistant(t) => {
            html! { div.msg.msg-assistant { p.who { "assistant" } div.text { (t) } } }
        }
        Entry::User(t) => html! { div.msg.msg-user { p.who { "user" } div.text { (t) } } },
        Entry::ToolUse { name, summary } => html! {
            div.msg.msg-tool-use { span.tool { (name) } " " code { (summary) } }
        },
        Entry::ToolResult { text, is_error } => html! {
            div.msg.msg-tool-result.error[*is_error] { pre { (text) } }
        },
        Entry::Result {
            subtype,
            cost_usd,
            duration_ms,
            turns,
            text,
        } => html! {
            div.msg.msg-result {
                p.who { "result: " (subtype)
                    @if let Some(c) = cost_usd { " · $" (format!("{c:.4}")) }
                    @if let Some(d) = duration_ms { " · " (format!("{:.1}", *d as f64 / 1000.0)) " s" }
                    @if let Some(t) = turns { " · " (t) " turns" } }
                @if let Some(t) = text { div.text { (t) } }
            }
        },
        Entry::Note(t) => html! { div.msg.msg-note { (t) } },
    }
}

fn transcript_markup(state: &ApiState, id: &str) -> Markup {
    let page = state.bus.page(id, 0, TRANSCRIPT_EVENTS);
    let events: Vec<Value> = page
        .events
        .iter()
        .filter_map(|e| serde_json::from_str(&e.json()).ok())
        .collect();
    let all = entries(&events);
    let shown = &all[all.len().saturating_sub(TRANSCRIPT_ENTRIES)..];
    html! {
        @if page.lagged_from.is_some() || shown.len() < all.len() {
            p.muted { "Earlier messages are no longer kept in memory." }
        }
        @if shown.is_empty() { p.empty { "Nothing yet." } }
        @for e in shown { (entry(e)) }
    }
}

async fn pending_markup(state: &ApiState, id: &str, can_answer: bool) -> Result<Markup, PageError> {
    let pending = waiting(state, Some(id)).await?;
    let labels = read::sessions(state, Some(id.to_owned()))
        .await?
        .pop()
        .map(|s| s.view.labels)
        .unwrap_or_default();
    Ok(html! {
        @if pending.is_empty() { p.empty { "Nothing is waiting for an answer." } }
        @else { ul.prompts { @for p in &pending { (row(p, &labels, can_answer)) } } }
    })
}

/// `GET /ui/sessions/{id}`.
pub async fn page(
    who: Operator,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let id = id.into_inner();
    let s = read::sessions(&state, Some(id.clone()))
        .await?
        .pop()
        .ok_or_else(|| ApiError::UnknownSession(id.clone()))?;
    let href = session_href(&id);
    let can_answer = who.can_answer();
    let body = html! {
        article #session data-session=(id) {
            h1 { (one_line(&id, 80)) " " (layout::labels(&s.view.labels)) }
            p.meta { "State " strong.state { (s.view.status.state.name()) }
                @if let Some(e) = &s.view.status.last_error { " · last error: " span.last-error { (one_line(e, 300)) } }
                @if s.view.viewer_only { " · viewer-only" } }
            div hx-ext="sse" sse-connect=(format!("/v1/events?session_id={}", path_segment(&id))) {
                section {
                    h2 { "Waiting for an answer" }
                    div #pending hx-get=(format!("{href}/pending")) hx-trigger=(PENDING_EVENTS)
                        hx-sync="this:queue last" { (pending_markup(&state, &id, can_answer).await?) }
                }
                @if can_answer && !s.view.viewer_only {
                    section.controls {
                        button #interrupt type="button" .danger { "Interrupt" }
                        form #send-message {
                            label for="message-content" { "Send a message" }
                            textarea #message-content name="content" rows="2" required {}
                            button #send type="submit" { "Send" }
                        }
                        p #control-status role="status" {}
                    }
                }
                section {
                    h2 { "Transcript" }
                    div #transcript hx-get=(format!("{href}/transcript"))
                        hx-trigger="sse:sdk_message, sse:permission_requested, sse:permission_answered, sse:session_state"
                        hx-sync="this:queue last" { (transcript_markup(&state, &id)) }
                }
            }
            @if can_answer { (deny_dialog()) }
        }
    };
    Ok(respond(layout::page(&who, Nav::Sessions, &id, body)))
}

/// `GET /ui/sessions/{id}/transcript`.
pub async fn transcript(
    _who: Operator,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let id = id.into_inner();
    read::sessions(&state, Some(id.clone()))
        .await?
        .pop()
        .ok_or_else(|| ApiError::UnknownSession(id.clone()))?;
    Ok(respond(transcript_markup(&state, &id)))
}

/// `GET /ui/sessions/{id}/pending`.
pub async fn pending(
    who: Operator,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    Ok(respond(
        pending_markup(&state, &id, who.can_answer()).await?,
    ))
}
