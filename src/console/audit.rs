//! The decision ledger: the API's filters and paging, and a JSONL export of every row
//! that matches.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use maud::html;

use super::layout::{self, Nav};
use super::render::one_line;
use super::{html as respond, Operator, PageError};
use crate::api::{read, ApiError, ApiState};
use crate::ledger;
use ccr_protocol::api::LedgerParams;
use ccr_protocol::time::rfc3339;

/// Rows an export reads per ledger query. The limits are checked row by row, so this
/// bounds only what is read ahead of the body.
const EXPORT_PAGE: &str = "50";
/// Exports running at once; more are refused (503) until one ends.
static EXPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// Most rows one export writes; beyond, its last line says where to resume.
const EXPORT_MAX_ROWS: usize = 50_000;
/// Most bytes of rows one export holds (it is built in memory); beyond, the same. A row
/// that does not fit is left for the next export, unless it is the first: one row alone
/// larger than this is still written, or the export could never get past it.
const EXPORT_MAX_BYTES: usize = 32 << 20;

/// An export's body: whole rows, one JSON object a line, while they fit in the limits.
#[derive(Default)]
struct ExportBody {
    text: String,
    rows: usize,
}

impl ExportBody {
    /// Append `line` (one row and its newline) if it fits; false when the export stops here.
    fn push(&mut self, line: &str) -> bool {
        let full = self.rows >= EXPORT_MAX_ROWS
            || (self.rows > 0 && self.text.len() + line.len() > EXPORT_MAX_BYTES);
        if !full {
            self.text.push_str(line);
            self.rows += 1;
        }
        !full
    }

    /// True when no further row can fit.
    fn is_full(&self) -> bool {
        self.rows >= EXPORT_MAX_ROWS || self.text.len() >= EXPORT_MAX_BYTES
    }
}

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
/// [`EXPORT_MAX_ROWS`] rows or before the row that would take it past [`EXPORT_MAX_BYTES`],
/// its last line then `{"truncated":true,"next_cursor":..}` (`ctl audit --export jsonl
/// --cursor` resumes after the last row written).
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
    let mut body = ExportBody::default();
    // Set when the export stops before the last matching row: where the next one resumes.
    let mut resume: Option<String> = None;
    'pages: loop {
        let page = read::ledger_page(&state, params.clone()).await?;
        for (i, r) in page.rows.iter().enumerate() {
            let mut line = serde_json::to_string(r).unwrap_or_default();
            line.push('\n');
            if !body.push(&line) {
                // After the last row written: this page's previous one, else the row the
                // page itself started after.
                resume = match i {
                    0 => params.cursor.clone(),
                    _ => Some(ledger::cursor_after(&page.rows[i - 1])),
                };
                break 'pages;
            }
        }
        match page.next_cursor {
            Some(c) if body.is_full() => {
                resume = Some(c);
                break;
            }
            Some(c) => params.cursor = Some(c),
            None => break,
        }
    }
    let mut out = body.text;
    if let Some(c) = resume {
        out.push_str(&serde_json::json!({ "truncated": true, "next_cursor": c }).to_string());
        out.push('\n');
    }
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"ledger.jsonl\"",
        ))
        .body(out))
}
