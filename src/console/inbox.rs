//! The inbox (the landing page): every pending prompt and question of every session,
//! oldest first, kept live by the event stream; answer one, or many at once.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Nav};
use super::render::{self, Flag};
use super::{html as respond, waiting, Operator, PageError};
use crate::api::{read, ApiState};
use ccr_protocol::reply::PendingPrompt;
use ccr_protocol::PromptKind;

/// The inbox's filters (all optional, case-insensitive substrings).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Session id contains.
    #[serde(default)]
    session: String,
    /// One of the session's labels contains.
    #[serde(default)]
    label: String,
    /// Tool name contains.
    #[serde(default)]
    tool: String,
}

fn contains(hay: &str, needle: &str) -> bool {
    needle.is_empty() || hay.to_lowercase().contains(&needle.trim().to_lowercase())
}

impl Filters {
    fn keeps(&self, p: &PendingPrompt, labels: &[String]) -> bool {
        contains(&p.session_id, &self.session)
            && contains(&p.tool_name, &self.tool)
            && (self.label.trim().is_empty() || labels.iter().any(|l| contains(l, &self.label)))
    }
}

/// Session id → labels, for rows and the label filter.
pub type Labels = HashMap<String, Vec<String>>;

/// Every pending prompt and question (oldest first) kept by `filters`, with the labels.
async fn pending(
    state: &ApiState,
    filters: &Filters,
) -> Result<(Vec<PendingPrompt>, Labels), PageError> {
    let labels: Labels = read::sessions(state, None)
        .await?
        .into_iter()
        .map(|s| (s.view.id.to_string(), s.view.labels))
        .collect();
    let mut all = waiting(state, None).await?;
    all.retain(|p| {
        let l = labels
            .get(p.session_id.as_ref())
            .map_or(&[][..], Vec::as_slice);
        filters.keeps(p, l)
    });
    Ok((all, labels))
}

/// The link to a prompt's page.
pub fn prompt_href(p: &PendingPrompt) -> String {
    format!(
        "/ui/prompts/{}/{}",
        super::path_segment(&p.session_id),
        super::path_segment(&p.request_id)
    )
}

fn kind_name(kind: PromptKind) -> &'static str {
    match kind {
        PromptKind::CanUseTool => "permission",
        PromptKind::Elicitation => "elicitation",
        PromptKind::RequestUserDialog => "dialog",
    }
}

/// One pending prompt as a row (the inbox's, and a session page's).
pub fn row(p: &PendingPrompt, labels: &[String], can_answer: bool) -> Markup {
    let flags = render::flags(&p.request, p.confirmed);
    let default_no = flags.contains(&Flag::DefaultToNo);
    let permission = p.kind == PromptKind::CanUseTool;
    let select_id = format!(
        "sel-{}-{}",
        hex::encode(p.session_id.as_bytes()),
        hex::encode(p.request_id.as_bytes())
    );
    html! {
        li.prompt-row tabindex="-1" data-session=(p.session_id.as_ref()) data-request=(p.request_id)
            data-tool=(p.tool_name) data-kind=(kind_name(p.kind))
            data-default-no=(default_no) {
            // A default-to-no prompt is answered one at a time, from its page: no bulk allow.
            @if can_answer && permission && !default_no {
                input.select type="checkbox" id=(select_id) hx-preserve="true"
                    aria-label="select this prompt";
            }
            div.what {
                div.line {
                    span.tool { (render::one_line(&p.tool_name, 60)) }
                    @if !permission { span.kind { (kind_name(p.kind)) } }
                    span.session { (render::one_line(&p.session_id, 60)) " " (layout::labels(labels)) }
                    (layout::age(p.received_at, p.age_ms))
                }
                div.summary { (render::summary(&p.tool_name, &p.input)) }
                @if !flags.is_empty() { div.flags { (layout::flags(&flags)) } }
            }
            div.actions {
                a.open href=(prompt_href(p)) { "Open" }
                @if can_answer && permission {
                    button.allow type="button" disabled[default_no]
                        title=[default_no.then_some("this prompt asks for a considered answer: open it")] { "Allow" }
                    button.deny type="button" { "Deny" }
                }
            }
        }
    }
}

/// The rows of the inbox (or an empty-state line).
fn rows_markup(prompts: &[PendingPrompt], labels: &Labels, can_answer: bool) -> Markup {
    html! {
        @if prompts.is_empty() {
            p.empty { "Nothing is waiting for an answer." }
        } @else {
            ul.prompts {
                @for p in prompts {
                    (row(p, labels.get(p.session_id.as_ref()).map_or(&[][..], Vec::as_slice), can_answer))
                }
            }
        }
    }
}

/// The deny dialog (shared by the inbox, a prompt's page and a session's page).
pub fn deny_dialog() -> Markup {
    html! {
        dialog #deny-dialog {
            form method="dialog" {
                h2 { "Deny" }
                label for="deny-message" { "Message for the model" }
                textarea #deny-message rows="3" placeholder="Denied by the operator" {}
                label.check { input #deny-interrupt type="checkbox"; " Also interrupt the turn" }
                div.buttons {
                    button #deny-cancel type="button" value="cancel" { "Cancel" }
                    button #deny-confirm .danger type="button" { "Deny" }
                }
            }
        }
    }
}

/// The event stream a live list listens to: the types its triggers name, no SDK traffic.
pub const PENDING_STREAM: &str = "/v1/events?types=permission_requested,permission_answered,\
permission_cancelled,permission_confirmed,permission_unconfirmed,permission_expired,session_state";

/// Event types after which the pending list may have changed.
pub const PENDING_EVENTS: &str = "sse:permission_requested, sse:permission_answered, \
sse:permission_cancelled, sse:permission_confirmed, sse:permission_unconfirmed, \
sse:permission_expired, sse:session_state, refresh, every 30s";

/// `GET /` and `GET /ui/inbox`.
pub async fn page(
    who: Operator,
    state: web::Data<ApiState>,
    filters: web::Query<Filters>,
) -> Result<HttpResponse, PageError> {
    let filters = filters.into_inner();
    let (prompts, labels) = pending(&state, &filters).await?;
    let can_answer = who.can_answer();
    let body = html! {
        h1 { "Inbox" }
        form #filters .filters hx-get="/ui/inbox/rows" hx-target="#inbox"
            hx-trigger="input changed delay:250ms, submit" role="search" {
            input type="search" name="session" placeholder="session" value=(filters.session) aria-label="filter by session";
            input type="search" name="label" placeholder="label" value=(filters.label) aria-label="filter by label";
            input type="search" name="tool" placeholder="tool" value=(filters.tool) aria-label="filter by tool";
        }
        @if can_answer {
            div.bulk {
                label.check { input #select-all type="checkbox"; " All shown" }
                button #bulk-allow type="button" { "Allow selected" }
                button #bulk-deny type="button" .danger { "Deny selected" }
                span #bulk-result role="status" {}
            }
        }
        p.keys { "Keys: " kbd { "j" } "/" kbd { "k" } " move, " kbd { "Enter" } " open"
            @if can_answer { ", " kbd { "a" } " allow, " kbd { "d" } " deny, " kbd { "x" } " select" } }
        div hx-ext="sse" sse-connect=(PENDING_STREAM) {
            div #inbox hx-get="/ui/inbox/rows" hx-include="#filters" hx-trigger=(PENDING_EVENTS)
                hx-sync="this:queue last" {
                (rows_markup(&prompts, &labels, can_answer))
            }
        }
        @if can_answer {
            (deny_dialog())
            dialog #bulk-dialog {
                form method="dialog" {
                    h2 #bulk-title { "Answer several prompts" }
                    p { "This answers " strong #bulk-count { "0" } " prompts." }
                    div #bulk-deny-fields {
                        label for="bulk-message" { "Message for the model" }
                        textarea #bulk-message rows="2" {}
                    }
                    div.buttons {
                        button #bulk-cancel type="button" { "Cancel" }
                        button #bulk-confirm type="button" { "Confirm" }
                    }
                }
            }
        }
    };
    Ok(respond(layout::page(&who, Nav::Inbox, "Inbox", body)))
}

/// `GET /ui/inbox/rows`: the rows alone, for live updates and filters.
pub async fn rows(
    who: Operator,
    state: web::Data<ApiState>,
    filters: web::Query<Filters>,
) -> Result<HttpResponse, PageError> {
    let (prompts, labels) = pending(&state, &filters).await?;
    Ok(respond(rows_markup(&prompts, &labels, who.can_answer())))
}
