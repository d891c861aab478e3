//! The PostgreSQL ledger's reads: audit pages (the same filters, order and cursors as the
//! SQLite ledger's `query`), what a restart restores, and retention pruning.

use std::time::SystemTime;

use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use super::describe;
use crate::ledger::query::{decode_cursor, encode_cursor, Key, OutcomeFilter};
use crate::ledger::query::{LedgerQuery, ResolvedRows, Stored, DEFAULT_LIMIT, MAX_LIMIT};
use crate::ledger::record::{from_ms, to_ms, LedgerError};
use crate::ledger::schema::{FINISHED, UNFINISHED};
use crate::ledger::Unfinished;
use ccr_protocol::reply::{LedgerPage, LedgerRow, Outcome};

/// The columns every row query selects, in [`row`]'s order.
const COLUMNS: &str = "session_id, request_id, tool_use_id, tool_name, input, request, \
    received_at, outcome, decided_by, decided_at, delivered_at, updated_input, answer, reason, \
    deliveries, last_delivered_at";

type Param = Box<dyn ToSql + Sync + Send>;

fn storage(e: tokio_postgres::Error) -> LedgerError {
    LedgerError::Storage(describe(&e))
}

/// `WHERE ...` and its parameters for the filters and `after` (exclusive, descending order).
fn filter_sql(q: &LedgerQuery, after: Option<&Key>) -> (String, Vec<Param>) {
    let mut terms: Vec<String> = vec![];
    let mut args: Vec<Param> = vec![];
    let mut push = |terms: &mut Vec<String>, sql: &str, v: Param| {
        args.push(v);
        terms.push(sql.replace('?', &format!("${}", args.len())));
    };
    if let Some(v) = &q.session_id {
        push(&mut terms, "session_id = ?", Box::new(v.clone()));
    }
    if let Some(v) = &q.tool {
        push(&mut terms, "tool_name = ?", Box::new(v.clone()));
    }
    if let Some(v) = &q.decided_by {
        push(&mut terms, "decided_by = ?", Box::new(v.clone()));
    }
    match q.outcome {
        None => {}
        Some(OutcomeFilter::Pending) => terms.push("outcome IS NULL".into()),
        Some(OutcomeFilter::Is(o)) => push(&mut terms, "outcome = ?", Box::new(o.as_str())),
    }
    if let Some(t) = q.since {
        push(&mut terms, "received_at >= ?", Box::new(to_ms(t)));
    }
    if let Some(t) = q.until {
        push(&mut terms, "received_at < ?", Box::new(to_ms(t)));
    }
    if let Some((ms, session, request)) = after {
        let n = args.len();
        terms.push(format!(
            "(received_at, session_id, request_id) < (${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3
        ));
        args.push(Box::new(*ms));
        args.push(Box::new(session.clone()));
        args.push(Box::new(request.clone()));
    }
    let clause = if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    };
    (clause, args)
}

/// Up to `limit` rows matching `q` after `after`, newest first, and whether more follow.
async fn fetch(
    client: &Client,
    q: &LedgerQuery,
    after: Option<&Key>,
    limit: usize,
) -> Result<(Vec<LedgerRow>, bool), LedgerError> {
    let (clause, mut args) = filter_sql(q, after);
    args.push(Box::new(limit as i64 + 1));
    let sql = format!(
        "SELECT {COLUMNS} FROM ccr_prompts {clause} \
         ORDER BY received_at DESC, session_id DESC, request_id DESC LIMIT ${}",
        args.len()
    );
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as _).collect();
    let rows = client.query(&sql, &params).await.map_err(storage)?;
    let mut rows = rows
        .iter()
        .map(row)
        .collect::<Result<Vec<_>, LedgerError>>()?;
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

/// One page of `q`.
pub(super) async fn page(client: &Client, q: &LedgerQuery) -> Result<LedgerPage, LedgerError> {
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let (rows, more) = fetch(client, q, after.as_ref(), limit).await?;
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|r| encode_cursor(&key_of(r)));
    Ok(LedgerPage { rows, next_cursor })
}

/// The next `chunk` rows of an export after `after`, and whether more follow.
pub(super) async fn export_chunk(
    client: &Client,
    q: &LedgerQuery,
    after: Option<Key>,
    chunk: usize,
) -> Result<(Vec<LedgerRow>, Option<Key>), LedgerError> {
    let (rows, more) = fetch(client, q, after.as_ref(), chunk).await?;
    let next = rows.last().filter(|_| more).map(key_of);
    Ok((rows, next))
}

/// The first key an export starts after (its cursor), checked.
pub(super) fn export_start(q: &LedgerQuery) -> Result<Option<Key>, LedgerError> {
    q.cursor.as_deref().map(decode_cursor).transpose()
}

/// Pending prompts and undelivered answers, oldest first (of `session` only, if given).
pub(super) async fn unfinished(
    client: &Client,
    session: Option<&str>,
) -> Result<Vec<Unfinished>, LedgerError> {
    let only = if session.is_some() {
        "session_id = $1 AND"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM ccr_prompts WHERE {only} ({UNFINISHED}) \
         ORDER BY received_at, session_id, request_id"
    );
    let params: Vec<&(dyn ToSql + Sync)> = match &session {
        Some(s) => vec![s],
        None => vec![],
    };
    let mut out = Vec::new();
    for r in client.query(&sql, &params).await.map_err(storage)? {
        // The answer is taken as stored, to be re-sent as the exact text that was written.
        let answer: Option<String> = r.get(12);
        out.push(Unfinished::of_row(row(&r)?, answer));
    }
    Ok(out)
}

/// Most rows one cluster-wide listing of pending prompts returns.
pub(super) const PENDING_LIMIT: i64 = 10_000;

/// Undecided prompts (of `session` only, if given), oldest first, each with the instance
/// holding its session's lease (`None` while none does), at most [`PENDING_LIMIT`].
pub(super) async fn pending(
    client: &Client,
    session: Option<&str>,
) -> Result<Vec<(LedgerRow, Option<String>)>, LedgerError> {
    let only = if session.is_some() {
        "AND p.session_id = $2"
    } else {
        ""
    };
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("p.{c}")).collect();
    let sql = format!(
        "SELECT {}, l.owner FROM ccr_prompts p LEFT JOIN ccr_leases l \
         ON l.session_id = p.session_id AND l.expires_at > now() \
         WHERE p.outcome IS NULL {only} ORDER BY p.received_at, p.session_id, p.request_id \
         LIMIT $1",
        columns.join(", ")
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&PENDING_LIMIT];
    if let Some(s) = &session {
        params.push(s);
    }
    client
        .query(&sql, &params)
        .await
        .map_err(storage)?
        .iter()
        .map(|r| Ok((row(r)?, r.get(16))))
        .collect()
}

/// Each session with a live lease or a pending prompt: its owner (`None`: no live lease)
/// and how many of its prompts are undecided.
pub(super) async fn overview(
    client: &Client,
) -> Result<std::collections::HashMap<String, (Option<String>, usize)>, LedgerError> {
    let mut out: std::collections::HashMap<String, (Option<String>, usize)> =
        std::collections::HashMap::new();
    let owners = client
        .query(
            "SELECT session_id, owner FROM ccr_leases WHERE expires_at > now()",
            &[],
        )
        .await
        .map_err(storage)?;
    for r in owners {
        out.entry(r.get(0)).or_default().0 = Some(r.get(1));
    }
    let pending = client
        .query(
            "SELECT session_id, count(*) FROM ccr_prompts WHERE outcome IS NULL GROUP BY session_id",
            &[],
        )
        .await
        .map_err(storage)?;
    for r in pending {
        out.entry(r.get(0)).or_default().1 = r.get::<_, i64>(1).max(0) as usize;
    }
    Ok(out)
}

/// The instance holding `session`'s live lease and its `advertise_url`, if any does.
pub(super) async fn owner_of(
    client: &Client,
    session: &str,
) -> Result<Option<(String, Option<String>)>, LedgerError> {
    let row = client
        .query_opt(
            "SELECT l.owner, m.advertise_url FROM ccr_leases l \
             LEFT JOIN ccr_members m ON m.instance_id = l.owner \
             WHERE l.session_id = $1 AND l.expires_at > now()",
            &[&session],
        )
        .await
        .map_err(storage)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// One prompt's records, whatever its state.
pub(super) async fn entry(
    client: &Client,
    session_id: &str,
    request_id: &str,
) -> Result<Option<Unfinished>, LedgerError> {
    let sql =
        format!("SELECT {COLUMNS} FROM ccr_prompts WHERE session_id = $1 AND request_id = $2");
    let found = client
        .query_opt(&sql, &[&session_id, &request_id])
        .await
        .map_err(storage)?;
    found
        .map(|r| Ok(Unfinished::of_row(row(&r)?, r.get(12))))
        .transpose()
}

/// Load up to `max_rows` finished rows (and about `max_bytes` of answers), newest first.
pub(super) async fn resolved(
    client: &Client,
    session: Option<&str>,
    max_rows: usize,
    max_bytes: usize,
) -> Result<ResolvedRows, LedgerError> {
    let only = if session.is_some() {
        "session_id = $2 AND"
    } else {
        ""
    };
    let sql = format!(
        "SELECT session_id, request_id, outcome, answer, received_at FROM ccr_prompts \
         WHERE {only} NOT ({UNFINISHED}) ORDER BY received_at DESC, session_id, request_id \
         LIMIT $1"
    );
    let limit = i64::try_from(max_rows.saturating_add(1)).unwrap_or(i64::MAX);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
    if let Some(s) = &session {
        params.push(s);
    }
    let rows = client.query(&sql, &params).await.map_err(storage)?;
    let mut out = ResolvedRows::default();
    let mut bytes = 0usize;
    let mut cutoff = None;
    for r in rows {
        let (session, request): (String, String) = (r.get(0), r.get(1));
        let outcome: Option<String> = r.get(2);
        let answer: Option<String> = r.get(3);
        let size = session.len() + request.len() + answer.as_ref().map_or(0, String::len);
        if out.rows.len() >= max_rows || bytes + size > max_bytes {
            cutoff = Some(r.get::<_, i64>(4));
            break;
        }
        bytes += size;
        let stored = match (outcome.as_deref(), answer) {
            (Some(o), Some(a)) if o != "cancelled" => Stored::Answered(a),
            _ => Stored::Finished,
        };
        out.rows.push((session, request, stored));
    }
    if let Some(cutoff) = cutoff {
        let only = if session.is_some() {
            "session_id = $2 AND"
        } else {
            ""
        };
        let sql = format!(
            "SELECT DISTINCT session_id FROM ccr_prompts \
             WHERE {only} received_at <= $1 AND NOT ({UNFINISHED})"
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&cutoff];
        if let Some(s) = &session {
            params.push(s);
        }
        for r in client.query(&sql, &params).await.map_err(storage)? {
            out.incomplete.push(r.get(0));
        }
    }
    Ok(out)
}

/// The row of `(session_id, request_id)`, as [`Stored`].
pub(super) async fn stored(
    client: &Client,
    session_id: &str,
    request_id: &str,
) -> Result<Stored, LedgerError> {
    let row = client
        .query_opt(
            "SELECT outcome, answer FROM ccr_prompts WHERE session_id = $1 AND request_id = $2",
            &[&session_id, &request_id],
        )
        .await
        .map_err(storage)?;
    Ok(
        match row.map(|r| (r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1))) {
            None => Stored::Nothing,
            Some((None, _)) => Stored::Pending,
            Some((Some(o), Some(answer))) if o != "cancelled" => Stored::Answered(answer),
            Some(_) => Stored::Finished,
        },
    )
}

/// Delete finished rows received before `before`, `chunk` rows a transaction.
pub(super) async fn prune(
    client: &Client,
    before: SystemTime,
    chunk: usize,
) -> Result<u64, LedgerError> {
    let sql = format!(
        "DELETE FROM ccr_prompts WHERE ctid = ANY (ARRAY (SELECT ctid FROM ccr_prompts \
         WHERE received_at < $1 AND {FINISHED} ORDER BY received_at LIMIT $2))"
    );
    let (cutoff, limit) = (to_ms(before), chunk.max(1) as i64);
    let mut total = 0;
    loop {
        let n = client
            .execute(&sql, &[&cutoff, &limit])
            .await
            .map_err(storage)?;
        total += n;
        if n < limit as u64 {
            if total > 0 {
                tracing::info!(rows = total, "decision ledger pruned rows past retention");
            }
            return Ok(total);
        }
    }
}

/// What was asked: the request's `subtype` (`can_use_tool` when absent), as the SQLite
/// ledger's query computes it.
fn kind(request: &Value) -> String {
    match request.get("subtype") {
        None | Some(Value::Null) => "can_use_tool".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The `decisionClassification` of the answer sent, if any.
fn classification(answer: Option<&Value>) -> Option<String> {
    match answer?.pointer("/response/response/decisionClassification")? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Decode one row selected with [`COLUMNS`].
fn row(r: &Row) -> Result<LedgerRow, LedgerError> {
    let bad = |column: &str, e: &dyn std::fmt::Display| {
        LedgerError::Storage(format!("ledger column {column} unreadable: {e}"))
    };
    let json = |i: usize, column: &str| -> Result<Option<Value>, LedgerError> {
        let text: Option<String> = r.get(i);
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| bad(column, &e))
    };
    let time = |i: usize| r.get::<_, Option<i64>>(i).map(from_ms);
    let outcome: Option<String> = r.get(7);
    let outcome = outcome
        .map(|o| o.parse::<Outcome>())
        .transpose()
        .map_err(|e| bad("outcome", &e))?;
    let request = json(5, "request")?.unwrap_or(Value::Null);
    let answer = json(12, "answer")?;
    Ok(LedgerRow {
        session_id: r.get(0),
        request_id: r.get(1),
        tool_use_id: r.get(2),
        tool_name: r.get(3),
        input: json(4, "input")?.unwrap_or(Value::Null),
        kind: kind(&request),
        classification: classification(answer.as_ref()),
        request,
        received_at: from_ms(r.get(6)),
        outcome,
        decided_by: r.get(8),
        decided_at: time(9),
        delivered_at: time(10),
        updated_input: json(11, "updated_input")?,
        answer,
        reason: r.get(13),
        deliveries: r.get::<_, i64>(14).max(0) as u64,
        last_delivered_at: time(15),
    })
}
