//! The ledger's SQL: how each journaled write changes the `prompts` table, in batches that
//! also record how far the journal has been applied; and retention pruning.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tracing::info;

use super::fold::Folded;
use super::record::LedgerError;
use super::schema::FINISHED;
use super::writer::Write;
use ccr_protocol::reply::Outcome;

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
///
/// A new prompt and the writes after it for the same prompt are folded into the row they
/// produce and inserted once ([`fold`]); each write's result is still its own.
///
/// [`fold`]: super::fold
pub(crate) fn commit(
    conn: &mut Connection,
    writes: &[(u64, &Write)],
) -> rusqlite::Result<Vec<Result<u64, LedgerError>>> {
    commit_with(conn, writes, true)
}

fn commit_with(
    conn: &mut Connection,
    writes: &[(u64, &Write)],
    fold: bool,
) -> rusqlite::Result<Vec<Result<u64, LedgerError>>> {
    let tx = conn.transaction()?;
    let mut results: Vec<Option<Result<u64, LedgerError>>> =
        std::iter::repeat_with(|| None).take(writes.len()).collect();
    // Each write changes only its own prompt's row, so prompts may be applied in any
    // order as long as each one's writes keep theirs.
    for group in by_prompt(writes) {
        if fold {
            if let Write::Prompt(p) = writes[group[0]].1 {
                let mut row = Folded::new(p);
                let later: Vec<_> = group[1..].iter().map(|&i| row.apply(writes[i].1)).collect();
                if insert_folded(&tx, &row)? {
                    results[group[0]] = Some(Ok(1));
                    for (&i, result) in group[1..].iter().zip(later) {
                        results[i] = Some(result);
                    }
                    continue;
                }
                // Already stored (a prompt seen again): its writes apply to that row.
            }
        }
        for &i in &group {
            results[i] = Some(apply(&tx, writes[i].1)?);
        }
    }
    if let Some((last, _)) = writes.last() {
        tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
            .execute(params![APPLIED_KEY, last.to_string()])?;
    }
    tx.commit()?;
    Ok(results
        .into_iter()
        .map(|r| r.expect("every write is in one group"))
        .collect())
}

/// Indexes of `writes` grouped by prompt, groups in order of each prompt's first write.
fn by_prompt(writes: &[(u64, &Write)]) -> Vec<Vec<usize>> {
    let mut group_of: HashMap<(&str, &str), usize> = HashMap::with_capacity(writes.len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, (_, w)) in writes.iter().enumerate() {
        let g = *group_of.entry(w.key()).or_insert_with(|| {
            groups.push(Vec::with_capacity(3));
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// Insert a folded row unless its prompt is already stored; true when inserted.
fn insert_folded(tx: &Transaction, row: &Folded) -> rusqlite::Result<bool> {
    let p = row.prompt;
    let n = tx
        .prepare_cached(
            "INSERT INTO prompts (session_id, request_id, tool_use_id, tool_name, input, \
             request, received_at, outcome, decided_by, decided_at, updated_input, answer, \
             reason, delivered_at, deliveries, last_delivered_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
             ON CONFLICT (session_id, request_id) DO NOTHING",
        )?
        .execute(params![
            p.session_id,
            p.request_id,
            p.tool_use_id,
            p.tool_name,
            p.input,
            p.request,
            p.received_at,
            row.outcome.map(Outcome::as_str),
            row.decided_by,
            row.decided_at,
            row.updated_input,
            row.answer,
            row.reason,
            row.delivered_at,
            row.deliveries,
            row.last_delivered_at
        ])?;
    Ok(n == 1)
}

fn apply(tx: &Transaction, w: &Write) -> rusqlite::Result<Result<u64, LedgerError>> {
    match w {
        // A new prompt is its pending row; a known key is left as it is.
        Write::Prompt(p) => Ok(Ok(u64::from(insert_folded(tx, &Folded::new(p))?))),
        Write::Decision(d) => insert_decision(tx, d),
        Write::Delivered {
            session_id,
            request_id,
            at,
        } => {
            let n = tx
                .prepare_cached(
                    "UPDATE prompts SET delivered_at = COALESCE(delivered_at, ?3), \
                     deliveries = deliveries + 1, last_delivered_at = ?3 \
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
fn insert_decision(
    tx: &Transaction,
    d: &super::writer::DecisionRow,
) -> rusqlite::Result<Result<u64, LedgerError>> {
    let n = tx
        .prepare_cached(
            "UPDATE prompts SET outcome = ?3, decided_by = ?4, decided_at = ?5, \
             updated_input = COALESCE(?6, updated_input), answer = COALESCE(?7, answer), \
             reason = COALESCE(?8, reason) \
             WHERE session_id = ?1 AND request_id = ?2 AND (outcome IS NULL OR \
             (?3 = 'cancelled' AND outcome <> 'cancelled' AND delivered_at IS NULL))",
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

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rusqlite::types::Value;

    use super::*;
    use crate::ledger::schema;
    use crate::ledger::writer::{DecisionRow, PromptRow};

    const OUTCOMES: [Outcome; 4] = [
        Outcome::Allowed,
        Outcome::Denied,
        Outcome::Cancelled,
        Outcome::Expired,
    ];

    fn some<T>(rng: &mut StdRng, v: T) -> Option<T> {
        rng.gen_bool(0.5).then_some(v)
    }

    /// A write to one of three prompts, with fields drawn so that every rule is reached.
    fn random_write(rng: &mut StdRng) -> Write {
        let session_id = "s".to_owned();
        let request_id = ["a", "b", "c"][rng.gen_range(0..3)].to_owned();
        let at = rng.gen_range(1..100);
        match rng.gen_range(0..3) {
            0 => Write::Prompt(PromptRow {
                session_id,
                request_id,
                tool_use_id: some(rng, format!("tu{at}")),
                tool_name: ["Bash", "Edit"][rng.gen_range(0..2)].into(),
                input: format!("{{\"n\":{at}}}"),
                request: "{}".into(),
                received_at: at,
            }),
            1 => Write::Decision(DecisionRow {
                session_id,
                request_id,
                outcome: OUTCOMES[rng.gen_range(0..4)],
                decided_by: ["op", "policy"][rng.gen_range(0..2)].into(),
                decided_at: at,
                updated_input: some(rng, format!("{{\"u\":{at}}}")),
                answer: some(rng, format!("answer {at}")),
                reason: some(rng, format!("reason {at}")),
            }),
            _ => Write::Delivered {
                session_id,
                request_id,
                at,
            },
        }
    }

    fn table(conn: &Connection) -> Vec<Vec<Value>> {
        let mut stmt = conn
            .prepare("SELECT * FROM prompts ORDER BY session_id, request_id")
            .unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Folding a batch must store what applying its writes one by one stores, and give
    /// each write the same result, whatever the rows held before the batch.
    #[test]
    fn a_folded_batch_matches_its_writes_applied_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let (mut folds, mut stored_before) = (0, 0);
        for case in 0..400 {
            let before: Vec<Write> = (0..rng.gen_range(0..4))
                .map(|_| random_write(&mut rng))
                .collect();
            let batch: Vec<Write> = (0..rng.gen_range(1..10))
                .map(|_| random_write(&mut rng))
                .collect();
            let numbered: Vec<(u64, &Write)> = (1..).zip(&batch).collect();
            let [mut folded, mut plain] = ["f", "p"].map(|name| {
                let path = dir.path().join(format!("{case}-{name}.db"));
                let mut conn = schema::open_writer(&path).unwrap();
                for w in &before {
                    let _ = commit_with(&mut conn, &[(0, w)], false).unwrap();
                }
                conn
            });
            let got = commit_with(&mut folded, &numbered, true).unwrap();
            let want = commit_with(&mut plain, &numbered, false).unwrap();
            assert_eq!(
                format!("{got:?}"),
                format!("{want:?}"),
                "case {case}: {before:?} then {batch:?}"
            );
            assert_eq!(
                table(&folded),
                table(&plain),
                "case {case}: {before:?} then {batch:?}"
            );
            if let Write::Prompt(_) = batch[0] {
                let same = batch[1..].iter().any(|w| w.key() == batch[0].key());
                folds += usize::from(same && matches!(got[0], Ok(1)));
                stored_before += usize::from(same && matches!(got[0], Ok(0)));
            }
        }
        // Both paths taken often: folded, and the prompt already stored before its batch.
        assert!(
            folds > 30 && stored_before > 10,
            "{folds} / {stored_before}"
        );
    }

    #[test]
    fn writes_are_grouped_by_prompt_in_first_seen_order() {
        let mut rng = StdRng::seed_from_u64(7);
        let writes: Vec<Write> = (0..12).map(|_| random_write(&mut rng)).collect();
        let numbered: Vec<(u64, &Write)> = (1..).zip(&writes).collect();
        let groups = by_prompt(&numbered);
        let flat: Vec<usize> = groups.iter().flatten().copied().collect();
        let mut sorted = flat.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..12).collect::<Vec<_>>(), "each write once");
        for g in &groups {
            assert!(g.windows(2).all(|w| w[0] < w[1]), "order kept: {g:?}");
            assert!(g.iter().all(|&i| writes[i].key() == writes[g[0]].key()));
        }
        let firsts: Vec<usize> = groups.iter().map(|g| g[0]).collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");
    }
}
