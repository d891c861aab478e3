//! The PostgreSQL writer: one connection of its own, and group commit. Writes queue in the
//! order they are made; the writer takes everything queued (up to a batch), sends it in
//! one pipelined transaction, and acknowledges each write only once that transaction has
//! committed. Under load a batch grows instead of adding round trips; idle, a write
//! commits alone at once. Nothing waits for a timer.
//!
//! A write the ledger's rules refuse (an unknown prompt, a prompt already decided
//! otherwise) is answered with its refusal and changes nothing. A batch that fails as a
//! whole (the connection dropped) fails each of its writes with a storage error: they
//! were not acknowledged, so their callers retry or report them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::fence::{condition, Epoch};
use super::{connect, describe, PgTarget};
use crate::ledger::record::LedgerError;
use crate::ledger::writer::{Counters, DecisionRow, Write};
use ccr_protocol::reply::Outcome;

/// What the writer takes from its queue.
pub(super) enum Cmd {
    /// A write, the lease it is conditional on (a prompt or a delivery by a session's
    /// owner), and whom to tell once it is committed (or refused).
    Write(
        Write,
        Option<Fence>,
        oneshot::Sender<Result<(), LedgerError>>,
        Instant,
    ),
    /// A barrier: answered once every earlier write is committed.
    Flush(oneshot::Sender<Result<(), LedgerError>>),
}

/// The lease a write counts under: this instance's id and the epoch it holds.
#[derive(Debug, Clone)]
pub(super) struct Fence {
    pub owner: Arc<str>,
    pub epoch: Epoch,
}

/// Most writes in one transaction.
const MAX_BATCH: usize = 512;

const INSERT_PROMPT: &str = "INSERT INTO ccr_prompts (session_id, request_id, tool_use_id, \
    tool_name, input, request, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
    ON CONFLICT (session_id, request_id) DO NOTHING";

/// First decision wins; a cancel may still void an undelivered answer (keeping that answer
/// for the audit trail). Returns whether it changed the row, and the row's decision as it
/// was before (NULL columns when there is no row).
const DECIDE: &str = "WITH upd AS (UPDATE ccr_prompts SET outcome = $3, decided_by = $4, \
    decided_at = $5, updated_input = COALESCE($6, updated_input), \
    answer = COALESCE($7, answer), reason = COALESCE($8, reason) \
    WHERE session_id = $1 AND request_id = $2 AND (outcome IS NULL OR \
    ($3 = 'cancelled' AND outcome <> 'cancelled' AND delivered_at IS NULL)) RETURNING 1) \
    SELECT (SELECT count(*) FROM upd), p.session_id IS NOT NULL, p.outcome, p.decided_by \
    FROM (VALUES (1)) AS one (x) LEFT JOIN ccr_prompts p \
    ON p.session_id = $1 AND p.request_id = $2";

/// The stored decision, read again when [`DECIDE`] lost a race it could not see.
const STORED: &str =
    "SELECT outcome, decided_by FROM ccr_prompts WHERE session_id = $1 AND request_id = $2";

const DELIVERED: &str = "WITH upd AS (UPDATE ccr_prompts SET \
    delivered_at = COALESCE(delivered_at, $3), deliveries = deliveries + 1, \
    last_delivered_at = $3 \
    WHERE session_id = $1 AND request_id = $2 AND outcome IS NOT NULL RETURNING 1) \
    SELECT (SELECT count(*) FROM upd), \
    EXISTS (SELECT 1 FROM ccr_prompts WHERE session_id = $1 AND request_id = $2)";

/// [`INSERT_PROMPT`] by a session's owner: only while it holds the lease at its epoch
/// (`$8`, `$9`, `$10`: session, owner, epoch); returns whether it did.
fn insert_prompt_fenced() -> String {
    format!(
        "WITH fence AS (SELECT {} AS held), \
         ins AS (INSERT INTO ccr_prompts (session_id, request_id, tool_use_id, tool_name, \
         input, request, received_at) SELECT $1, $2, $3, $4, $5, $6, $7 FROM fence WHERE held \
         ON CONFLICT (session_id, request_id) DO NOTHING RETURNING 1) \
         SELECT held FROM fence",
        condition(8)
    )
}

/// [`DELIVERED`] by a session's owner, under its lease (`$4`..`$6`); returns as
/// [`DELIVERED`] does, and whether the lease held.
fn delivered_fenced() -> String {
    format!(
        "WITH fence AS (SELECT {} AS held), upd AS (UPDATE ccr_prompts SET \
         delivered_at = COALESCE(delivered_at, $3), deliveries = deliveries + 1, \
         last_delivered_at = $3 \
         WHERE session_id = $1 AND request_id = $2 AND outcome IS NOT NULL \
         AND (SELECT held FROM fence) RETURNING 1) \
         SELECT (SELECT count(*) FROM upd), \
         EXISTS (SELECT 1 FROM ccr_prompts WHERE session_id = $1 AND request_id = $2), \
         (SELECT held FROM fence)",
        condition(4)
    )
}

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    insert: Statement,
    decide: Statement,
    stored: Statement,
    delivered: Statement,
    insert_fenced: Statement,
    delivered_fenced: Statement,
}

impl Conn {
    async fn open(target: &PgTarget) -> Result<Conn, String> {
        let client = connect(target).await?;
        let prepare = |sql| client.prepare(sql);
        let (fenced_insert, fenced_delivered) = (insert_prompt_fenced(), delivered_fenced());
        let (insert, decide, stored, delivered, insert_fenced, delivered_fenced) =
            tokio::try_join!(
                prepare(INSERT_PROMPT),
                prepare(DECIDE),
                prepare(STORED),
                prepare(DELIVERED),
                prepare(&fenced_insert),
                prepare(&fenced_delivered),
            )
            .map_err(|e| describe(&e))?;
        Ok(Conn {
            client,
            insert,
            decide,
            stored,
            delivered,
            insert_fenced,
            delivered_fenced,
        })
    }
}

/// What one statement said, before the batch's transaction is known to have committed.
enum Said {
    Done,
    Refused(LedgerError),
    /// A decision changed nothing while the row looked undecided: a concurrent decision
    /// (another instance's) committed in between; read the row again.
    Raced,
}

/// Run the writer until every sender is gone and the queue is empty.
pub(super) async fn run(
    target: Arc<PgTarget>,
    mut rx: mpsc::Receiver<Cmd>,
    counters: Arc<Counters>,
) {
    let mut conn: Option<Conn> = None;
    let mut failures = 0u32;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = Instant::now();
        let writes: Vec<(&Write, Option<&Fence>)> = batch
            .iter()
            .filter_map(|c| match c {
                Cmd::Write(w, fence, _, _) => Some((w, fence.as_ref())),
                Cmd::Flush(_) => None,
            })
            .collect();
        if let Some(Cmd::Write(_, _, _, queued)) =
            batch.iter().find(|c| matches!(c, Cmd::Write(..)))
        {
            counters
                .queue_wait
                .observe(started.duration_since(*queued).as_secs_f64());
        }
        let results = match commit(&mut conn, &target, &writes).await {
            Ok(results) => {
                failures = 0;
                counters.apply.observe(started.elapsed().as_secs_f64());
                results
            }
            Err(e) => {
                // The connection is dropped and made again for the next batch, after a
                // pause that grows while the database stays away.
                conn = None;
                failures = failures.saturating_add(1);
                if failures == 1 || failures % 16 == 0 {
                    tracing::error!(error = %e, writes = writes.len(), "ledger database write failed");
                }
                let pause = crate::ledger::retry_delay(failures.min(6));
                let results = writes
                    .iter()
                    .map(|_| Err(LedgerError::Storage(e.clone())))
                    .collect();
                tokio::time::sleep(pause.min(Duration::from_millis(500))).await;
                results
            }
        };
        let mut results = results.into_iter();
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Write(w, _, reply, queued) => {
                    let result = results.next().unwrap_or(Err(LedgerError::Closed));
                    match &result {
                        Ok(()) => counters.commit.observe(queued.elapsed().as_secs_f64()),
                        Err(e) => counters.write_failed(w.name(), e),
                    }
                    let _ = reply.send(result);
                }
                // Everything before it in this batch is committed (or failed) by now.
                Cmd::Flush(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }
}

/// Commit `writes` in one pipelined transaction; each write's own result, or why the
/// whole batch failed.
async fn commit(
    conn: &mut Option<Conn>,
    target: &PgTarget,
    writes: &[(&Write, Option<&Fence>)],
) -> Result<Vec<Result<(), LedgerError>>, String> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
        *conn = Some(Conn::open(target).await?);
    }
    let c = conn.as_ref().expect("connected above");
    let begin = c.client.batch_execute("BEGIN");
    let statements = writes.iter().map(|(w, fence)| statement(c, w, *fence));
    let (begun, said) = tokio::join!(begin, join_all(statements));
    begun.map_err(|e| describe(&e))?;
    let mut results = Vec::with_capacity(writes.len());
    for ((w, _), s) in writes.iter().zip(said) {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                let _ = c.client.batch_execute("ROLLBACK").await;
                return Err(describe(&e));
            }
        };
        results.push(match s {
            Said::Done => Ok(()),
            Said::Refused(e) => Err(e),
            Said::Raced => {
                let Write::Decision(d) = *w else {
                    unreachable!("only a decision races")
                };
                let row = c
                    .client
                    .query_opt(&c.stored, &[&d.session_id, &d.request_id])
                    .await
                    .map_err(|e| describe(&e))?;
                let stored = row.map(|r| (r.get(0), r.get(1)));
                refusal(d, stored)
            }
        });
    }
    c.client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| describe(&e))?;
    Ok(results)
}

/// One write's statement, pipelined behind the ones before it.
async fn statement(
    c: &Conn,
    w: &Write,
    fence: Option<&Fence>,
) -> Result<Said, tokio_postgres::Error> {
    let not_owner = |session_id: &str| {
        Said::Refused(LedgerError::NotOwner {
            session_id: session_id.to_owned(),
        })
    };
    match w {
        Write::Delivered {
            session_id,
            request_id,
            at,
        } if fence.is_some() => {
            let f = fence.expect("matched");
            let row = c
                .client
                .query_one(
                    &c.delivered_fenced,
                    &[session_id, request_id, at, session_id, &&*f.owner, &f.epoch],
                )
                .await?;
            let (updated, exists, held): (i64, bool, bool) = (row.get(0), row.get(1), row.get(2));
            Ok(delivered(session_id, request_id, updated, exists, held))
        }
        Write::Prompt(p) => {
            let session_id = &p.session_id;
            let row: [&(dyn ToSql + Sync); 7] = [
                session_id,
                &p.request_id,
                &p.tool_use_id,
                &p.tool_name,
                &p.input,
                &p.request,
                &p.received_at,
            ];
            let Some(f) = fence else {
                c.client.execute(&c.insert, &row).await?;
                return Ok(Said::Done);
            };
            let owner: &str = &f.owner;
            let fenced = [&row[..], &[session_id, &owner, &f.epoch]].concat();
            let held: bool = c.client.query_one(&c.insert_fenced, &fenced).await?.get(0);
            Ok(match held {
                true => Said::Done,
                false => not_owner(session_id),
            })
        }
        Write::Decision(d) => {
            let row = c
                .client
                .query_one(
                    &c.decide,
                    &[
                        &d.session_id,
                        &d.request_id,
                        &d.outcome.as_str(),
                        &d.decided_by,
                        &d.decided_at,
                        &d.updated_input,
                        &d.answer,
                        &d.reason,
                    ],
                )
                .await?;
            let (updated, exists): (i64, bool) = (row.get(0), row.get(1));
            let before: (Option<String>, Option<String>) = (row.get(2), row.get(3));
            Ok(match (updated, exists, before) {
                (n, _, _) if n > 0 => Said::Done,
                (_, false, _) => Said::Refused(LedgerError::UnknownPrompt {
                    session_id: d.session_id.clone(),
                    request_id: d.request_id.clone(),
                }),
                (_, true, (None, _)) => Said::Raced,
                (_, true, (outcome, by)) => match refusal(d, Some((outcome, by))) {
                    Ok(()) => Said::Done,
                    Err(e) => Said::Refused(e),
                },
            })
        }
        Write::Delivered {
            session_id,
            request_id,
            at,
        } => {
            let row = c
                .client
                .query_one(&c.delivered, &[session_id, request_id, at])
                .await?;
            let (updated, exists): (i64, bool) = (row.get(0), row.get(1));
            Ok(delivered(session_id, request_id, updated, exists, true))
        }
    }
}

/// What a delivery mark said: rows updated, whether the prompt exists, whether the lease held.
fn delivered(session_id: &str, request_id: &str, updated: i64, exists: bool, held: bool) -> Said {
    let (session_id, request_id) = (session_id.to_owned(), request_id.to_owned());
    match (updated, exists, held) {
        (_, _, false) => Said::Refused(LedgerError::NotOwner { session_id }),
        (n, _, _) if n > 0 => Said::Done,
        (_, true, _) => Said::Refused(LedgerError::NotDecided {
            session_id,
            request_id,
        }),
        (_, false, _) => Said::Refused(LedgerError::UnknownPrompt {
            session_id,
            request_id,
        }),
    }
}

/// A decision that changed nothing, against what is stored: the same decision again is a
/// no-op, anything else is refused.
fn refusal(
    d: &DecisionRow,
    stored: Option<(Option<String>, Option<String>)>,
) -> Result<(), LedgerError> {
    let (session_id, request_id) = (d.session_id.clone(), d.request_id.clone());
    match stored {
        None => Err(LedgerError::UnknownPrompt {
            session_id,
            request_id,
        }),
        Some((Some(o), by)) if o == d.outcome.as_str() && by.as_deref() == Some(&d.decided_by) => {
            Ok(())
        }
        Some((None, _)) => Err(LedgerError::Storage(
            "a decision changed nothing, yet the prompt reads undecided".into(),
        )),
        Some((o, _)) => Err(LedgerError::AlreadyDecided {
            session_id,
            request_id,
            outcome: o.and_then(|o| o.parse().ok()).unwrap_or(Outcome::Cancelled),
        }),
    }
}
