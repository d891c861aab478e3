//! `ctl audit`: one page of `GET /v1/audit` as a table, or every matching row as JSON lines.
//!
//! The table and the paging loop are pure ([`table`], [`export_jsonl`] takes a
//! page fetcher and a writer) so they are unit-tested without a server; [`run`]
//! only wires them to the client and stdout.

use std::collections::HashSet;
use std::io::{self, Write};

use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::client::{Client, CtlError};
use super::render::{dash, input_summary, rendered, table as new_table};
use super::sanitize::{clean, escape_json};
use super::watch::shell_quote;
use ccr_protocol::reply::LedgerPage;
use ccr_protocol::time::{parse_rfc3339, rfc3339};

/// Rows per request of `--export` (the API's largest page).
pub const EXPORT_PAGE: u32 = 1000;
/// Longest INPUT summary in the audit table (narrower than `pending`: more columns).
const INPUT_WIDTH: usize = 60;
/// The audit endpoint.
const PATH: &str = "/v1/audit";

/// Filters and paging of `ctl audit`; each maps to one `GET /v1/audit` query parameter.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditArgs {
    /// Only this session.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Only this tool (exact name, e.g. Bash).
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
    /// Only this outcome.
    #[arg(long, value_parser = ["allowed", "denied", "cancelled", "expired", "pending"])]
    pub outcome: Option<String>,
    /// Only decisions by this operator token name, `rule:<id>` or `timeout`.
    #[arg(long, value_name = "NAME")]
    pub decided_by: Option<String>,
    /// Received at or after this instant (RFC 3339 in UTC, e.g. 2026-01-31T09:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = instant_arg)]
    pub since: Option<String>,
    /// Received before this instant (RFC 3339 in UTC).
    #[arg(long, value_name = "RFC3339", value_parser = instant_arg)]
    pub until: Option<String>,
    /// Rows per page, 1..=1000 (server default 100); not with --export, which pages by itself.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000),
          conflicts_with = "export")]
    pub limit: Option<u32>,
    /// Resume after this cursor (printed as a `more:` hint after a page).
    #[arg(long, value_name = "C")]
    pub cursor: Option<String>,
    /// Print every matching row, following the cursor page after page, one JSON object per line.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub export: Option<ExportFormat>,
}

/// What `--export` writes.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One LedgerRow JSON object per line.
    Jsonl,
}

/// Accept what the server accepts (`ccr_protocol::time::parse_rfc3339`), so a typo is a usage error.
fn instant_arg(s: &str) -> Result<String, String> {
    parse_rfc3339(s)
        .map(|_| s.trim().to_owned())
        .map_err(|e| format!("expected an RFC 3339 time in UTC like 2026-01-31T09:00:00Z: {e}"))
}

impl AuditArgs {
    /// The query string of one request: the filters, then `limit` and `cursor` when given.
    pub fn query(&self, cursor: Option<&str>, limit: Option<u32>) -> Vec<(&'static str, String)> {
        let mut q: Vec<(&'static str, String)> = [
            ("session_id", &self.session),
            ("tool", &self.tool),
            ("outcome", &self.outcome),
            ("decided_by", &self.decided_by),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect();
        if let Some(n) = limit {
            q.push(("limit", n.to_string()));
        }
        if let Some(c) = cursor {
            q.push(("cursor", c.to_owned()));
        }
        q
    }

    /// `more: <prefix> audit <the same filters> --cursor <c>`: the command for the next page.
    pub fn more_hint(&self, prefix: &str, cursor: &str) -> String {
        let mut line = format!("more: {prefix} audit");
        let flags = [
            ("--session", self.session.clone()),
            ("--tool", self.tool.clone()),
            ("--outcome", self.outcome.clone()),
            ("--decided-by", self.decided_by.clone()),
            ("--since", self.since.clone()),
            ("--until", self.until.clone()),
            ("--limit", self.limit.map(|n| n.to_string())),
            ("--cursor", Some(cursor.to_owned())),
        ];
        for (flag, value) in flags {
            if let Some(v) = value {
                line.push_str(&format!(" {flag} {}", shell_quote(&v)));
            }
        }
        line
    }
}

/// Run `ctl audit`: a table (or `--json` body) of one page, or the whole `--export`.
pub fn run(client: &Client, args: &AuditArgs, json: bool, prefix: &str) -> Result<(), CtlError> {
    if let Some(ExportFormat::Jsonl) = args.export {
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        let fetch = |cursor: Option<&str>| {
            let q = args.query(cursor, Some(EXPORT_PAGE));
            let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client.get(PATH, &q)
        };
        export_jsonl(fetch, args.cursor.as_deref(), &mut out)?;
        return Ok(());
    }
    let q = args.query(args.cursor.as_deref(), args.limit);
    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = client.get(PATH, &q)?;
    let page: Option<LedgerPage> = super::print_body(json, &body, table)?;
    if let Some(c) = page.and_then(|p| p.next_cursor).filter(|c| !c.is_empty()) {
        eprintln!("{}", args.more_hint(prefix, &clean(&c)));
    }
    Ok(())
}

/// One page as the export reads it: rows kept as the server wrote them.
#[derive(Deserialize)]
struct Page {
    rows: Vec<Box<RawValue>>,
    next_cursor: Option<String>,
}

/// Follow `next_cursor` from `start`, writing each row as one JSON line; returns the row count.
///
/// `fetch(cursor)` returns one page body. Rows are copied verbatim unless the
/// server pretty-printed them (then re-serialized compactly, still one per
/// line); characters a terminal would act on are `\u`-escaped. A cursor seen twice is a server bug that would loop forever, so it
/// fails. A closed output (`| head`) ends the export quietly.
pub fn export_jsonl(
    mut fetch: impl FnMut(Option<&str>) -> Result<String, CtlError>,
    start: Option<&str>,
    out: &mut impl Write,
) -> Result<u64, CtlError> {
    let mut cursor = start.map(str::to_owned);
    let mut seen: HashSet<String> = cursor.iter().cloned().collect();
    let mut count = 0;
    loop {
        let body = fetch(cursor.as_deref())?;
        let page: Page = serde_json::from_str(&body).map_err(|e| {
            CtlError::Protocol(format!("the API answered with an invalid audit page: {e}"))
        })?;
        for row in &page.rows {
            let line = match row.get() {
                raw if raw.contains('\n') => serde_json::from_str::<Value>(raw)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| raw.replace('\n', " ")),
                raw => raw.to_owned(),
            };
            match writeln!(out, "{}", escape_json(&line)) {
                Ok(()) => count += 1,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(count),
                Err(e) => return Err(CtlError::Output(e.to_string())),
            }
        }
        match out.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(count),
            Err(e) => return Err(CtlError::Output(e.to_string())),
        }
        match page.next_cursor.filter(|c| !c.is_empty()) {
            None => return Ok(count),
            Some(next) if !seen.insert(next.clone()) => {
                return Err(CtlError::Protocol(format!(
                    "the API returned cursor {next} twice; stopping after {count} rows"
                )))
            }
            Some(next) => cursor = Some(next),
        }
    }
}

/// The audit table from a `GET /v1/audit` body (newest first, as served).
pub fn table(body: &LedgerPage) -> String {
    if body.rows.is_empty() {
        return "no audit rows match".into();
    }
    let mut t = new_table(&[
        "RECEIVED",
        "SESSION",
        "REQUEST",
        "TOOL",
        "INPUT",
        "OUTCOME",
        "DECIDED BY",
        "DELIVERED",
    ]);
    for r in &body.rows {
        t.add_row(vec![
            rfc3339(r.received_at),
            dash(Some(&r.session_id)),
            dash(Some(&r.request_id)),
            r.tool_name.clone(),
            input_summary(&r.tool_name, &r.input, INPUT_WIDTH),
            r.outcome.map_or("pending", |o| o.as_str()).to_owned(),
            dash(r.decided_by.as_deref()),
            r.delivered_at.map_or_else(|| "-".into(), rfc3339),
        ]);
    }
    rendered(t)
}

#[cfg(test)]
mod tests;
