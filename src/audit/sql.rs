//! The ledger's SQL: how each journaled write changes the `prompts` table, in batches that
//! also record how far the journal has been applied; and retention pruning.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tracing::info;

use super::record::{LedgerError, Outcome};
use super::schema::FINISHED;
use super::writer::Write;

/// `meta` key holding the sequence number of the last journal record applied.
pub(crate) const APPLIED_KEY: &str = "journal_applied";

/// The last journal record already in the database (0 when none ever was).
pub(crate) fn applied_seq(conn: &Connection) -> rusqlite::Result<u64> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [APPLIED_KEY],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Apply `writes` (journal sequence number, write) in one transaction that also records the
/// last sequence number as applied. The outer error is a storage failure (nothing
/// committed); the inner results are each write's own refusal, which changes nothing.
pub(crate) fn commit(
    conn: &mut Connection,
    writes: &[(u64, &Write)],
) -> rusqlite::Result<Vec<Result<u64, LedgerError>>> {
    let tx = conn.transaction()?;
    let results = writes
        .iter()
        .map(|(_, w)| apply(&tx, w))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if let Some((last, _)) = writes.last() {
        tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
            .execute(params![APPLIED_KEY, last.to_string()])?;
    }
    tx.commit()?;
    Ok(results)
}

fn apply(tx: &Transaction, w: &Write) -> rusqlite::Result<Result<u64, LedgerError>> {
    match w {
        Write::Prompt(p) => {
            let n = tx
                .prepare_cached(
                    "INSERT INTO prompts (session_id, request_id, tool_use_id, tool_name, input, \
                     request, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (session_id, request_id) DO NOTHING",
                )?
                .execute(params![
                    p.session_id,
                    p.request_id,
                    p.tool_use_id,
                    p.tool_name,
                    p.input,
                    p.request,
                    p.received_at
                ])?;
            Ok(Ok(n as u64))
        }
        Write::Decision(d) => decide(tx, d),
        Write::Delivered {
            session_id,
            request_id,
            at,
        } => {
            let n = tx
                .prepare_cached(
                    "UPDATE prompts SET delivered_at = COALESCE(delivered_at, ?3) \
                     WHERE session_id = ?1 AND request_id = ?2 AND outcome IS NOT NULL",
                )?
                .execute(params![session_id, request_id, at])?;
            if n > 0 {
                return Ok(Ok(n as u64));
            }
            let known = stored_decision(tx, session_id, request_id)?.is_some();
            let (session_id, request_id) = (session_id.clone(), request_id.clone());
            Ok(Err(if known {
                LedgerError::NotDecided {
                    session_id,
                    request_id,
                }
            } else {
                LedgerError::UnknownPrompt {
                    session_id,
                    request_id,
                }
            }))
        }
    }
}

/// First decision wins; a cancel may still void an undelivered answer (keeping that answer
/// for the audit trail); repeating the stored decision is a no-op.
fn decide(
    tx: &Transaction,
    d: &super::writer::DecisionRow,
) -> rusqlite::Result<Result<u64, LedgerError>> {
    let n = tx
        .prepare_cached(
            "UPDATE prompts SET outcome = ?3, decided_by = ?4, decided_at = ?5, \
             updated_input = COALESCE(?6, updated_input), answer = COALESCE(?7, answer), \
             reason = COALESCE(?8, reason) \
             WHERE session_id = ?1 AND request_id = ?2 AND (outcome IS NULL OR \
             (?3 = 'cancelled' AND outcome IN ('allowed', 'denied', 'expired') AND delivered_at IS NULL))",
        )?
        .execute(params![
            d.session_id,
            d.request_id,
            d.outcome.as_str(),
            d.decided_by,
            d.decided_at,
            d.updated_input,
            d.answer,
            d.reason
        ])?;
    if n > 0 {
        return Ok(Ok(n as u64));
    }
    let (session_id, request_id) = (d.session_id.clone(), d.request_id.clone());
    Ok(match stored_decision(tx, &d.session_id, &d.request_id)? {
        None => Err(LedgerError::UnknownPrompt {
            session_id,
            request_id,
        }),
        Some(Some((outcome, by))) if outcome == d.outcome.as_str() && by == d.decided_by => Ok(0),
        Some(stored) => Err(LedgerError::AlreadyDecided {
            session_id,
            request_id,
            outcome: stored
                .and_then(|(o, _)| o.parse().ok())
                .unwrap_or(Outcome::Cancelled),
        }),
    })
}

/// `None`: no such prompt; `Some(None)`: pending; `Some(Some((outcome, decided_by)))`.
fn stored_decision(
    tx: &Transaction,
    session_id: &str,
    request_id: &str,
) -> rusqlite::Result<Option<Option<(String, String)>>> {
    tx.prepare_cached(
        "SELECT outcome, COALESCE(decided_by, '') FROM prompts \
         WHERE session_id = ?1 AND request_id = ?2",
    )?
    .query_row(params![session_id, request_id], |r| {
        let outcome: Option<String> = r.get(0)?;
        Ok(outcome.map(|o| (o, r.get(1).unwrap_or_default())))
    })
    .optional()
}

/// Delete up to `limit` finished rows received before `cutoff_ms`, in one transaction.
pub(crate) fn prune_chunk(
    conn: &mut Connection,
    cutoff_ms: i64,
    limit: usize,
) -> rusqlite::Result<u64> {
    let sql = format!(
        "DELETE FROM prompts WHERE rowid IN (SELECT rowid FROM prompts \
         WHERE received_at < ?1 AND {FINISHED} ORDER BY received_at LIMIT ?2)"
    );
    let n = conn.execute(&sql, params![cutoff_ms, limit as i64])? as u64;
    if n > 0 {
        info!(rows = n, "decision ledger pruned rows past retention");
    }
    Ok(n)
}

pub(crate) fn prune_all(
    conn: &mut Connection,
    cutoff_ms: i64,
    chunk: usize,
) -> rusqlite::Result<u64> {
    let mut total = 0;
    loop {
        let n = prune_chunk(conn, cutoff_ms, chunk)?;
        total += n;
        if n < chunk as u64 {
            return Ok(total);
        }
    }
}
