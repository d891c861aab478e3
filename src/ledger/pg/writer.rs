//! The PostgreSQL writer: one connection of its own, and group commit. Writes queue in the
//! order they are made; the writer takes everything queued (up to a batch), sends it in
//! one pipelined transaction of a few multi-row statements ([`batch`]: one per kind of
//! write, more only where the batch writes one prompt twice), and acknowledges each write
//! only once that transaction has committed. Under load a batch grows instead of adding
//! round trips or statements; idle, a write commits alone at once. Nothing waits for a
//! timer.
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

mod multi;

use multi::{split, Multi};

use super::batch::{self, Said};
use super::fence::Epoch;
use super::{connect, describe, PgTarget};
use crate::ledger::record::LedgerError;
use crate::ledger::writer::{Counters, Write};

/// What the writer takes from its queue.
// Nearly every command is a write: boxing it would cost an allocation per write to save
// the room of the rare barrier.
#[allow(clippy::large_enum_variant)]
pub(super) enum Cmd {
    /// Writes committed in one transaction, and whom to tell once they are committed (or
    /// the first refusal among them).
    Write(Writes, oneshot::Sender<Result<(), LedgerError>>, Instant),
    /// A barrier: answered once every earlier write is committed.
    Flush(oneshot::Sender<Result<(), LedgerError>>),
}

/// A write and the lease it is conditional on (a prompt or a delivery by a session's
/// owner; `None` when not fenced).
pub(super) type Fenced = (Write, Option<Fence>);

/// One write, or two that must commit together (a prompt and the answer a rule gave it on
/// arrival: one commit on the answer's way instead of two).
pub(super) struct Writes {
    pub first: Fenced,
    pub then: Option<Box<Fenced>>,
}

impl Writes {
    /// The writes, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Write, Option<&Fence>)> {
        std::iter::once(&self.first)
            .chain(self.then.as_deref())
            .map(|(w, f)| (w, f.as_ref()))
    }
}

/// The lease a write counts under: this instance's id and the epoch it holds.
#[derive(Debug, Clone)]
pub(super) struct Fence {
    pub owner: Arc<str>,
    pub epoch: Epoch,
}

/// Most writes in one transaction.
const MAX_BATCH: usize = 512;

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    lock: Statement,
    insert: Statement,
    decide: Statement,
    delivered: Statement,
    insert_one: Statement,
    decide_one: Statement,
    delivered_one: Statement,
    stored: Statement,
}

impl Conn {
    async fn open(target: &PgTarget) -> Result<Conn, String> {
        let client = connect(target).await?;
        client
            .batch_execute(batch::WRITER_PLANNER)
            .await
            .map_err(|e| describe(&e))?;
        let prepare = |sql| client.prepare(sql);
        let (insert, decide, delivered) = (
            batch::insert_prompts(),
            batch::decide(),
            batch::mark_delivered(),
        );
        let (insert_one, decide_one) = (batch::insert_prompt(), batch::decide_one());
        let (lock, insert, decide, delivered) = tokio::try_join!(
            prepare(batch::LOCK_LEASES),
            prepare(&insert),
            prepare(&decide),
            prepare(&delivered),
        )
        .map_err(|e| describe(&e))?;
        let (insert_one, decide_one, delivered_one, stored) = tokio::try_join!(
            prepare(&insert_one),
            prepare(&decide_one),
            prepare(batch::DELIVERED_ONE),
            prepare(batch::STORED),
        )
        .map_err(|e| describe(&e))?;
        Ok(Conn {
            client,
            lock,
            insert,
            decide,
            delivered,
            insert_one,
            decide_one,
            delivered_one,
            stored,
        })
    }
}

/// Run the writer until every sender is gone and the queue is empty.
pub(super) async fn run(
    target: Arc<PgTarget>,
    mut rx: mpsc::Receiver<Cmd>,
    counters: Arc<Counters>,
    in_flight: Arc<super::InFlight>,
) {
    let mut conn: Option<Conn> = None;
    let mut failures = 0u32;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = Instant::now();
        let writes: Vec<(&Write, Option<&Fence>)> = batch
            .iter()
            .flat_map(|c| match c {
                Cmd::Write(w, _, _) => Some(w.iter()),
                Cmd::Flush(_) => None,
            })
            .flatten()
            .collect();
        if let Some(Cmd::Write(_, _, queued)) = batch.iter().find(|c| matches!(c, Cmd::Write(..))) {
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
                Cmd::Write(w, reply, queued) => {
                    let mut result = Ok(());
                    for (w, _) in w.iter() {
                        let r = results.next().unwrap_or(Err(LedgerError::Closed));
                        match r {
                            Ok(()) => counters.commit.observe(queued.elapsed().as_secs_f64()),
                            Err(e) => {
                                counters.write_failed(w.name(), &e);
                                result = result.and(Err(e));
                            }
                        }
                    }
                    in_flight.done(w.iter().map(|(w, _)| w));
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

/// Commit `writes` in one pipelined transaction of a few multi-row statements (see
/// [`batch`]); each write's own result, or why the whole batch failed.
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
    let runs = batch::runs(writes);
    let statements: Vec<Multi> = std::iter::once(Multi::leases(writes))
        .chain(runs.iter().flat_map(|run| {
            let prompts = split(&run.prompts).map(|rows| Multi::prompts(writes, rows));
            let decisions = split(&run.decisions).map(|rows| Multi::decisions(writes, rows));
            let deliveries = split(&run.deliveries).map(|rows| Multi::deliveries(writes, rows));
            prompts.chain(decisions).chain(deliveries)
        }))
        .flatten()
        .collect();
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
        .iter()
        .map(|s| {
            s.params
                .iter()
                .map(|p| &**p as &(dyn ToSql + Sync))
                .collect()
        })
        .collect();
    // BEGIN, the statements and COMMIT go in one round trip. A statement that fails
    // aborts the transaction, and the COMMIT then rolls it back: the batch fails unless
    // every statement succeeded and the COMMIT did.
    let begin = c.client.batch_execute("BEGIN");
    let queries = statements
        .iter()
        .zip(&params)
        .map(|(s, p)| c.client.query(s.statement(c), p));
    let commit = c.client.batch_execute("COMMIT");
    let (begun, answered, committed) = tokio::join!(begin, join_all(queries), commit);
    let mut said: Vec<Said> = writes.iter().map(|_| Said::Done).collect();
    let mut failed = begun.err().map(|e| describe(&e));
    for (s, rows) in statements.iter().zip(answered) {
        match rows {
            Ok(rows) if failed.is_none() => {
                if let Err(e) = s.read(&rows, writes, &mut said) {
                    failed = Some(e);
                }
            }
            Ok(_) => {}
            Err(e) => failed = failed.or(Some(describe(&e))),
        }
    }
    if let Some(e) = failed {
        // Or a reply that named no row of its statement (a bug), in a batch that may have
        // committed: reported failed all the same (never acknowledged unless known
        // durable; every write may be redone), and the connection made again.
        return Err(e);
    }
    committed.map_err(|e| describe(&e))?;
    let mut results = Vec::with_capacity(writes.len());
    for ((w, _), s) in writes.iter().zip(said) {
        results.push(match s {
            Said::Done => Ok(()),
            Said::Refused(e) => Err(e),
            // Committed already: what won is read now (the first decision stays; a cancel
            // may since have voided it, which is as much a refusal).
            Said::Raced => {
                let Write::Decision(d) = *w else {
                    unreachable!("only a decision races")
                };
                match c
                    .client
                    .query_opt(&c.stored, &[&d.session_id, &d.request_id, &d.answer])
                    .await
                {
                    Ok(row) => batch::refusal(d, row.map(|r| (r.get(0), r.get(1)))),
                    Err(e) => Err(LedgerError::Storage(format!(
                        "another decision won; reading it failed: {}",
                        describe(&e)
                    ))),
                }
            }
        });
    }
    Ok(results)
}
