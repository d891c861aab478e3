//! Ledger queries (`GET /v1/audit`, `ctl audit`): filters, keyset paging newest first, and the rows they return.
//!
//! The cursor is the `(received_at, session_id, request_id)` of the last row
//! returned, hex-encoded so clients treat it as opaque. Paging resumes strictly
//! after that key, so rows inserted meanwhile (newer) never shift a page:
//! no duplicates and no gaps.

use std::fmt::Write as _;
use std::time::SystemTime;

use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};
use serde_json::Value;

use super::record::Unfinished;
use super::record::{from_ms, to_ms, LedgerError};
use super::schema::UNFINISHED;
use ccr_protocol::api::LedgerParams;
use ccr_protocol::reply::{LedgerPage, LedgerRow, Outcome};

/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page.
pub const MAX_LIMIT: usize = 1000;

/// The `outcome` filter: a decided outcome, or `pending` for undecided prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeFilter {
    /// No decision yet.
    Pending,
    /// This outcome.
    Is(Outcome),
}

/// A typed ledger query; every filter set is AND-ed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerQuery {
    /// Only this session.
    pub session_id: Option<String>,
    /// Only this tool name.
    pub tool: Option<String>,
    /// Only this outcome (or pending).
    pub outcome: Option<OutcomeFilter>,
    /// Only decisions by this operator / `rule:<id>` / `timeout`.
    pub decided_by: Option<String>,
    /// Received at or after this instant.
    pub since: Option<SystemTime>,
    /// Received before this instant.
    pub until: Option<SystemTime>,
    /// Page size, 1..=1000 (default 100); ignored by exports.
    pub limit: Option<usize>,
    /// Resume after this cursor (from [`LedgerPage::next_cursor`]).
    pub cursor: Option<String>,
}

impl TryFrom<LedgerParams> for LedgerQuery {
    type Error = LedgerError;

    fn try_from(p: LedgerParams) -> Result<Self, LedgerError> {
        let bad = |param, message: String| LedgerError::BadQuery { param, message };
        let time = |param, v: Option<String>| {
            v.map(|s| {
                ccr_protocol::time::parse_rfc3339(&s)
                    .map_err(|e| bad(param, format!("expected an RFC 3339 time, got {s:?}: {e}")))
            })
            .transpose()
        };
        let outcome = match p.outcome.as_deref() {
            None => None,
            Some("pending") => Some(OutcomeFilter::Pending),
            Some(o) => {
                Some(OutcomeFilter::Is(o.parse().map_err(|e: String| {
                    bad("outcome", format!("{e} or \"pending\""))
                })?))
            }
        };
        let limit = match p.limit {
            None => None,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Some(n),
                _ => return Err(bad("limit", format!("expected 1..={MAX_LIMIT}, got {s:?}"))),
            },
        };
        if let Some(c) = &p.cursor {
            decode_cursor(c)?;
        }
        Ok(LedgerQuery {
            session_id: p.session_id,
            tool: p.tool,
            outcome,
            decided_by: p.decided_by,
            since: time("since", p.since)?,
            until: time("until", p.until)?,
            limit,
            cursor: p.cursor,
        })
    }
}

/// The columns every row query selects, in [`row`]'s order. The last but two are computed
/// here, for the rows read, from what every row stores (not as generated columns, which
/// SQLite would compute on every insert): what was asked (`can_use_tool`, `elicitation`,
/// `request_user_dialog`), and the `decisionClassification` of the answer sent, if any.
const COLUMNS: &str = "session_id, request_id, tool_use_id, tool_name, input, request, \
    received_at, outcome, decided_by, decided_at, delivered_at, updated_input, answer, reason, \
    CASE WHEN json_valid(request) \
    THEN CAST(coalesce(json_extract(request, '$.subtype'), 'can_use_tool') AS TEXT) \
    ELSE 'can_use_tool' END, \
    CASE WHEN json_valid(answer) \
    THEN CAST(json_extract(answer, '$.response.response.decisionClassification') AS TEXT) END, \
    deliveries, last_delivered_at";
/// Index of `answer` in [`COLUMNS`].
const ANSWER: usize = 12;

/// The paging key of a row.
pub(super) type Key = (i64, String, String);

pub(super) fn encode_cursor((ms, session, request): &Key) -> String {
    let json = serde_json::json!([ms, session, request]).to_string();
    json.bytes()
        .fold(String::with_capacity(json.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(super) fn decode_cursor(cursor: &str) -> Result<Key, LedgerError> {
    let bad = || LedgerError::BadQuery {
        param: "cursor",
        message: "not a cursor returned by this API".into(),
    };
    if cursor.len() % 2 != 0 || !cursor.is_ascii() {
        return Err(bad());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// `WHERE ...` and its parameters for the filters and `after` (exclusive, descending order).
fn filter_sql(q: &LedgerQuery, after: Option<&Key>) -> (String, Vec<Sql>) {
    let mut terms: Vec<&str> = vec![];
    let mut args: Vec<Sql> = vec![];
    let mut text = |terms: &mut Vec<&str>, sql, v: &Option<String>| {
        if let Some(v) = v {
            terms.push(sql);
            args.push(Sql::Text(v.clone()));
        }
    };
    text(&mut terms, "session_id = ?", &q.session_id);
    text(&mut terms, "tool_name = ?", &q.tool);
    text(&mut terms, "decided_by = ?", &q.decided_by);
    match q.outcome {
        None => {}
        Some(OutcomeFilter::Pending) => terms.push("outcome IS NULL"),
        Some(OutcomeFilter::Is(o)) => {
            terms.push("outcome = ?");
            args.push(Sql::Text(o.as_str().into()));
        }
    }
    if let Some(t) = q.since {
        terms.push("received_at >= ?");
        args.push(Sql::Integer(to_ms(t)));
    }
    if let Some(t) = q.until {
        terms.push("received_at < ?");
        args.push(Sql::Integer(to_ms(t)));
    }
    if let Some((ms, session, request)) = after {
        terms.push("(received_at, session_id, request_id) < (?, ?, ?)");
        args.extend([
            Sql::Integer(*ms),
            Sql::Text(session.clone()),
            Sql::Text(request.clone()),
        ]);
    }
    let clause = if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    };
    (clause, args)
}

/// Up to `limit` rows matching `q` after `after`, newest first, and whether more follow.
fn fetch(
    conn: &Connection,
    q: &LedgerQuery,
    after: Option<&Key>,
    limit: usize,
) -> Result<(Vec<LedgerRow>, bool), LedgerError> {
    let (clause, mut args) = filter_sql(q, after);
    args.push(Sql::Integer(limit as i64 + 1));
    let sql = format!(
        "SELECT {COLUMNS} FROM prompts {clause} \
         ORDER BY received_at DESC, session_id DESC, request_id DESC LIMIT ?"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt
        .query_map(params_from_iter(args), row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, more))
}

fn key_of(r: &LedgerRow) -> Key {
    (
        to_ms(r.received_at),
        r.session_id.clone(),
        r.request_id.clone(),
    )
}

/// The cursor that resumes a listing just after `row`, as [`LedgerPage::next_cursor`] does
/// after a page's last row: for a reader that stops within a page (the console's export).
/// Both backends page on the same key.
pub fn cursor_after(row: &LedgerRow) -> String {
    encode_cursor(&key_of(row))
}

/// One page of `q`.
pub(crate) fn page(conn: &Connection, q: &LedgerQuery) -> Result<LedgerPage, LedgerError> {
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let (rows, more) = fetch(conn, q, after.as_ref(), limit)?;
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|r| encode_cursor(&key_of(r)));
    Ok(LedgerPage { rows, next_cursor })
}

/// Every row of `q` (limit ignored), newest first, in short read transactions of `chunk` rows.
pub(crate) fn export(
    conn: &Connection,
    q: &LedgerQuery,
    chunk: usize,
    mut out: impl FnMut(LedgerRow) -> std::io::Result<()>,
) -> Result<u64, LedgerError> {
    let mut after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut count = 0;
    loop {
        let (rows, more) = fetch(conn, q, after.as_ref(), chunk)?;
        after = rows.last().map(key_of);
        for r in rows {
            out(r).map_err(LedgerError::Export)?;
            count += 1;
        }
        if !more {
            return Ok(count);
        }
    }
}

/// Pending prompts and undelivered answers, oldest first (of `session` only, if given).
pub(crate) fn unfinished(
    conn: &Connection,
    session: Option<&str>,
) -> Result<Vec<Unfinished>, LedgerError> {
    let only = if session.is_some() {
        "session_id = ?1 AND"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM prompts WHERE {only} ({UNFINISHED}) \
         ORDER BY received_at, session_id, request_id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let params: Vec<&str> = session.into_iter().collect();
    // The answer is also taken as stored, to be re-sent as the exact text that was written.
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
        Ok((row(r)?, r.get::<_, Option<String>>(ANSWER)?))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (r, answer) = r?;
        out.push(Unfinished::of_row(r, answer));
    }
    Ok(out)
}

/// One prompt's records, whatever its state.
pub(crate) fn entry(
    conn: &Connection,
    session_id: &str,
    request_id: &str,
) -> Result<Option<Unfinished>, LedgerError> {
    let sql = format!("SELECT {COLUMNS} FROM prompts WHERE session_id = ?1 AND request_id = ?2");
    let found = conn
        .prepare_cached(&sql)?
        .query_row(rusqlite::params![session_id, request_id], |r| {
            Ok((row(r)?, r.get::<_, Option<String>>(ANSWER)?))
        })
        .optional()?;
    Ok(found.map(|(r, answer)| Unfinished::of_row(r, answer)))
}

/// Decode one row selected with [`COLUMNS`].
fn row(r: &Row) -> rusqlite::Result<LedgerRow> {
    let json = |i: usize| -> rusqlite::Result<Option<Value>> {
        let text: Option<String> = r.get(i)?;
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            })
    };
    let time = |i: usize| -> rusqlite::Result<Option<SystemTime>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(from_ms))
    };
    let outcome: Option<String> = r.get(7)?;
    let outcome = outcome
        .map(|o| o.parse::<Outcome>())
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into())
        })?;
    Ok(LedgerRow {
        session_id: r.get(0)?,
        request_id: r.get(1)?,
        tool_use_id: r.get(2)?,
        tool_name: r.get(3)?,
        input: json(4)?.unwrap_or(Value::Null),
        request: json(5)?.unwrap_or(Value::Null),
        received_at: from_ms(r.get(6)?),
        outcome,
        decided_by: r.get(8)?,
        decided_at: time(9)?,
        delivered_at: time(10)?,
        updated_input: json(11)?,
        answer: json(ANSWER)?,
        reason: r.get(13)?,
        kind: r.get(14)?,
        classification: r.get(15)?,
        deliveries: r.get::<_, i64>(16)?.max(0) as u64,
        last_delivered_at: time(17)?,
    })
}

/// What the ledger holds for one prompt (a replay the registry no longer remembers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// No row.
    Nothing,
    /// Recorded, undecided.
    Pending,
    /// Decided with this answer frame (written or not).
    Answered(String),
    /// Withdrawn, or decided without an answer frame.
    Finished,
}

/// The row of `(session_id, request_id)`, as [`Stored`].
pub(crate) fn stored(
    conn: &Connection,
    session_id: &str,
    request_id: &str,
) -> Result<Stored, LedgerError> {
    let row: Option<(Option<String>, Option<String>)> = conn
        .prepare_cached(
            "SELECT outcome, answer FROM prompts WHERE session_id = ?1 AND request_id = ?2",
        )?
        .query_row(rusqlite::params![session_id, request_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    Ok(match row {
        None => Stored::Nothing,
        Some((None, _)) => Stored::Pending,
        Some((Some(o), Some(answer))) if o != "cancelled" => Stored::Answered(answer),
        Some(_) => Stored::Finished,
    })
}

/// Finished prompts, newest first, for the registry to remember after a restart.
#[derive(Debug, Default)]
pub struct ResolvedRows {
    /// `(session_id, request_id, what is stored)`, newest first.
    pub rows: Vec<(String, String, Stored)>,
    /// Sessions with older finished rows than were loaded: their memory is incomplete.
    pub incomplete: Vec<String>,
}

/// Load up to `max_rows` finished rows (and about `max_bytes` of answers), newest first.
pub(crate) fn resolved(
    conn: &Connection,
    max_rows: usize,
    max_bytes: usize,
) -> Result<ResolvedRows, LedgerError> {
    let sql = format!(
        "SELECT session_id, request_id, outcome, answer, received_at FROM prompts \
         WHERE NOT ({UNFINISHED}) ORDER BY received_at DESC, session_id, request_id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out = ResolvedRows::default();
    let mut bytes = 0usize;
    let mut cutoff = None;
    while let Some(r) = rows.next()? {
        let (session, request): (String, String) = (r.get(0)?, r.get(1)?);
        let outcome: Option<String> = r.get(2)?;
        let answer: Option<String> = r.get(3)?;
        let size = session.len() + request.len() + answer.as_ref().map_or(0, String::len);
        if out.rows.len() >= max_rows || bytes + size > max_bytes {
            cutoff = Some(r.get::<_, i64>(4)?);
            break;
        }
        bytes += size;
        let stored = match (outcome.as_deref(), answer) {
            (Some(o), Some(a)) if o != "cancelled" => Stored::Answered(a),
            _ => Stored::Finished,
        };
        out.rows.push((session, request, stored));
    }
    drop(rows);
    if let Some(cutoff) = cutoff {
        let sql = format!(
            "SELECT DISTINCT session_id FROM prompts WHERE received_at <= ?1 AND NOT ({UNFINISHED})"
        );
        let mut stmt = conn.prepare(&sql)?;
        for id in stmt.query_map([cutoff], |r| r.get::<_, String>(0))? {
            out.incomplete.push(id?);
        }
    }
    Ok(out)
}
