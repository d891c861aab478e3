//! The policy: its rules in order with their hit counts, the deadlines, and a form that
//! asks `POST /v1/policy/evaluate` what the policy would do with a prompt.

use actix_web::{web, HttpResponse};
use maud::html;

use super::layout::{self, Nav};
use super::render::one_line;
use super::{html as respond, Operator, PageError};
use crate::api::{read, ApiState};

/// `GET /ui/policy`.
pub async fn page(who: Operator, state: web::Data<ApiState>) -> Result<HttpResponse, PageError> {
    let report = read::policy(&state).await?;
    let p = &report.policy;
    let body = html! {
        h1 { "Policy" }
        p.meta {
            "Ask deadline: " strong { (p.ask_timeout.as_deref().unwrap_or("none")) }
            " · reminder after: " strong { (p.remind_after.as_deref().unwrap_or("none")) }
        }
        @if p.rules.is_empty() { p.empty { "No rules: every prompt goes to a person." } }
        @else {
            table #rules {
                thead { tr { th { "Rule" } th { "Action" } th { "Tool" } th { "Sessions" } th { "Hits" } } }
                tbody {
                    @for r in &p.rules {
                        tr.rule-row data-rule=(r.id) {
                            td { (one_line(&r.id, 80)) @if r.dry_run { " " span.flag { "dry run" } } }
                            td.action { (r.action.as_str()) }
                            td { code { (one_line(&r.tool, 120)) } }
                            td { (r.sessions.as_ref().map_or("every session".to_owned(), |s| s.join(", "))) }
                            td.hits { (report.hits.get(&r.id).copied().unwrap_or(0)) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "What would the policy do?" }
            form #evaluate {
                label for="eval-tool" { "Tool" }
                input #eval-tool name="tool_name" required placeholder="Bash";
                label for="eval-session" { "As session (optional)" }
                input #eval-session name="session_id";
                label for="eval-input" { "Input (JSON)" }
                textarea #eval-input name="input" rows="4" spellcheck="false" { "{\"command\": \"npm test\"}" }
                button type="submit" { "Evaluate" }
            }
            pre #evaluate-result role="status" {}
        }
    };
    Ok(respond(layout::page(&who, Nav::Policy, "Policy", body)))
}
