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

use super::batch::{self, Said};
use super::fence::Epoch;
use super::{connect, describe, PgTarget};
use crate::ledger::record::LedgerError;
use crate::ledger::writer::{Counters, Write};

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
        let prepare = |sql| client.prepare(sql);
        let (insert, delivered) = (batch::insert_prompts(), batch::mark_delivered());
        let (lock, insert, decide, delivered) = tokio::try_join!(
            prepare(batch::LOCK_LEASES),
            prepare(&insert),
            prepare(batch::DECIDE),
            prepare(&delivered),
        )
        .map_err(|e| describe(&e))?;
        let (insert_one, decide_one, delivered_one, stored) = tokio::try_join!(
            prepare(batch::INSERT_PROMPT),
            prepare(batch::DECIDE_ONE),
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
                    .query_opt(&c.stored, &[&d.session_id, &d.request_id])
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

/// Which multi-row statement.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Leases,
    Prompts,
    Decisions,
    Deliveries,
}

/// One parameter of a statement: a column of its rows, as an array.
type Param<'a> = Box<dyn ToSql + Send + Sync + 'a>;

/// One multi-row statement: its kind, the writes it carries (indexes into the batch, in
/// the order of its rows) and its parameters.
struct Multi<'a> {
    kind: Kind,
    rows: &'a [usize],
    params: Vec<Param<'a>>,
}

impl<'a> Multi<'a> {
    /// Its prepared statement: of one row when it has one, else multi-row.
    fn statement<'c>(&self, c: &'c Conn) -> &'c Statement {
        let one = self.rows.len() == 1;
        match self.kind {
            Kind::Leases => &c.lock,
            Kind::Prompts if one => &c.insert_one,
            Kind::Prompts => &c.insert,
            Kind::Decisions if one => &c.decide_one,
            Kind::Decisions => &c.decide,
            Kind::Deliveries if one => &c.delivered_one,
            Kind::Deliveries => &c.delivered,
        }
    }

    /// The leases of the fenced writes among `writes`, if they are more than one
    /// ([`batch::LOCK_LEASES`]; one lease alone is locked by its statement, and a single
    /// row lock cannot close a cycle with a renewal).
    fn leases(writes: &[(&'a Write, Option<&'a Fence>)]) -> Option<Self> {
        let fenced = || writes.iter().filter_map(|(w, f)| Some((w.key().0, (*f)?)));
        let session: Vec<&str> = fenced().map(|(s, _)| s).collect();
        let mut distinct = fenced().map(|(s, f)| (s, f.epoch));
        let first = distinct.next();
        if first.is_none_or(|first| distinct.all(|other| other == first)) {
            return None;
        }
        let owner: Vec<&str> = fenced().map(|(_, f)| &*f.owner).collect();
        let epoch: Vec<i64> = fenced().map(|(_, f)| f.epoch).collect();
        let params: Vec<Param<'a>> = vec![Box::new(session), Box::new(owner), Box::new(epoch)];
        Some(Multi {
            kind: Kind::Leases,
            rows: &[],
            params,
        })
    }

    /// The prompts among `writes` at `rows`, if any.
    fn prompts(writes: &[(&'a Write, Option<&'a Fence>)], rows: &'a [usize]) -> Option<Self> {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len();
        let (mut session, mut request, mut tool_use) = (col(n), col(n), col(n));
        let (mut tool, mut input, mut json, mut at) = (col(n), col(n), col(n), col(n));
        let (mut owner, mut epoch) = (col(n), col(n));
        for &i in rows {
            let (Write::Prompt(p), fence) = writes[i] else {
                unreachable!("a run's prompts are prompts")
            };
            session.push(p.session_id.as_str());
            request.push(p.request_id.as_str());
            tool_use.push(p.tool_use_id.as_deref());
            tool.push(p.tool_name.as_str());
            input.push(p.input.as_str());
            json.push(p.request.as_str());
            at.push(p.received_at);
            owner.push(fence.map(|f| &*f.owner));
            epoch.push(fence.map(|f| f.epoch));
        }
        let one = n == 1;
        let params: Vec<Param<'a>> = vec![
            param(session, one),
            param(request, one),
            param(tool_use, one),
            param(tool, one),
            param(input, one),
            param(json, one),
            param(at, one),
            param(owner, one),
            param(epoch, one),
        ];
        Some(Multi {
            kind: Kind::Prompts,
            rows,
            params,
        })
    }

    /// The decisions among `writes` at `rows`, if any.
    fn decisions(writes: &[(&'a Write, Option<&'a Fence>)], rows: &'a [usize]) -> Option<Self> {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len();
        let (mut session, mut request, mut outcome, mut by) = (col(n), col(n), col(n), col(n));
        let (mut at, mut updated, mut answer, mut reason) = (col(n), col(n), col(n), col(n));
        for &i in rows {
            let (Write::Decision(d), _) = writes[i] else {
                unreachable!("a run's decisions are decisions")
            };
            session.push(d.session_id.as_str());
            request.push(d.request_id.as_str());
            outcome.push(d.outcome.as_str());
            by.push(d.decided_by.as_str());
            at.push(d.decided_at);
            updated.push(d.updated_input.as_deref());
            answer.push(d.answer.as_deref());
            reason.push(d.reason.as_deref());
        }
        let one = n == 1;
        let params: Vec<Param<'a>> = vec![
            param(session, one),
            param(request, one),
            param(outcome, one),
            param(by, one),
            param(at, one),
            param(updated, one),
            param(answer, one),
            param(reason, one),
        ];
        Some(Multi {
            kind: Kind::Decisions,
            rows,
            params,
        })
    }

    /// The delivery marks among `writes` at `rows`, if any.
    fn deliveries(writes: &[(&'a Write, Option<&'a Fence>)], rows: &'a [usize]) -> Option<Self> {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len();
        let (mut session, mut request, mut at) = (col(n), col(n), col(n));
        let (mut owner, mut epoch) = (col(n), col(n));
        for &i in rows {
            let (
                Write::Delivered {
                    session_id,
                    request_id,
                    at: when,
                },
                fence,
            ) = writes[i]
            else {
                unreachable!("a run's deliveries are deliveries")
            };
            session.push(session_id.as_str());
            request.push(request_id.as_str());
            at.push(*when);
            owner.push(fence.map(|f| &*f.owner));
            epoch.push(fence.map(|f| f.epoch));
        }
        let one = n == 1;
        let params: Vec<Param<'a>> = vec![
            param(session, one),
            param(request, one),
            param(at, one),
            param(owner, one),
            param(epoch, one),
        ];
        Some(Multi {
            kind: Kind::Deliveries,
            rows,
            params,
        })
    }

    /// Record in `said` what the statement's returned rows say of its writes (a write it
    /// returned no row for was done); an error if a row names no write of it.
    fn read(
        &self,
        rows: &[tokio_postgres::Row],
        writes: &[(&Write, Option<&Fence>)],
        said: &mut [Said],
    ) -> Result<(), String> {
        if let Kind::Leases = self.kind {
            // Only the locks count; each write's own statement says whether it was held.
            return Ok(());
        }
        for row in rows {
            let at = batch::ordinal(row.try_get(0).map_err(|e| describe(&e))?, self.rows.len())
                .ok_or_else(|| format!("a {:?} statement answered for no row of it", self.kind))?;
            let index = self.rows[at];
            let (session_id, request_id) = writes[index].0.key();
            said[index] = match (self.kind, writes[index].0) {
                (Kind::Prompts, _) => batch::not_owner(session_id),
                (Kind::Decisions, Write::Decision(d)) => {
                    batch::undecided(d, row.get(1), row.get(2), row.get(3))
                }
                (Kind::Deliveries, _) => {
                    batch::undelivered(session_id, request_id, row.get(1), row.get(2))
                }
                (Kind::Decisions | Kind::Leases, _) => {
                    unreachable!("a run's decisions are decisions; leases return early")
                }
            };
        }
        Ok(())
    }
}

/// A column as its statement's parameter: the array, or its one value for a one-row
/// statement.
fn param<'a, T: ToSql + Send + Sync + 'a>(column: Vec<T>, one: bool) -> Param<'a> {
    match (one, column.len()) {
        (true, 1) => Box::new(column.into_iter().next().expect("one value")),
        _ => Box::new(column),
    }
}

/// One kind's rows of a run as its statements' rows: one by one, or all in one
/// ([`batch::one_by_one`]).
fn split(rows: &[usize]) -> std::slice::Chunks<'_, usize> {
    let size = match batch::one_by_one(rows.len()) {
        true => 1,
        false => rows.len().max(1),
    };
    rows.chunks(size)
}

/// An empty column for `n` rows.
fn col<T>(n: usize) -> Vec<T> {
    Vec::with_capacity(n)
}
