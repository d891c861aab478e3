//! The decision ledger: the API's filters and paging, and a JSONL export of every row
//! that matches.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use maud::html;

use super::layout::{self, Nav};
use super::render::one_line;
use super::{html as respond, Operator, PageError};
use crate::api::{read, ApiError, ApiState};
use ccr_protocol::api::LedgerParams;
use ccr_protocol::time::rfc3339;

/// Rows an export reads per ledger query: small, so that a page of large inputs cannot
/// carry it far past [`EXPORT_MAX_BYTES`].
const EXPORT_PAGE: &str = "50";
/// Exports running at once; more are refused (503) until one ends.
static EXPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// Most rows one export writes; beyond, its last line says where to resume.
const EXPORT_MAX_ROWS: usize = 50_000;
/// Most bytes one export holds (it is built in memory); beyond, the same.
const EXPORT_MAX_BYTES: usize = 32 << 20;

/// The query string of a ledger URL with `params` (empty ones left out).
fn query_string(params: &LedgerParams) -> String {
    let pairs = [
        ("session_id", &params.session_id),
        ("tool", &params.tool),
        ("outcome", &params.outcome),
        ("decided_by", &params.decided_by),
        ("since", &params.since),
        ("until", &params.until),
        ("limit", &params.limit),
        ("cursor", &params.cursor),
    ];
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            out.append_pair(k, v);
        }
    }
    out.finish()
}

/// Empty form fields mean "no filter".
fn without_empty(mut p: LedgerParams) -> LedgerParams {
    for v in [
        &mut p.session_id,
        &mut p.tool,
        &mut p.outcome,
        &mut p.decided_by,
        &mut p.since,
        &mut p.until,
        &mut p.limit,
        &mut p.cursor,
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    }
    p
}

/// `GET /ui/audit?session_id=&tool=&outcome=&decided_by=&since=&until=&limit=&cursor=`.
pub async fn page(
    who: Operator,
    state: web::Data<ApiState>,
    params: web::Query<LedgerParams>,
) -> Result<HttpResponse, PageError> {
    let params = without_empty(params.into_inner());
    let ledger = read::ledger_page(&state, params.clone()).await?;
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let export = LedgerParams {
        cursor: None,
        limit: None,
        ..params.clone()
    };
    let next = ledger.next_cursor.as_ref().map(|c| LedgerParams {
        cursor: Some(c.clone()),
        ..params.clone()
    });
    let outcomes = ["allowed", "denied", "cancelled", "expired", "pending"];
    let body = html! {
        h1 { "Audit" }
        form #ledger-filters .filters method="get" action="/ui/audit" {
            input type="search" name="session_id" placeholder="session" value=(field(&params.session_id)) aria-label="session";
            input type="search" name="tool" placeholder="tool" value=(field(&params.tool)) aria-label="tool";
            select name="outcome" aria-label="outcome" {
                option value="" { "any outcome" }
                @for o in outcomes { option value=(o) selected[params.outcome.as_deref() == Some(o)] { (o) } }
            }
            input type="search" name="decided_by" placeholder="decided by" value=(field(&params.decided_by)) aria-label="decided by";
            input type="text" name="since" placeholder="since (RFC 3339)" value=(field(&params.since)) aria-label="since";
            input type="text" name="until" placeholder="until (RFC 3339)" value=(field(&params.until)) aria-label="until";
            button type="submit" { "Filter" }
            a #export-jsonl href=(format!("/ui/audit/export.jsonl?{}", query_string(&export))) download { "Export JSONL" }
        }
        @if ledger.rows.is_empty() { p.empty { "No decision matches." } }
        @else {
            table #audit {
                thead { tr { th { "Received" } th { "Session" } th { "Tool" } th { "Input" } th { "Outcome" } th { "By" } } }
                tbody {
                    @for r in &ledger.rows {
                        tr.audit-row data-session=(r.session_id) data-request=(r.request_id) {
                            td { (rfc3339(r.received_at)) }
                            td { (one_line(&r.session_id, 60)) }
                            td { (one_line(&r.tool_name, 60)) }
                            td.summary { (super::render::summary(&r.tool_name, &r.input)) }
                            td.outcome { (r.outcome.map_or("pending".to_owned(), |o| o.to_string())) }
                            td { (r.decided_by.as_deref().map(|d| one_line(d, 60)).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a #next-page href=(format!("/ui/audit?{}", query_string(&next))) { "Older →" } }
        }
    };
    Ok(respond(layout::page(&who, Nav::Audit, "Audit", body)))
}

/// `GET /ui/audit/export.jsonl?...`: every matching row, one JSON object a line, newest
/// first (as `ctl audit --export jsonl` writes them). A very large export stops at
/// [`EXPORT_MAX_ROWS`] rows or [`EXPORT_MAX_BYTES`], its last line then
/// `{"truncated":true,"next_cursor":..}` (`ctl audit --export jsonl --cursor` resumes).
pub async fn export(
    _who: Operator,
    state: web::Data<ApiState>,
    params: web::Query<LedgerParams>,
) -> Result<HttpResponse, PageError> {
    let _running = EXPORTS.try_acquire().map_err(|_| {
        ApiError::Unavailable("two ledger exports are running; try again when one ends".into())
    })?;
    let mut params = without_empty(params.into_inner());
    params.limit = Some(EXPORT_PAGE.into());
    let mut out = String::new();
    let mut rows = 0usize;
    loop {
        let page = read::ledger_page(&state, params.clone()).await?;
        for r in &page.rows {
            out.push_str(&serde_json::to_string(r).unwrap_or_default());
            out.push('\n');
        }
        rows += page.rows.len();
        match page.next_cursor {
            Some(c) if rows < EXPORT_MAX_ROWS && out.len() < EXPORT_MAX_BYTES => {
                params.cursor = Some(c)
            }
            Some(c) => {
                out.push_str(
                    &serde_json::json!({ "truncated": true, "next_cursor": c }).to_string(),
                );
                out.push('\n');
                break;
            }
            None => break,
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"ledger.jsonl\"",
        ))
        .body(out))
}
