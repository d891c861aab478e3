//! The dedicated writer thread: drains queued commands, commits each batch in one
//! transaction, then completes every caller's oneshot; prunes old rows in between.
//!
//! A storage error rolls back the whole batch; its commands are then retried one
//! transaction each, so one bad command cannot fail its neighbours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use super::checkpoint::Handoff;
use super::record::{to_ms, LedgerError, Outcome};
use super::schema::FINISHED;

/// Completes a caller's future with the number of rows affected.
pub(crate) type Reply = oneshot::Sender<Result<u64, LedgerError>>;

/// A prompt with its JSON already serialized (on the caller's thread, not the writer's).
pub(crate) struct PromptRow {
    pub session_id: String,
    pub request_id: String,
    pub tool_use_id: Option<String>,
    pub tool_name: String,
    pub input: String,
    pub request: String,
    pub received_at: i64,
}

/// A decision with its JSON already serialized.
pub(crate) struct DecisionRow {
    pub session_id: String,
    pub request_id: String,
    pub outcome: Outcome,
    pub decided_by: String,
    pub decided_at: i64,
    pub updated_input: Option<String>,
    pub answer: Option<String>,
    pub reason: Option<String>,
}

/// One write.
pub(crate) enum Op {
    /// Insert a prompt unless its key is known.
    Prompt(PromptRow),
    /// Decide a recorded prompt.
    Decision(DecisionRow),
    /// Set `delivered_at` (the first time only).
    Delivered {
        session_id: String,
        request_id: String,
        at: i64,
    },
    /// Delete finished rows received before this instant (runs alone, in chunks).
    Prune(SystemTime),
    /// Nothing: completes once every earlier command is committed.
    Flush,
}

/// A queued command and whom to tell.
pub(crate) struct Cmd {
    pub op: Op,
    pub reply: Reply,
    /// When it was queued (for the queue-wait histogram).
    pub queued_at: Instant,
}

/// Counters shared by the handle and the writer.
#[derive(Debug)]
pub(crate) struct Counters {
    /// Writes that returned an error to their caller.
    pub write_errors: AtomicU64,
    /// Seconds the oldest command of each batch waited in the queue.
    pub queue_wait: Histogram,
    /// Seconds the writer spent on each batch: the transaction and its replies.
    pub commit: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        // 25 µs doubling to about 0.8 s: a commit here takes tens of microseconds.
        let buckets = || exponential_buckets(0.000_025, 2.0, 16);
        Self {
            write_errors: AtomicU64::new(0),
            queue_wait: Histogram::new(buckets()),
            commit: Histogram::new(buckets()),
        }
    }
}

impl Counters {
    /// The one place a failed write is logged and counted.
    pub(crate) fn write_failed(&self, what: &str, err: &LedgerError) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        match err {
            LedgerError::UnknownPrompt { .. }
            | LedgerError::AlreadyDecided { .. }
            | LedgerError::NotDecided { .. } => {
                warn!(%err, what, "decision ledger refused a write")
            }
            _ => error!(%err, what, "DECISION LEDGER WRITE FAILED: not recorded"),
        }
    }
}

/// Writer settings.
pub(crate) struct WriterConfig {
    pub max_batch: usize,
    pub retain: Option<Duration>,
    pub prune_every: Duration,
    pub prune_chunk: usize,
    #[cfg(test)]
    pub gate: Arc<parking_lot::Mutex<()>>,
}

/// The writer thread's body; returns when every sender is gone.
pub(crate) fn run(
    mut conn: Connection,
    rx: Receiver<Cmd>,
    cfg: WriterConfig,
    counters: Arc<Counters>,
    checkpoints: &Handoff,
) {
    let mut batch: Vec<Cmd> = Vec::with_capacity(cfg.max_batch);
    let mut next_prune = Instant::now();
    let mut pruning: Option<i64> = None; // cutoff of a background prune in progress
    loop {
        if let Some(retain) = cfg.retain.filter(|_| pruning.is_none()) {
            if Instant::now() >= next_prune {
                pruning = Some(SystemTime::now().checked_sub(retain).map_or(0, to_ms));
                next_prune = Instant::now() + cfg.prune_every;
            }
        }
        // While pruning, only peek at the queue: writes go first, a chunk runs when idle.
        let wait = if pruning.is_some() {
            Duration::ZERO
        } else {
            next_prune.saturating_duration_since(Instant::now())
        };
        let first = match rx.recv_timeout(wait) {
            Ok(cmd) => cmd,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(cutoff) = pruning {
                    match prune_chunk(&mut conn, cutoff, cfg.prune_chunk) {
                        Ok(n) if n < cfg.prune_chunk as u64 => pruning = None,
                        Ok(_) => {}
                        Err(e) => {
                            error!(error = %e, "decision ledger retention pruning failed");
                            pruning = None;
                        }
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        batch.push(first);
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        #[cfg(test)]
        drop(cfg.gate.lock());
        let started = Instant::now();
        counters
            .queue_wait
            .observe((started - batch[0].queued_at).as_secs_f64());
        apply_batch(&mut conn, &mut batch, &cfg, &counters);
        counters.commit.observe(started.elapsed().as_secs_f64());
        // After the replies, so the batch just committed never waits for it.
        checkpoints.finish_if_asked(&conn);
    }
    debug!("decision ledger writer stopped");
}

/// Commit `batch` (emptied), answering each caller after the commit.
fn apply_batch(
    conn: &mut Connection,
    batch: &mut Vec<Cmd>,
    cfg: &WriterConfig,
    counters: &Counters,
) {
    // A prune runs alone (it commits in chunks), in queue order with the writes around it.
    while let Some(at) = batch.iter().position(|c| matches!(c.op, Op::Prune(_))) {
        let rest = batch.split_off(at + 1);
        let prune = batch.pop().expect("position is in range");
        commit_each_or_all(conn, batch, counters);
        let Op::Prune(before) = prune.op else {
            unreachable!()
        };
        let result = prune_all(conn, to_ms(before), cfg.prune_chunk).map_err(LedgerError::from);
        let _ = prune.reply.send(result);
        *batch = rest;
    }
    commit_each_or_all(conn, batch, counters);
}

fn commit_each_or_all(conn: &mut Connection, batch: &mut Vec<Cmd>, counters: &Counters) {
    if batch.is_empty() {
        return;
    }
    match commit(conn, batch.iter().map(|c| &c.op)) {
        Ok(results) => {
            for (cmd, result) in batch.drain(..).zip(results) {
                finish(cmd, result, counters);
            }
        }
        Err(e) if batch.len() == 1 => finish(batch.remove(0), Err(e.into()), counters),
        Err(e) => {
            warn!(error = %e, size = batch.len(), "decision ledger batch failed; retrying one by one");
            for cmd in batch.drain(..) {
                let result = commit(conn, std::iter::once(&cmd.op))
                    .map_err(LedgerError::from)
                    .and_then(|mut r| r.pop().expect("one result per op"));
                finish(cmd, result, counters);
            }
        }
    }
}

fn finish(cmd: Cmd, result: Result<u64, LedgerError>, counters: &Counters) {
    if let Err(e) = &result {
        counters.write_failed(op_name(&cmd.op), e);
    }
    let _ = cmd.reply.send(result); // The caller may have stopped waiting: the row is committed anyway.
}

/// The API call that queued `op`, for logs.
pub(crate) fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Prompt(_) => "record_prompt",
        Op::Decision(_) => "record_decision",
        Op::Delivered { .. } => "mark_delivered",
        Op::Prune(_) => "prune",
        Op::Flush => "flush",
    }
}

/// Apply `ops` in one transaction. The outer error is a storage failure (nothing committed);
/// the inner results are each op's own refusal, which changes nothing.
fn commit<'a>(
    conn: &mut Connection,
    ops: impl Iterator<Item = &'a Op>,
) -> rusqlite::Result<Vec<Result<u64, LedgerError>>> {
    let tx = conn.transaction()?;
    let results = ops
        .map(|op| apply(&tx, op))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(results)
}

fn apply(tx: &Transaction, op: &Op) -> rusqlite::Result<Result<u64, LedgerError>> {
    match op {
        Op::Prompt(p) => {
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
        Op::Decision(d) => decide(tx, d),
        Op::Delivered {
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
        Op::Prune(_) | Op::Flush => Ok(Ok(0)),
    }
}

/// First decision wins; a cancel may still void an undelivered answer (keeping that answer
/// for the audit trail); repeating the stored decision is a no-op.
fn decide(tx: &Transaction, d: &DecisionRow) -> rusqlite::Result<Result<u64, LedgerError>> {
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
fn prune_chunk(conn: &mut Connection, cutoff_ms: i64, limit: usize) -> rusqlite::Result<u64> {
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

fn prune_all(conn: &mut Connection, cutoff_ms: i64, chunk: usize) -> rusqlite::Result<u64> {
    let mut total = 0;
    loop {
        let n = prune_chunk(conn, cutoff_ms, chunk)?;
        total += n;
        if n < chunk as u64 {
            return Ok(total);
        }
    }
}
